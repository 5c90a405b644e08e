# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The input checks of playbooks/validate.yml: per host by kind and range, and across hosts."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import glob
import os

import pytest
import yaml

from ansible_collections.erdma.pd.plugins.plugin_utils import inventory_checks as checks

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..")
GROUPS = {
    "mooncake_master": ["master"], "proxy": ["master"], "prefill": ["p1"], "decode": ["d1"],
    "rdma": ["p1", "d1"],
}
ENGINE = {
    "vllm_pd_host_address": "10.0.0.11", "vllm_pd_bind_address": "10.0.0.11", "vllm_pd_port": 7100,
    "vllm_pd_mooncake_master_address": "10.0.0.10", "vllm_pd_mooncake_master_port": 50052,
    "vllm_pd_mooncake_metadata_server": "http://10.0.0.10:8080/metadata", "vllm_pd_mooncake_protocol": "rdma",
    "vllm_pd_rdma_devices": ["erdma_0"], "vllm_pd_model": "/data/models/Qwen2.5-7B-Instruct",
    "vllm_pd_kv_connector": "lmcache_mooncake", "vllm_pd_runtime": "nerdctl", "vllm_pd_image_build": True,
    "vllm_pd_image_base": "vllm/vllm-openai:v0.10.1.1", "vllm_pd_pip_packages": ["vllm==0.11.0"],
    "vllm_pd_python_hash_seed": "0", "vllm_pd_chunk_size": 256, "vllm_pd_tensor_parallel_size": 1,
    "vllm_pd_dtype": "auto", "vllm_pd_kv_cache_dtype": "auto", "rdma_verify_bw_port": 18515,
    "rdma_verify_bw_fraction": 0.8,
}


def fleet():
    master = {"mooncake_bind_address": "10.0.0.10", "mooncake_rpc_port": 50052, "mooncake_metrics_port": 9004,
              "mooncake_http_metadata_server_port": 8080, "pd_proxy_bind_address": "10.0.0.10",
              "pd_proxy_port": 9000}
    decode = dict(ENGINE, vllm_pd_host_address="10.0.0.12", vllm_pd_bind_address="10.0.0.12", vllm_pd_port=7200)
    return {"master": master, "p1": dict(ENGINE), "d1": decode}


ADDRESSES = {"master": ["10.0.0.10", "192.0.2.10"], "p1": ["10.0.0.11"], "d1": ["10.0.0.12"]}


def test_a_sound_fleet_has_no_problem():
    hosts = fleet()
    assert checks.fleet_problems(hosts, GROUPS, ADDRESSES) == []
    for host, values in hosts.items():
        assert checks.host_problems(host, values) == []
        assert checks.address_problems(host, values, ADDRESSES[host]) == []


@pytest.mark.parametrize("name, value, words", [
    ("vllm_pd_mooncake_master_address", "master.example", ["is not an IP address"]),
    ("vllm_pd_mooncake_master_address", "0.0.0.0", ["wildcard"]),
    ("vllm_pd_port", 0, ["not a TCP port"]),
    ("vllm_pd_port", "70000", ["not a TCP port"]),
    ("vllm_pd_port", True, ["not a TCP port"]),
    ("vllm_pd_rdma_devices", [], ["is empty"]),
    ("vllm_pd_rdma_devices", ["erdma_0", "erdma_0"], ["twice"]),
    ("vllm_pd_rdma_devices", ["erdma 0"], ["not RDMA device names"]),
    ("vllm_pd_rdma_devices", "erdma_0", ["not a list"]),
    ("vllm_pd_mooncake_global_segment_size", 1024, ["at least 1048576"]),
    ("vllm_pd_gpu_memory_utilization", 1.5, ["(0, 1]"]),
    ("vllm_pd_gpu_memory_utilization", "most", ["not a number"]),
    ("vllm_pd_ready_timeout", -5, ["duration"]),
    ("vllm_pd_venv_path", "opt/venv", ["absolute path"]),
    ("vllm_pd_config_dir", "/etc/../tmp", ["absolute path"]),
    ("vllm_pd_mooncake_metadata_server", "http://master:8080/metadata", ["names the host 'master'"]),
    ("vllm_pd_mooncake_metadata_server", "master:8080", ["P2PHANDSHAKE"]),
    ("mooncake_bind_address", "0.0.0.0", ["wildcard", "mooncake_bind_all_interfaces_allowed"]),
    ("mooncake_eviction_high_watermark_ratio", 0, ["(0, 1]"]),
    ("mooncake_etcd_endpoints", ["etcd1"], ["HOST:PORT"]),
    ("pd_proxy_prefill_urls", ["10.0.0.11:7100"], ["http"]),
    ("pd_proxy_memory_max", "1 GB", ["systemd memory size"]),
    ("pd_proxy_max_concurrent_requests", 0, ["not an integer"]),
    ("pd_proxy_client_timeout", 0, ["duration"]),
    ("erdma_driver_checksums", {"env_setup.sh": "abc"}, ["ALGORITHM:HEX"]),
    ("rdma_verify_bw_fraction", 2, ["(0, 1]"]),
    ("vllm_pd_cpu_affinity", "0-3;rm -rf /", ["not a CPU list"]),
    ("vllm_pd_cpu_affinity", "3-1", ["not a CPU list"]),
    ("vllm_pd_cpu_affinity", "0-7\nExecStartPre=/bin/sh", ["not a CPU list"]),
])
def test_a_wrong_value_names_host_variable_value_and_fix(name, value, words):
    values = dict(ENGINE)
    values[name] = value
    problems = checks.host_problems("p1", values)
    assert len(problems) == 1, problems
    assert problems[0].startswith("p1: %s = " % name)
    assert "Fix:" in problems[0]
    for word in words:
        assert word in problems[0]


