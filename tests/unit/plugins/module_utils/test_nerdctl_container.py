# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nerdctl_container's argument building, inspect parsing and change decision.

Inspect outputs: tests/unit/fixtures/nerdctl_container/SOURCES.md (podman ones recorded here; nerdctl
and docker ones from nerdctl's issue tracker and types, and Docker's Engine API reference).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.erdma.pd.plugins.module_utils import nerdctl_container as nc

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "nerdctl_container")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def params(**overrides):
    """The module's parameters for the guide's prefill engine (section 5 of the field guide)."""
    p = dict(
        image="localhost/erdma-pd-vllm:3f2a9c1b7d4e", entrypoint="vllm",
        command=["serve", "/data/models/Qwen2.5-7B-Instruct", "--host", "192.0.2.10", "--port", "7100",
                 "--kv-transfer-config", '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_producer"}'],
        env={"LMCACHE_CONFIG_FILE": "/etc/vllm-pd/vllm-pd-prefill.yaml", "PYTHONHASHSEED": "0",
             "VLLM_HOST_IP": "192.0.2.10"},
        volumes=["/data/models:/data/models:ro", "/etc/vllm-pd:/etc/vllm-pd:ro"],
        ulimits=["memlock=-1", "stack=67108864"], gpus="all", network="host", ipc="host", privileged=True,
        cap_add=["SYS_ADMIN"], restart_policy="unless-stopped", labels={"io.erdma-pd.role": "vllm_pd"},
        hostname=None, user=None, workdir=None, published_ports=[], shm_size=None, extra_args=[])
    p.update(overrides)
    return p


def with_hash(text, config):
    """A written inspect output whose hash label carries the given configuration's hash."""
    return text.replace("RECORDED-HASH", nc.config_hash(config))


# ---------------------------------------------------------------- arguments
def test_run_args_carry_every_flag_of_the_guide():
    config = nc.desired_config(params())
    args = nc.run_args("nerdctl", "vllm-pd-prefill", config, pull="missing", stop_timeout=30)
    assert args[:7] == ["run", "--detach", "--name", "vllm-pd-prefill", "--pull", "missing", "--stop-timeout"]
    joined = " ".join(args)
    for flag in ("--gpus all", "--ipc host", "--network host", "--privileged", "--cap-add CAP_SYS_ADMIN",
                 "--ulimit memlock=-1", "--ulimit stack=67108864", "--volume /data/models:/data/models:ro",
                 "--restart unless-stopped", "--env PYTHONHASHSEED=0", "--label io.erdma-pd.role=vllm_pd",
                 "--entrypoint vllm"):
        assert flag in joined, flag
    assert "--label %s=%s" % (nc.HASH_LABEL, nc.config_hash(config)) in joined
    image_at = args.index("localhost/erdma-pd-vllm:3f2a9c1b7d4e")
    assert args[image_at + 1:] == params()["command"]
    # The JSON stays one argument: the module runs the CLI without a shell.
    assert '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_producer"}' in args


def test_create_instead_of_run_when_not_started():
    args = nc.run_args("docker", "x", nc.desired_config(params()), detach=False)
    assert args[:3] == ["create", "--name", "x"]


def test_podman_gets_gpus_as_cdi_devices():
    args = nc.run_args("podman", "x", nc.desired_config(params(gpus='"device=0,1"')))
    assert "--gpus" not in args
    assert " ".join(args).count("--device nvidia.com/gpu=") == 2
    assert "nvidia.com/gpu=1" in args


def test_ulimit_with_distinct_soft_and_hard():
    config = nc.desired_config(params(ulimits=["nofile=1024:65536", "RLIMIT_MEMLOCK=unlimited"]))
    assert config["ulimits"] == {"memlock": "-1:-1", "nofile": "1024:65536"}
    args = nc.run_args("nerdctl", "x", config)
    assert "nofile=1024:65536" in args and "memlock=-1" in args


@pytest.mark.parametrize("bad,message", [
    ({"ulimits": ["memlock"]}, "NAME=SOFT"),
    ({"volumes": ["/data/models"]}, "SOURCE:DESTINATION"),
    ({"restart_policy": "sometimes"}, "restart_policy"),
    ({"labels": {nc.HASH_LABEL: "x"}}, "module's own"),
])
def test_bad_parameters_are_refused(bad, message):
    with pytest.raises(nc.ContainerError, match=message):
        nc.desired_config(params(**bad))


@pytest.mark.parametrize("exe,flavour", [("nerdctl", "nerdctl"), ("/usr/local/bin/nerdctl", "nerdctl"),
                                         ("docker", "docker"), ("/usr/bin/podman", "podman")])
