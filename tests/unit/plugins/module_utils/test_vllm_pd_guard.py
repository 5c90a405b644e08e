# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The P/D consistency guard: every kind of mismatch gives one message naming hosts and values."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest

from ansible_collections.erdma.pd.plugins.module_utils import vllm_pd

BASE = dict(model="/data/models/Qwen2.5-7B-Instruct", served_model_name="", tensor_parallel_size=1,
            chunk_size=256, block_size=None, dtype="auto", kv_cache_dtype="auto",
            kv_connector="lmcache_mooncake", protocol="rdma",
            packages=["vllm==0.11.0", "lmcache==0.3.9", "mooncake-transfer-engine==0.3.7"],
            image="localhost/erdma-pd-vllm:0.11.0", python_hash_seed="0")


def fleet(**per_host):
    """Two prefill (4090s) and one decode (H20) host that agree, then per-host overrides."""
    hosts = {
        "gpu-4090-01": dict(BASE, stage="prefill", gpu_memory_utilization=0.9, rdma_devices=["erdma_0"]),
        "gpu-4090-02": dict(BASE, stage="prefill", gpu_memory_utilization=0.9, rdma_devices=["erdma_0"]),
        "gpu-h20-01": dict(BASE, stage="decode", gpu_memory_utilization=0.85, rdma_devices=["erdma_0", "erdma_1"],
                           max_num_seqs=128),
    }
    hosts = copy.deepcopy(hosts)
    for host, changes in per_host.items():
        hosts[host.replace("_", "-")].update(changes)
    return hosts


def test_a_consistent_heterogeneous_fleet_passes():
    # Different GPUs, memory utilisation, sequence limits and RDMA devices are expected.
    assert vllm_pd.consistency_problems(fleet()) == []


@pytest.mark.parametrize("key,variable,value,shown", [
    ("model", "vllm_pd_model", "/data/models/Qwen2.5-7B", "'/data/models/Qwen2.5-7B'"),
    ("served_model_name", "vllm_pd_served_model_name", "qwen", "'qwen'"),
    ("tensor_parallel_size", "vllm_pd_tensor_parallel_size", 2, "2"),
    ("chunk_size", "vllm_pd_chunk_size", 512, "512"),
    ("block_size", "vllm_pd_block_size", 16, "16"),
    ("dtype", "vllm_pd_dtype", "bfloat16", "'bfloat16'"),
    ("kv_cache_dtype", "vllm_pd_kv_cache_dtype", "fp8", "'fp8'"),
    ("kv_connector", "vllm_pd_kv_connector", "mooncake_store", "'mooncake_store'"),
    ("protocol", "vllm_pd_mooncake_protocol", "tcp", "'tcp'"),
    ("packages", "vllm_pd_pip_packages", ["vllm==0.11.1", "lmcache==0.3.9", "mooncake-transfer-engine==0.3.7"],
     "[vllm==0.11.1, lmcache==0.3.9, mooncake-transfer-engine==0.3.7]"),
    ("image", "vllm_pd_image", "vllm/vllm-openai:v0.11.0", "'vllm/vllm-openai:v0.11.0'"),
    ("python_hash_seed", "vllm_pd_python_hash_seed", "42", "'42'"),
])
def test_each_mismatch_names_variable_hosts_and_values(key, variable, value, shown):
    problems = vllm_pd.consistency_problems(fleet(gpu_h20_01={key: value}))
    assert len(problems) == 1, problems
    message = problems[0]
    assert message.startswith(variable + " differs between the engines")
    assert "%s on gpu-h20-01 (decode)" % shown in message
    original = vllm_pd._show(BASE[key])
    assert "%s on gpu-4090-01 (prefill), gpu-4090-02 (prefill)" % original in message
    assert "group_vars/all" in message


def test_pin_order_and_spelling_do_not_count_as_a_difference():
    reordered = ["Mooncake_Transfer_Engine==0.3.7", "lmcache==0.3.9", "vllm==0.11.0"]
    assert vllm_pd.consistency_problems(fleet(gpu_h20_01={"packages": reordered})) == []


