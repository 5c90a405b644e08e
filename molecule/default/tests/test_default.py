"""The shared mechanics hold on every supported distribution (testinfra, podman connection)."""
NODES = ["def-debian12", "def-ubuntu2204", "def-ubuntu2404"]
testinfra_hosts = [f"podman://{n}" for n in NODES]
UNIT = "/etc/systemd/system/erdma-pd-demo.service"


def test_venv_holds_the_pinned_package(host):
    out = host.check_output("/opt/erdma-pd/demo-venv/bin/pip show prometheus-client")
    assert "Version: 0.21.1" in out


def test_service_runs_as_its_own_user(host):
    svc = host.service("erdma-pd-demo")
    assert svc.is_running and svc.is_enabled
    pid = host.check_output("systemctl show -p MainPID --value erdma-pd-demo")
    assert host.check_output(f"ps -o user= -p {pid}") == "erdma-demo"


def test_unit_is_managed_and_hardened(host):
    unit = host.file(UNIT).content_string
    assert "Ansible managed" in unit
    for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "Restart=on-failure"):
        assert setting in unit


def test_service_binds_to_the_host_address_only(host):
    address = host.check_output("ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'")
    listening = host.check_output("ss -Hltn 'sport = :9109'")
    assert f"{address}:9109" in listening
    assert "0.0.0.0:9109" not in listening and "*:9109" not in listening


def test_exporter_answers_on_the_host_address(host):
    address = host.check_output("ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'")
    body = host.check_output(f"/opt/erdma-pd/demo-venv/bin/python -c \"import urllib.request;"
                             f"print(urllib.request.urlopen('http://{address}:9109/metrics').read().decode())\"")
    assert "python_info" in body


def test_service_restarts_after_a_crash(host):
    before = host.check_output("systemctl show -p MainPID --value erdma-pd-demo")
    host.run(f"kill -9 {before}")
    after = host.check_output("for i in $(seq 50); do p=$(systemctl show -p MainPID --value erdma-pd-demo);"
                              f" [ \"$p\" != 0 ] && [ \"$p\" != {before} ] && echo $p && break; sleep 0.2; done")
    assert after and after != before


DEMO_LITERAL = "$HOME 100% \"quoted\" 'single' \\back ;"
DEMO_PLAIN = "x $HOME `id` \"q\" 'single' 50% \\n"
DEMO_TOKEN = "erdma-demo-secret-7c1f"
ENV_FILE = "/etc/erdma-pd/erdma-pd-demo.env"


def _main_pid(host):
    return host.check_output("systemctl show -p MainPID --value erdma-pd-demo")


def test_arguments_reach_the_process_unchanged(host):
    """systemd quoting: $, %, quotes, backslash and ; arrive literally as one argument."""
    argv = host.check_output(f"tr '\\0' '\\n' < /proc/{_main_pid(host)}/cmdline").split("\n")
    assert argv[-1] == DEMO_LITERAL
    assert len(argv) == 5


def test_the_cpu_affinity_of_the_unit_binds_the_process(host):
    """_common_service_cpu_affinity "0" becomes CPUAffinity=0, and systemd applies it to the process."""
    assert "\nCPUAffinity=0\n" in host.file(UNIT).content_string
    status = host.file(f"/proc/{_main_pid(host)}/status").content_string
    assert [line.split()[-1] for line in status.splitlines() if line.startswith("Cpus_allowed_list:")] == ["0"]


def test_environment_comes_from_a_root_only_file(host):
    env_file = host.file(ENV_FILE)
    assert env_file.user == "root" and env_file.group == "root" and env_file.mode == 0o600
    unit = host.file(UNIT).content_string
    assert f"EnvironmentFile={ENV_FILE}" in unit
    assert DEMO_TOKEN not in unit and "DEMO_PLAIN" not in unit and "\nEnvironment=" not in unit
    assert host.file(UNIT).mode == 0o644


def test_environment_values_reach_the_process_literally(host):
    # Read as the service's own user: root in the container lacks CAP_SYS_PTRACE, which reading another
    # user's /proc/PID/environ needs.
    environ = host.check_output(
        f"runuser -u erdma-demo -- sh -c \"tr '\\\\0' '\\\\n' < /proc/{_main_pid(host)}/environ\"").split("\n")
    assert f"DEMO_PLAIN={DEMO_PLAIN}" in environ
    assert f"DEMO_TOKEN={DEMO_TOKEN}" in environ


def test_the_service_user_cannot_read_the_environment_file(host):
    result = host.run(f"runuser -u erdma-demo -- cat {ENV_FILE}")
    assert result.rc != 0 and "Permission denied" in result.stderr


def test_systemd_analyze_verify_accepts_the_unit(host):
    result = host.run("systemd-analyze verify erdma-pd-demo.service")
    assert result.rc == 0, result.stderr
    assert "ignoring" not in result.stderr.lower(), result.stderr
