# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory values into systemd units: quoting, refusal of control characters, and the real
`systemd-analyze verify` reading the unit that roles/_common renders from them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pathlib
import subprocess

import jinja2
import pytest
import yaml

from ansible_collections.erdma.pd.plugins.filter import systemd_unit as filters
from ansible_collections.erdma.pd.plugins.plugin_utils import systemd_unit

ROOT = pathlib.Path(__file__).resolve().parents[4]
TEMPLATE = ROOT / "roles/_common/templates/service.j2"
INJECTION = "127.0.0.1\nExecStartPre=/bin/sh -c 'id > /tmp/pwned'"


@pytest.mark.parametrize("arg, quoted", [
    ("/usr/bin/vllm", "/usr/bin/vllm"),
    ("--port=8100", "--port=8100"),
    ("two words", '"two words"'),
    ("50%", "50%%"),
    ("%h", "%%h"),
    ("$HOME", '"$$HOME"'),
    ("${HOME}", '"$${HOME}"'),
    ('{"kv_role":"kv_producer"}', '"{\\"kv_role\\":\\"kv_producer\\"}"'),
    ("back\\slash", '"back\\\\slash"'),
    ("it's", '"it\'s"'),
    (";", "\\;"),
    ("", '""'),
])
def test_each_argument_is_quoted_for_systemd(arg, quoted):
    assert systemd_unit.quote_argument(arg, "argv") == quoted


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\tb", "a\x00b", "a\x1bb", "a\x7fb", "a\x85b"])
def test_control_characters_are_refused_naming_the_variable(bad):
    with pytest.raises(systemd_unit.UnitValueError) as exc:
        systemd_unit.exec_start(["/bin/echo", "ok", bad], "mooncake_extra_flags")
    assert "mooncake_extra_flags[2]" in str(exc.value)
    assert "control character" in str(exc.value)


def test_program_must_be_an_absolute_path():
    with pytest.raises(systemd_unit.UnitValueError, match=r"argv\[0\] must be the program's absolute path"):
        systemd_unit.exec_start(["vllm", "serve"], "argv")
    with pytest.raises(systemd_unit.UnitValueError, match="non-empty list"):
        systemd_unit.exec_start("/bin/echo hi", "argv")


def test_environment_file_escapes_and_reads_back():
    env = {"B": 'say "hi" $USER `id` \\n 100%', "A": "it's", "EMPTY": "", "NUM": 3, "FLAG": True}
    text = systemd_unit.environment_file(env, "env")
    assert text.splitlines()[0].startswith("A=")  # sorted
    assert 'B="say \\"hi\\" \\$USER \\`id\\` \\\\n 100%"' in text
    assert systemd_unit.parse_environment_file(text) == {
        "A": "it's", "B": 'say "hi" $USER `id` \\n 100%', "EMPTY": "", "NUM": "3", "FLAG": "true"}


def test_environment_problems_name_the_key_but_never_the_value():
    secret = "s3cr3t-value\nLD_PRELOAD=/tmp/evil.so"
    problems = systemd_unit.environment_problems({"VLLM_API_KEY": secret, "OK": "fine"},
                                                 "_common_service_secret_environment")
    assert len(problems) == 1
    assert "_common_service_secret_environment.VLLM_API_KEY" in problems[0]
    assert "s3cr3t" not in problems[0] and "evil" not in problems[0]
    bad_key = systemd_unit.environment_problems({"1BAD KEY": "x"}, "env")
    assert "not a valid environment variable name" in bad_key[0]


def test_path_list_quotes_and_requires_absolute_paths():
    assert systemd_unit.path_list(["/var/lib/a", "/srv/two words", "/x/50%"], "p") == \
        '/var/lib/a "/srv/two words" /x/50%%'
    with pytest.raises(systemd_unit.UnitValueError, match=r"p\[0\] must be an absolute path"):
        systemd_unit.path_list(["relative"], "p")


def test_filters_raise_ansible_errors():
    from ansible.errors import AnsibleFilterError
    with pytest.raises(AnsibleFilterError, match="my_description"):
        filters.FilterModule().filters()["systemd_value"]("x\ny", "my_description")
    assert set(filters.FilterModule().filters()) == {
        "systemd_exec_start", "systemd_value", "systemd_path_list", "systemd_environment_file",
        "systemd_environment_problems"}


