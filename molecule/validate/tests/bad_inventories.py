"""Bad inventories for site.yml's validation play, and how to run and read a refused run.

Used by test_bad_inventories.py (three bare podman nodes, real runs). Each case is the lab's
inventory (inventories/lab/group_vars) with one thing wrong, and the words the refusal must
contain: the host, the variable, the value and the fix.
"""
import os
import pathlib
import re
import shutil
import subprocess

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
NODES = ("val-master", "val-prefill", "val-decode")
VALIDATION_PLAY = "Validate every input before any change"

# (case, group_vars/all values, host_vars values, words the refusal must contain)
CASES = [
    ("master address not an IP", {"vllm_pd_mooncake_master_address": "mooncake-master.lab"}, {},
     ["val-prefill: vllm_pd_mooncake_master_address = 'mooncake-master.lab' is not an IP address",
      "val-decode: vllm_pd_mooncake_master_address", "Fix: set mooncake_bind_address"]),
    ("master address of another host", {"vllm_pd_mooncake_master_address": "10.89.99.1"}, {},
     ["val-prefill: vllm_pd_mooncake_master_address = '10.89.99.1', but the master val-master binds to",
      "Fix: leave vllm_pd_mooncake_master_address unset"]),
    ("two services on one port", {}, {"val-master": {"pd_proxy_port": 8080}},
     ["val-master: mooncake_http_metadata_server_port and pd_proxy_port are both 8080",
      "Fix: give one of them another port"]),
    ("port out of range", {}, {"val-decode": {"vllm_pd_port": 70000}},
     ["val-decode: vllm_pd_port = 70000 is not a TCP port", "Fix: pick a free port"]),
    ("ratio above 1", {"mooncake_eviction_high_watermark_ratio": 1.5}, {},
     ["val-master: mooncake_eviction_high_watermark_ratio = 1.5 is not in (0, 1]", "Fix: give a fraction"]),
    ("size too small", {"vllm_pd_mooncake_local_buffer_size": 1024}, {},
     ["val-prefill: vllm_pd_mooncake_local_buffer_size = 1024 is not a size in bytes of at least 1048576",
      "Fix: give bytes"]),
    ("size of the wrong type", {"vllm_pd_mooncake_global_segment_size": "half"}, {},
     ["val-prefill: argument 'vllm_pd_mooncake_global_segment_size' is of type str",
      "Fix: correct these variables in the inventory as roles/vllm_pd/README.md"]),
    ("duration of zero", {"pd_proxy_decode_timeout": 0}, {},
     ["val-master: pd_proxy_decode_timeout = 0 is not a duration in s", "Fix: give seconds"]),
    ("rdma without devices", {"vllm_pd_mooncake_protocol": "rdma"}, {},
     ["val-prefill: vllm_pd_rdma_devices = [] is empty, but this host must have RDMA devices",
      "Fix: list the devices `ibv_devices` shows"]),
    ("relative path", {"vllm_pd_venv_path": "opt/vllm-pd/venv"}, {},
     ["val-decode: vllm_pd_venv_path = 'opt/vllm-pd/venv' is not an absolute path", "Fix: use an absolute"]),
    ("bind address of no interface", {}, {"val-master": {"pd_proxy_bind_address": "10.89.99.99"}},
     ["val-master: pd_proxy_bind_address = '10.89.99.99' is not an address of this host", "Fix: use one of them"]),
    ("prefill and decode disagree", {}, {"val-decode": {"vllm_pd_model": "/data/models/other"}},
     ["P/D guard: vllm_pd_model differs between the engines", "set vllm_pd_model once in group_vars/all"]),
    ("two engines on one address", {}, {"val-decode": {"vllm_pd_host_address": "10.89.99.5"},
                                        "val-prefill": {"vllm_pd_host_address": "10.89.99.5"}},
     ["val-decode, val-prefill: vllm_pd_host_address = '10.89.99.5' on each of them",
      "Fix: set each host's own address"]),
]


def write_inventory(path, lab_ips, connection, bad_all=None, bad_hosts=None, host_vars=None):
    """The lab's layout and group_vars for the nodes, reached by `connection`, with the bad values on top."""
    hosts = {"all": {"children": {
        "lab": {"hosts": dict((node, {"lab_ip": lab_ips[node]}) for node in NODES)},
        "mooncake_master": {"hosts": {"val-master": None}},
        "proxy": {"hosts": {"val-master": None}},
        "prefill": {"hosts": {"val-prefill": None}},
        "decode": {"hosts": {"val-decode": None}},
        "rdma": {"children": {"prefill": None, "decode": None}},
    }}}
    group_vars = path / "group_vars" / "all"
    group_vars.mkdir(parents=True)
    for source in sorted((ROOT / "inventories" / "lab" / "group_vars" / "all").glob("*.yml")):
        shutil.copy(source, group_vars / source.name)
    (group_vars / "connection.yml").write_text(yaml.safe_dump(connection))
    (path / "hosts.yml").write_text(yaml.safe_dump(hosts))
    if bad_all:
        (group_vars / "zz_bad.yml").write_text(yaml.safe_dump(bad_all))
    (path / "host_vars").mkdir()
    for node in NODES:
        values = dict((host_vars or {}).get(node, {}), **(bad_hosts or {}).get(node, {}))
        (path / "host_vars" / f"{node}.yml").write_text(yaml.safe_dump(values))
    return path


def run(playbook, inventory, *extra):
    """ansible-playbook as a user runs it from the checkout: its ansible.cfg, none of molecule's settings."""
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_")))
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), str(ROOT / playbook),
                             "-i", str(inventory), *extra], capture_output=True, text=True, timeout=170,
                            cwd=ROOT, env=env, check=False)
    return result.returncode, result.stdout + result.stderr


def recap(output):
    """Host -> {ok, changed, failed, ...} from the PLAY RECAP."""
    found = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        found[host] = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", counts))
    return found


def assert_refused(case, words, rc, output):
    """Refused in the validation play, no other play started, nothing changed, the message says it all."""
    assert rc != 0, f"{case}: site.yml did not refuse\n{output[-4000:]}"
    plays = re.findall(r"^PLAY \[(.*)\]", output, re.MULTILINE)
    assert plays == [VALIDATION_PLAY], f"{case}: plays that started: {plays}"
    counts = recap(output)
    assert sorted(counts) == sorted(NODES), output[-4000:]
    assert all(c["changed"] == 0 for c in counts.values()), counts
    assert "Refuse the run when any input is wrong" in output
    for word in words:
        assert word in output, f"{case}: the refusal does not say {word!r}\n{output[-4000:]}"