def test_flavour_from_executable(exe, flavour):
    assert nc.flavour_of(exe) == flavour


def test_unknown_executable_is_refused():
    with pytest.raises(nc.ContainerError, match="none of nerdctl, docker, podman"):
        nc.flavour_of("/usr/bin/ctr")


def test_hash_ignores_order_but_not_values():
    a = nc.desired_config(params())
    b = nc.desired_config(params(env=dict(reversed(list(params()["env"].items()))),
                                 cap_add=["CAP_SYS_ADMIN"], volumes=list(reversed(params()["volumes"]))))
    assert nc.config_hash(a) == nc.config_hash(b)
    for change in ({"image": "other:1"}, {"env": {"PYTHONHASHSEED": "1"}}, {"gpus": None}, {"ipc": None},
                   {"ulimits": ["memlock=-1"]}, {"command": ["serve", "/m"]}, {"privileged": False}):
        assert nc.config_hash(nc.desired_config(params(**change))) != nc.config_hash(a), change


# ---------------------------------------------------------------- inspect parsing
def test_podman_recorded_engine_is_parsed():
    actual = nc.actual_config(nc.parse_inspect(fixture("podman_engine_created.json")))
    assert actual["image"] == "localhost/erdma-lab-debian12:latest"
    assert actual["argv"][:3] == ["vllm", "serve", "/data/models/tiny-qwen2"]
    assert actual["env"]["VLLM_HOST_IP"] == "10.89.60.11"
    assert actual["volumes"] == ["/tmp/ncfix/models:/data/models:ro"]
    assert actual["ulimits"]["memlock"] == "-1:-1" and actual["ulimits"]["stack"] == "67108864:67108864"
    assert actual["privileged"] is True and actual["network"] == "host"
    assert actual["restart_policy"] == "unless-stopped"
    assert actual["hash"] == "abc123"
    assert (actual["status"], actual["running"]) == ("created", False)


def test_podman_recorded_states():
    running = nc.actual_config(nc.parse_inspect(fixture("podman_plain_running.json")))
    exited = nc.actual_config(nc.parse_inspect(fixture("podman_plain_exited.json")))
    assert (running["status"], running["running"]) == ("running", True)
    assert (exited["status"], exited["running"]) == ("exited", False)
    assert exited["restart_policy"] == "no"  # podman prints an empty name for the default
    assert running["labels"]["app"] == "demo" and running["hash"] is None


def test_old_nerdctl_without_hostconfig_leaves_those_fields_unknown():
    actual = nc.actual_config(nc.parse_inspect(fixture("nerdctl_0x_nginx_running.json")))
    assert actual["image"] == "docker.io/library/nginx:stable-alpine"
    assert actual["argv"] == ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
    for unknown in ("env", "volumes", "ulimits", "privileged", "network", "restart_policy", "hash"):
        assert actual[unknown] is None, unknown
    assert actual["running"] is True


def test_nerdctl_2x_and_docker_agree_with_the_desired_engine():
    for name, stage_params in (("nerdctl_2x_engine_running.json", params()),
                               ("docker_engine_running.json", params(
                                   command=["serve", "/data/models/Qwen2.5-7B-Instruct", "--host", "192.0.2.20",
                                            "--port", "7200", "--kv-transfer-config",
                                            '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_consumer"}'],
                                   env={"LMCACHE_CONFIG_FILE": "/etc/vllm-pd/vllm-pd-decode.yaml",
                                        "PYTHONHASHSEED": "0", "VLLM_HOST_IP": "192.0.2.20"}))):
        desired = nc.desired_config(stage_params)
        actual = nc.actual_config(nc.parse_inspect(with_hash(fixture(name), desired)))
        assert nc.differences(desired, actual) == {}, name
        assert nc.plan("started", desired, actual) == ([], {}), name


def test_docker_image_id_is_not_taken_for_the_name():
    data = nc.parse_inspect(fixture("docker_engine_running.json"))
    del data["Config"]["Image"]
    assert nc.actual_config(data)["image"] is None


def test_missing_container_messages():
    assert nc.is_missing(125, "[]", "Error: inspecting object: no such container t6-nope")  # podman 4.3, recorded
    assert nc.is_missing(1, "", "Error: No such container: vllm")  # docker
    assert nc.is_missing(1, "[]", 'time="..." level=fatal msg="1 errors:\nno such container: vllm"')  # nerdctl
    assert not nc.is_missing(1, "", "permission denied while trying to connect to the daemon socket")
    assert nc.parse_inspect("[]") is None