# ------------------------------------------------------------------ the real unit template
def render_unit(**overrides):
    """Render roles/_common/templates/service.j2 as the role does, with the collection's filters.

    The values go through the same filters as in roles/_common/tasks/service.yml (test below keeps
    the two in step)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=False)
    for name, func in filters.FilterModule().filters().items():
        env.filters["erdma.pd." + name] = func
    context = dict(
        ansible_managed="Ansible managed",
        _common_service_description="Mooncake master 100% ready",
        _common_service_after=["network-online.target"],
        _common_service_user="root",
        _common_service_group="root",
        _common_service_working_directory="/",
        _common_service_environment_dir="/etc/erdma-pd",
        _common_service_name="erdma-test",
        _common_service_restart_sec=2,
        _common_service_stop_timeout=30,
        _common_service_limit_nofile=65536,
        _common_service_limit_memlock="",
        _common_service_cpu_affinity="",
        _common_service_syscall_filters=True,
        _common_service_private_devices=True,
        _common_service_memory_deny_write_execute=True,
        _common_service_read_write_paths=["/var/lib/erdma test"],
    )
    # The hardening lists as the role's defaults set them.
    defaults = yaml.safe_load((ROOT / "roles/_common/defaults/main.yml").read_text())
    for key in ("_common_service_address_families", "_common_service_capabilities",
                "_common_service_system_call_filter"):
        context[key] = defaults[key]
    context.update(overrides)
    argv = context.pop("argv", ["/bin/echo", "--flag", '{"a": "b c"}', "$HOME", "50%"])
    # What roles/_common/tasks/service.yml computes before it renders the template.
    flt = filters.FilterModule().filters()
    context["_common_service_exec_line"] = flt["systemd_exec_start"](argv, "_common_service_argv")
    context["_common_service_unit_values"] = dict(
        description=flt["systemd_value"](context["_common_service_description"], "_common_service_description"),
        user=flt["systemd_value"](context["_common_service_user"], "_common_service_user"),
        group=flt["systemd_value"](context["_common_service_group"], "_common_service_group"),
        working_directory=flt["systemd_value"](context["_common_service_working_directory"],
                                               "_common_service_working_directory"),
        after=" ".join(flt["systemd_value"](unit, "_common_service_after")
                       for unit in context["_common_service_after"]),
        read_write_paths=flt["systemd_path_list"](context["_common_service_read_write_paths"],
                                                  "_common_service_read_write_paths"),
    )
    return env.from_string(TEMPLATE.read_text()).render(**context)


def directives(unit_text):
    return [line.split("=", 1)[0] for line in unit_text.splitlines() if "=" in line and not line.startswith("#")]


def test_rendered_unit_has_one_exec_start_and_no_environment_values():
    unit = render_unit()
    assert directives(unit).count("ExecStart") == 1
    assert "Environment=" not in unit.replace("EnvironmentFile=", "")
    assert "EnvironmentFile=/etc/erdma-pd/erdma-test.env" in unit
    assert 'ExecStart=/bin/echo --flag "{\\"a\\": \\"b c\\"}" "$$HOME" 50%%' in unit
    assert "Description=Mooncake master 100%% ready" in unit


def test_cpu_affinity_renders_only_when_given():
    assert "CPUAffinity=" not in render_unit()
    assert "CPUAffinity=0,2-3\n" in render_unit(_common_service_cpu_affinity="0,2-3")


def test_the_cpu_affinity_check_of_the_tasks_refuses_an_injection():
    """The template writes CPUAffinity as given: the assert in tasks/service.yml must refuse all else."""
    from ansible_collections.erdma.pd.plugins.test.cpu_list import TestModule
    tasks = yaml.safe_load((ROOT / "roles/_common/tasks/service.yml").read_text())
    that = [cond for cond in tasks[0]["ansible.builtin.assert"]["that"] if "_common_service_cpu_affinity" in cond]
    assert that == ["_common_service_cpu_affinity is erdma.pd.cpu_list"]
    is_cpu_list = TestModule().tests()["cpu_list"]
    assert is_cpu_list("0-7,9") and is_cpu_list("")
    for injection in ("0-7\nExecStartPre=/bin/sh", "0\n", "0 7", "0;7", "3-1"):
        assert not is_cpu_list(injection), injection


@pytest.mark.parametrize("variable", ["argv", "_common_service_description", "_common_service_user",
                                      "_common_service_working_directory", "_common_service_read_write_paths"])
def test_an_injection_attempt_never_renders(variable):
    value = {"argv": ["/bin/echo", INJECTION],
             "_common_service_read_write_paths": ["/var/lib/x", INJECTION]}.get(variable, INJECTION)
    with pytest.raises(Exception) as exc:
        render_unit(**{variable: value})
    assert "control character" in str(exc.value)


def test_systemd_analyze_verify_accepts_the_rendered_unit(tmp_path):
    env_dir = tmp_path / "etc"
    env_dir.mkdir()
    (env_dir / "erdma-test.env").write_text(systemd_unit.environment_file({"K": "v $x"}, "env"))
    unit_file = tmp_path / "erdma-test.service"
    unit_file.write_text(render_unit(_common_service_environment_dir=str(env_dir),
                                     _common_service_read_write_paths=[str(tmp_path)],
                                     _common_service_cpu_affinity="0,2-3"))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit_file)], capture_output=True, text=True,
                          check=False)
    # Warnings about the build machine (no network-online.target users) are fine; settings errors are not.
    assert proc.returncode == 0, proc.stderr
    assert "Unknown key" not in proc.stderr and "ignoring" not in proc.stderr.lower(), proc.stderr


def test_the_role_escapes_every_value_the_template_uses():
    """Each caller value of the template reaches it only through the escaping set_fact of the tasks."""
    tasks = (ROOT / "roles/_common/tasks/service.yml").read_text()
    template = TEMPLATE.read_text()
    for name in ("description", "user", "group", "working_directory", "after", "read_write_paths"):
        assert "_common_service_unit_values.%s" % name in template
        assert "      %s: " % name in tasks
    for raw in ("_common_service_description", "_common_service_user", "_common_service_working_directory",
                "_common_service_read_write_paths", "_common_service_after", "_common_service_environment }}"):
        assert raw not in template


def test_every_task_that_handles_the_secret_environment_is_no_log():
    """A task that names _common_service_secret_environment must carry no_log: true."""
    tasks = yaml.safe_load((ROOT / "roles/_common/tasks/service.yml").read_text())
    handling = [task for task in tasks if "_common_service_secret_environment" in yaml.safe_dump(
        {k: v for k, v in task.items() if k not in ("name", "fail_msg")})]
    assert len(handling) >= 2
    for task in handling:
        assert task.get("no_log") is True, task["name"]


# ------------------------------------------------------------------ systemd-analyze security
# The hardening parameters each role passes to roles/_common (roles/*/tasks/run*.yml), and the highest
# exposure score `systemd-analyze security` may give the unit a real host gets (systemd holds
# CAP_SYS_ADMIN, so every seccomp-based option is in). Measured: 1.7, 2.1, 1.7 (systemd 252).
SERVICES = {
    "mooncake-master": (2.0, dict(_common_service_user="mooncake", _common_service_group="mooncake",
                                  _common_service_private_devices=True,
                                  _common_service_memory_deny_write_execute=True,
                                  _common_service_read_write_paths=[])),
    "vllm-pd-prefill": (2.5, dict(_common_service_user="vllm", _common_service_group="vllm",
                                  _common_service_private_devices=False,
                                  _common_service_memory_deny_write_execute=False,
                                  _common_service_read_write_paths=["/var/cache/vllm-pd/vllm-pd-prefill"])),
    "pd-proxy": (2.0, dict(_common_service_user="pd-proxy", _common_service_group="pd-proxy",
                           _common_service_private_devices=True, _common_service_memory_deny_write_execute=True,
                           _common_service_read_write_paths=[])),
}


def exposure(tmp_path, name, **params):
    unit_file = tmp_path / ("%s.service" % name)
    unit_file.write_text(render_unit(**params))
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit_file)],
                          capture_output=True, text=True, check=False)
    last = proc.stdout.strip().splitlines()[-1]
    return float(last.split(":")[1].split()[0])


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_exposure_score_on_a_real_host_stays_under_the_threshold(tmp_path, name):
    threshold, params = SERVICES[name]
    assert exposure(tmp_path, name, _common_service_syscall_filters=True, **params) <= threshold


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_without_seccomp_the_unit_is_still_better_than_medium(tmp_path, name):
    """An unprivileged container (the podman lab) gets everything but the seccomp-based options."""
    _threshold, params = SERVICES[name]
    assert exposure(tmp_path, name, _common_service_syscall_filters=False, **params) <= 6.0


def test_engines_with_devices_get_no_device_allow_list():
    """ProtectClock= implies DeviceAllow=, which would close /dev/nvidia* and /dev/infiniband."""
    _threshold, params = SERVICES["vllm-pd-prefill"]
    unit = render_unit(_common_service_syscall_filters=True, **params)
    assert "PrivateDevices=no" in unit and "ProtectClock" not in unit and "DeviceAllow" not in unit
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK" in unit
    assert "SystemCallFilter=@system-service" in unit and "CapabilityBoundingSet=\n" in unit