def test_tcp_needs_no_device_and_empty_sizes_are_left_to_vllm():
    values = dict(ENGINE, vllm_pd_mooncake_protocol="tcp", vllm_pd_rdma_devices=[],
                  vllm_pd_gpu_memory_utilization=None, vllm_pd_max_model_len="", vllm_pd_block_size=None)
    assert checks.host_problems("p1", values) == []


def test_wildcard_bind_is_allowed_when_said_so():
    values = {"mooncake_bind_address": "0.0.0.0", "mooncake_bind_all_interfaces_allowed": True}
    assert checks.host_problems("m", values) == []


def test_a_bind_address_must_be_one_of_the_host():
    problems = checks.address_problems("master", {"pd_proxy_bind_address": "10.0.0.99"}, ADDRESSES["master"])
    assert len(problems) == 1 and "pd_proxy_bind_address = '10.0.0.99' is not an address of this host" in problems[0]
    assert checks.address_problems("master", {"pd_proxy_bind_address": "127.0.0.1"}, ADDRESSES["master"]) == []
    # Without facts nothing is compared.
    assert checks.address_problems("master", {"pd_proxy_bind_address": "10.0.0.99"}, []) == []


def test_two_services_of_one_host_on_one_port():
    hosts = fleet()
    hosts["master"]["pd_proxy_port"] = 8080  # the HTTP metadata server listens on every interface
    problems = checks.fleet_problems(hosts, GROUPS, ADDRESSES)
    assert len(problems) == 1
    assert problems[0].startswith("master: mooncake_http_metadata_server_port and pd_proxy_port are both 8080")


def test_the_same_port_on_different_addresses_is_fine():
    hosts = fleet()
    groups = dict(GROUPS, proxy=["p1"])
    hosts["p1"].update(pd_proxy_port=7100, pd_proxy_bind_address="127.0.0.1")
    assert checks.port_clashes(hosts, groups) == []
    hosts["p1"]["pd_proxy_bind_address"] = "0.0.0.0"
    assert "vllm_pd_port and pd_proxy_port are both 7100" in checks.port_clashes(hosts, groups)[0]


def test_a_decode_engine_on_the_perftest_port():
    hosts = fleet()
    hosts["d1"]["vllm_pd_port"] = 18515
    problems = checks.port_clashes(hosts, GROUPS)
    assert problems and problems[0].startswith("d1: vllm_pd_port and rdma_verify_bw_port are both 18515")


def test_the_engines_must_use_the_master_address_and_port():
    hosts = fleet()
    hosts["p1"]["vllm_pd_mooncake_master_address"] = "10.0.0.99"
    hosts["d1"]["vllm_pd_mooncake_master_port"] = 50053
    problems = checks.master_problems(hosts, GROUPS, ADDRESSES)
    assert len(problems) == 2
    assert problems[0].startswith("d1: vllm_pd_mooncake_master_port = 50053") and "mooncake_rpc_port = 50052" \
        in problems[0]
    assert problems[1].startswith("p1: vllm_pd_mooncake_master_address = '10.0.0.99'")


def test_without_a_bind_address_the_master_address_is_compared_with_its_facts():
    hosts = fleet()
    hosts["master"]["mooncake_bind_address"] = ""
    hosts["p1"]["vllm_pd_mooncake_master_address"] = "192.0.2.10"
    assert checks.master_problems(hosts, GROUPS, ADDRESSES) == []
    hosts["p1"]["vllm_pd_mooncake_master_address"] = "192.0.2.99"
    assert "is not an address of the master master" in checks.master_problems(hosts, GROUPS, ADDRESSES)[0]


def test_two_masters_are_refused():
    problems = checks.master_problems(fleet(), dict(GROUPS, mooncake_master=["master", "p1"]), ADDRESSES)
    assert problems == ["the group mooncake_master has 2 hosts (master, p1): the engines use one Mooncake master. "
                        "Fix: keep one host in the group mooncake_master."]