# ---------------------------------------------------------------- the decision
def test_a_changed_env_recreates_and_says_what_changed():
    desired = nc.desired_config(params())
    actual = nc.actual_config(nc.parse_inspect(with_hash(fixture("nerdctl_2x_engine_running.json"), desired)))
    new = nc.desired_config(params(env=dict(params()["env"], PYTHONHASHSEED="42")))
    actions, diff = nc.plan("started", new, actual)
    assert actions == ["remove", "create"]
    assert diff["env"] == ({"PYTHONHASHSEED": "0"}, {"PYTHONHASHSEED": "42"})
    assert "config_hash" in diff


def test_a_change_only_the_hash_sees_still_recreates_on_old_nerdctl():
    desired = nc.desired_config(params(image="docker.io/library/nginx:stable-alpine", entrypoint=None,
                                       command=["nginx", "-g", "daemon off;"], labels={}))
    data = nc.parse_inspect(fixture("nerdctl_0x_nginx_running.json"))
    data["Config"]["Labels"][nc.HASH_LABEL] = nc.config_hash(desired)
    actual = nc.actual_config(data)
    assert nc.plan("started", desired, actual) == ([], {})
    changed = dict(desired, ipc="private")
    actions, diff = nc.plan("started", changed, actual)
    assert actions == ["remove", "create"] and list(diff) == ["config_hash"]


def test_a_hand_made_change_is_caught_even_with_a_matching_hash():
    desired = nc.desired_config(params())
    data = nc.parse_inspect(with_hash(fixture("nerdctl_2x_engine_running.json"), desired))
    data["HostConfig"]["Privileged"] = False
    data["Mounts"] = data["Mounts"][:1]
    actions, diff = nc.plan("started", desired, nc.actual_config(data))
    assert actions == ["remove", "create"]
    assert diff["privileged"] == (False, True) and "volumes" in diff and "config_hash" not in diff


def test_short_and_long_image_names_are_equal():
    desired = nc.desired_config(params(image="nginx:stable-alpine", entrypoint=None, command=[]))
    actual = nc.actual_config(nc.parse_inspect(fixture("nerdctl_0x_nginx_running.json")))
    assert "image" not in nc.differences(desired, actual)


@pytest.mark.parametrize("state,fixture_name,restart,expected", [
    ("started", "podman_plain_exited.json", False, ["start"]),
    ("started", "podman_plain_running.json", False, []),
    ("started", "podman_plain_running.json", True, ["restart"]),
    ("stopped", "podman_plain_running.json", False, ["stop"]),
    ("stopped", "podman_plain_exited.json", False, []),
    ("present", "podman_plain_exited.json", False, []),
    ("absent", "podman_plain_running.json", False, ["remove"]),
])
def test_state_transitions_on_recorded_podman_output(state, fixture_name, restart, expected):
    desired = nc.desired_config(dict(params(image="localhost/erdma-lab-debian12", entrypoint=None,
                                            command=["sleep", "infinity"], env={"A": "1"}, volumes=[], ulimits=[],
                                            gpus=None, network=None, ipc=None, privileged=False, cap_add=[],
                                            restart_policy="no", labels={"app": "demo"})))
    data = nc.parse_inspect(fixture(fixture_name))
    data["Config"]["Labels"][nc.HASH_LABEL] = nc.config_hash(desired)
    actions, diff = nc.plan(state, desired if state != "absent" else None, nc.actual_config(data), restart=restart)
    assert diff == {}
    assert actions == expected


def test_absent_container_is_created_or_left_alone():
    desired = nc.desired_config(params())
    assert nc.plan("started", desired, None) == (["create"], {})
    assert nc.plan("absent", None, None) == ([], {})


def test_recreate_forces_remove_and_create():
    desired = nc.desired_config(params())
    actual = nc.actual_config(nc.parse_inspect(with_hash(fixture("nerdctl_2x_engine_running.json"), desired)))
    assert nc.plan("started", desired, actual, recreate=True)[0] == ["remove", "create"]


def test_inspect_json_of_one_object_is_accepted():
    obj = json.loads(fixture("podman_plain_running.json"))[0]
    assert nc.parse_inspect(json.dumps(obj))["Id"] == obj["Id"]
    with pytest.raises(nc.ContainerError):
        nc.parse_inspect("42")


# ---------------------------------------------------------------- issue 12: limits, odd inspect JSON, secrets
def test_a_negative_stop_timeout_is_refused():
    with pytest.raises(nc.ContainerError, match="stop_timeout must be 0 or more"):
        nc.desired_config(params(stop_timeout=-1))
    assert nc.desired_config(params(stop_timeout=0))["image"]