def test_numbers_given_as_strings_are_the_same_numbers():
    assert vllm_pd.consistency_problems(fleet(gpu_h20_01={"chunk_size": "256", "tensor_parallel_size": "1"})) == []


@pytest.mark.parametrize("seed", [None, "", "random", "-1", "4294967296", "1.5"])
def test_pythonhashseed_must_be_a_fixed_number(seed):
    hosts = fleet()
    for settings in hosts.values():
        settings["python_hash_seed"] = seed
    problems = vllm_pd.consistency_problems(hosts)
    seed_problems = [p for p in problems if p.startswith("PYTHONHASHSEED on ")]
    assert len(seed_problems) == 3
    assert "PYTHONHASHSEED on gpu-h20-01 is" in seed_problems[-1]
    assert "vllm_pd_python_hash_seed" in seed_problems[-1]


def test_several_mismatches_give_several_messages():
    problems = vllm_pd.consistency_problems(fleet(gpu_4090_02={"dtype": "float16"},
                                                  gpu_h20_01={"chunk_size": 128, "model": "/m"}))
    variables = sorted(p.split(" ", 1)[0] for p in problems)
    assert variables == ["vllm_pd_chunk_size", "vllm_pd_dtype", "vllm_pd_model"]
    dtype = [p for p in problems if p.startswith("vllm_pd_dtype")][0]
    assert "'float16' on gpu-4090-02 (prefill)" in dtype
    assert "'auto' on gpu-4090-01 (prefill), gpu-h20-01 (decode)" in dtype


def test_installed_versions_that_differ_are_reported():
    problems = vllm_pd.consistency_problems(fleet(
        gpu_4090_01={"installed": {"vllm": "0.11.0", "lmcache": "0.3.9"}},
        gpu_h20_01={"installed": {"vllm": "0.11.1", "lmcache": "0.3.9", "unrelated": "1"}}))
    assert problems == ["installed vllm differs between the engines: 0.11.0 on gpu-4090-01; 0.11.1 on gpu-h20-01. "
                        "Re-run the role's install phase (tag vllm_pd_install) so that every venv holds "
                        "vllm_pd_pip_packages."]


def test_an_empty_stage_is_reported():
    hosts = fleet()
    del hosts["gpu-h20-01"]
    assert vllm_pd.consistency_problems(hosts) == [
        "no decode host: the group decode is empty, PD needs at least one host in each of prefill and decode"]
    assert vllm_pd.consistency_problems({}) == ["no engine hosts: put hosts in the groups prefill and decode"]


def test_a_limited_run_may_lack_a_stage():
    hosts = fleet()
    del hosts["gpu-h20-01"]
    assert vllm_pd.consistency_problems(hosts, require_both_stages=False) == []


def test_a_fleet_that_mixes_venv_and_container_engines_compares_what_each_holds():
    # Venv prefill (pins, no image), a decode on a ready-made image (no pins; its versions read from the
    # image) and a decode on an image built from the same pins: they agree when the versions do.
    versions = {"vllm": "0.11.0", "lmcache": "0.3.9", "mooncake-transfer-engine": "0.3.7"}
    hosts = fleet(gpu_4090_01=dict(image="", installed=versions),
                  gpu_4090_02=dict(image="", installed=versions),
                  gpu_h20_01=dict(packages=[], installed=versions))
    assert vllm_pd.consistency_problems(hosts) == []
    # The image holds another vLLM than the venvs' pins: found by the versions read from the image.
    hosts["gpu-h20-01"]["installed"] = dict(versions, vllm="0.10.1.1")
    problems = vllm_pd.consistency_problems(hosts)
    assert len(problems) == 1 and problems[0].startswith("installed vllm differs between the engines"), problems
    assert "gpu-h20-01" in problems[0] and "0.10.1.1" in problems[0]


def test_two_container_engines_on_different_images_still_differ_beside_a_venv_engine():
    hosts = fleet(gpu_4090_01=dict(image=""), gpu_4090_02=dict(image="localhost/other:1"))
    problems = vllm_pd.consistency_problems(hosts)
    assert len(problems) == 1 and "vllm_pd_image differs" in problems[0], problems
    assert "gpu-4090-01" not in problems[0]