def test_engines_need_their_own_address_and_one_stage():
    hosts = fleet()
    hosts["d1"]["vllm_pd_host_address"] = "10.0.0.11"
    problems = checks.engine_problems(hosts, GROUPS)
    assert problems == ["d1, p1: vllm_pd_host_address = '10.0.0.11' on each of them; Mooncake names each engine's "
                        "segment by this address, so it must differ. Fix: set each host's own address."]
    both = checks.engine_problems(fleet(), dict(GROUPS, decode=["d1", "p1"]))
    assert "p1 is in both groups prefill and decode" in both[0]


def test_the_pd_guard_runs_on_the_inventory():
    hosts = fleet()
    hosts["d1"]["vllm_pd_model"] = "/data/models/other"
    hosts["d1"]["vllm_pd_environment"] = {"PYTHONHASHSEED": "1"}
    problems = checks.engine_problems(hosts, GROUPS)
    assert any(p.startswith("P/D guard: vllm_pd_model differs") for p in problems)
    assert any(p.startswith("P/D guard: vllm_pd_python_hash_seed differs") for p in problems)


def test_a_missing_stage_is_a_problem_only_when_every_engine_is_in_the_run():
    hosts = fleet()
    del hosts["d1"]
    assert checks.engine_problems(hosts, GROUPS) == []  # --limit left d1 out
    problems = checks.engine_problems(hosts, dict(GROUPS, decode=[]))
    assert any("no decode host" in p for p in problems)


def test_one_threshold_for_the_link_report():
    hosts = fleet()
    hosts["d1"]["rdma_verify_bw_fraction"] = 0.5
    assert checks.agreement_problems(hosts, GROUPS)[0].startswith("rdma_verify_bw_fraction differs between the rdma hosts")


def test_the_shipped_inventories_pass_their_own_values():
    """Every literal value of inventories/*/group_vars and host_vars passes the per-host checks."""
    for inventory in ("lab", "pd"):
        for sub in ("group_vars/all", "host_vars"):
            folder = os.path.join(ROOT, "inventories", inventory, sub)
            for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
                with open(os.path.join(folder, name)) as handle:
                    values = yaml.safe_load(handle) or {}
                literal = dict((k, v) for k, v in values.items() if "{{" not in str(v))
                merged = dict(copy.deepcopy(ENGINE), **literal)
                assert checks.host_problems(name, merged) == [], (inventory, name)


def test_every_checked_variable_exists_in_a_role():
    """A renamed variable must not leave its check behind unnoticed."""
    known = set()
    for spec in glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml")):
        with open(spec) as handle:
            for entry in (yaml.safe_load(handle)["argument_specs"] or {}).values():
                known.update(entry.get("options") or {})
    playbooks = ""
    for playbook in glob.glob(os.path.join(ROOT, "playbooks", "*.yml")):
        with open(playbook) as handle:
            playbooks += handle.read()
    missing = [n for n in list(checks.CHECKS) + list(checks.FLEET_WIDE_VERIFY_SETTINGS)
               if n not in known and n not in playbooks]
    assert missing == []


UBUNTU_22 = {"service_mgr": "systemd", "os_family": "Debian", "distribution": "Ubuntu",
             "distribution_major_version": "22", "distribution_version": "22.04"}


def test_a_system_every_stage_can_serve():
    assert checks.fact_problems("p1", UBUNTU_22, rdma=True) == []


def test_systems_that_would_stop_a_later_stage():
    problems = checks.fact_problems("p1", dict(UBUNTU_22, service_mgr="sysvinit", os_family="RedHat",
                                               distribution="Rocky", distribution_major_version="9"), rdma=True)
    assert [p.split(":")[0] for p in problems] == ["p1", "p1", "p1"]
    assert "service manager is sysvinit" in problems[0] and "install with apt" in problems[1]
    assert "erdma_driver_allow_unsupported_os" in problems[2]


def test_debian_runs_the_driver_stage_only_when_allowed():
    debian = dict(UBUNTU_22, distribution="Debian", distribution_major_version="12", distribution_version="12")
    assert len(checks.fact_problems("p1", debian, rdma=True)) == 1
    assert checks.fact_problems("p1", debian, {"erdma_driver_allow_unsupported_os": True}, rdma=True) == []
    assert checks.fact_problems("master", debian, rdma=False) == []


@pytest.mark.parametrize("text, cpus", [
    ("0", [0]), ("0-3", [0, 1, 2, 3]), ("0,2,4-5", [0, 2, 4, 5]), ("8-9,0", [0, 8, 9]), ("1, 3", [1, 3]),
])
def test_cpu_lists_expand_as_the_kernel_writes_them(text, cpus):
    assert checks.expand_cpu_list(text) == cpus
    assert checks.cpu_list(text) is None


def test_cpus_the_host_lacks_are_named():
    # /sys/devices/system/cpu/online of a 2-core lab machine and of a host with a CPU taken offline.
    assert checks.offline_cpus("0,1", "0-1") == []
    assert checks.offline_cpus("0-3", "0-1") == [2, 3]
    assert checks.offline_cpus("4-5", "0-3,5-7") == [4]
    assert checks.offline_cpus("", "0-1") == []