@pytest.mark.parametrize("mutate", [
    lambda d: d["HostConfig"].update(Ulimits=[{"Name": "RLIMIT_NOFILE"}]),      # no Soft/Hard
    lambda d: d["HostConfig"].update(Ulimits=[["nofile", 1, 2]]),               # not objects
    lambda d: d["HostConfig"].update(RestartPolicy="always"),                   # a string, not an object
    lambda d: d.update(Config=None),
    lambda d: d["Config"].update(Env="A=1"),
    lambda d: d["Config"].update(Labels=["a=b"]),
    lambda d: d.update(Mounts=[{"Source": "/x"}, "not-a-mount"]),
    lambda d: d.update(State=None, Path=7, Args=None),
    lambda d: d.update(HostConfig=[]),
])
def test_unexpected_inspect_shapes_do_not_crash(mutate):
    """Recorded podman output with one field in a shape no tool printed so far: no KeyError, the field
    counts as unknown and the hash label decides."""
    data = json.loads(fixture("podman_engine_created.json"))[0]
    mutate(data)
    actual = nc.actual_config(data)
    desired = nc.desired_config(params())
    actions, _diff = nc.plan("started", desired, actual)
    assert actions == ["remove", "create"]  # the recorded hash label is not the desired one


def test_inspect_that_is_not_an_object_is_a_clear_error():
    with pytest.raises(nc.ContainerError, match="not a container object"):
        nc.actual_config(["x"])


def test_env_files_become_flags_and_their_content_is_part_of_the_hash():
    contents = {"/etc/erdma-pd/vllm.env": b"VLLM_API_KEY=first-secret-x1\n"}
    read = contents.__getitem__
    first = nc.desired_config(params(env_file=["/etc/erdma-pd/vllm.env"]), read=read)
    args = nc.run_args("nerdctl", "e", first)
    assert args[args.index("--env-file") + 1] == "/etc/erdma-pd/vllm.env"
    contents["/etc/erdma-pd/vllm.env"] = b"VLLM_API_KEY=second-secret-x2\n"
    second = nc.desired_config(params(env_file=["/etc/erdma-pd/vllm.env"]), read=read)
    assert nc.config_hash(first) != nc.config_hash(second)
    assert "first-secret" not in json.dumps(first) and "second-secret" not in json.dumps(second)


def test_no_env_file_keeps_the_hash_of_earlier_versions():
    """Containers created before env_file existed are not recreated by the upgrade."""
    config = nc.desired_config(params())
    legacy = json.dumps(dict((k, config.get(k)) for k in nc.CONFIG_KEYS), sort_keys=True, separators=(",", ":"))
    import hashlib
    assert nc.config_hash(config) == hashlib.sha256(legacy.encode("utf-8")).hexdigest()[:32]


def test_unreadable_or_relative_env_files_are_refused():
    with pytest.raises(nc.ContainerError, match="cannot be read"):
        nc.desired_config(params(env_file=["/nonexistent/erdma.env"]))
    with pytest.raises(nc.ContainerError, match="absolute path"):
        nc.desired_config(params(env_file=["relative.env"]))


def test_redaction_keeps_keys_and_drops_values():
    config = nc.desired_config(params(env={"VLLM_API_KEY": "sk-secret-123", "A": "1"}))
    shown = nc.redact_args(nc.run_args("podman", "e", config))
    assert "sk-secret-123" not in " ".join(shown)
    assert "VLLM_API_KEY=" + nc.HIDDEN in shown
    assert nc.redact_config(config)["env"] == {"A": nc.HIDDEN, "VLLM_API_KEY": nc.HIDDEN}
    data = json.loads(fixture("podman_engine_created.json"))[0]
    redacted = nc.redact_inspect(data)
    assert all(item.endswith("=" + nc.HIDDEN) for item in redacted["Config"]["Env"])
    assert "PYTHONHASHSEED=0" in data["Config"]["Env"]  # the original is untouched


def test_cpuset_becomes_a_flag_and_changes_the_hash_only_when_set():
    bound = nc.desired_config(params(cpuset_cpus="0-3,8"))
    args = nc.run_args("nerdctl", "e", bound)
    assert args[args.index("--cpuset-cpus") + 1] == "0-3,8"
    free = nc.desired_config(params())
    assert "--cpuset-cpus" not in nc.run_args("podman", "e", free)
    assert nc.config_hash(bound) != nc.config_hash(free)
    assert nc.config_hash(free) == nc.config_hash(nc.desired_config(params(cpuset_cpus="")))


@pytest.mark.parametrize("bad", ["0-", "all", "0-3 --privileged", "1,,2", "3-1", "0\n1"])
def test_a_cpuset_that_is_not_a_cpu_list_is_refused(bad):
    with pytest.raises(nc.ContainerError, match="not a CPU list"):
        nc.desired_config(params(cpuset_cpus=bad))
