# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The master's command line, rendered against the real --help of 0.3.7 and 0.3.13.post1
(tests/unit/fixtures/mooncake/SOURCES.md)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.erdma.pd.plugins.plugin_utils.mooncake_master import (
    MasterFlagError,
    master_flags,
    parse_master_help,
    wildcard_listeners,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "mooncake")
ADDR = "10.89.60.10"


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def guide_settings(**extra):
    """The guide's command line plus the issue's defaults, bound to one address."""
    settings = {
        "rpc_port": 50052,
        "rpc_thread_num": 64,
        "rpc_address": ADDR,
        "metrics_port": 9004,
        "metrics_host": ADDR,
        "enable_http_metadata_server": True,
        "http_metadata_server_host": ADDR,
        "http_metadata_server_port": 8080,
        "default_kv_lease_ttl": 10000,
        "eviction_high_watermark_ratio": 0.9,
        "eviction_ratio": 0.05,
        "client_ttl": 10,
        "enable_ha": False,
        "etcd_endpoints": [],
        "cluster_id": "",
    }
    settings.update(extra)
    return settings


@pytest.mark.parametrize("version", ["0.3.7", "0.3.13.post1"])
def test_help_of_both_versions_lists_current_and_deprecated_names(version):
    flags = parse_master_help(fixture("master-help-%s.txt" % version))
    for name in ("rpc_port", "port", "rpc_thread_num", "max_threads", "rpc_address", "metrics_port",
                 "http_metadata_server_host", "default_kv_lease_ttl", "eviction_high_watermark_ratio",
                 "client_ttl", "enable_ha", "etcd_endpoints"):
        assert name in flags, name


def test_metrics_host_exists_only_in_the_newer_version():
    assert "metrics_host" not in parse_master_help(fixture("master-help-0.3.7.txt"))
    assert "metrics_host" in parse_master_help(fixture("master-help-0.3.13.post1.txt"))


def test_guide_flags_on_0_3_13_use_current_names_and_bind_every_socket():
    result = master_flags(guide_settings(), parse_master_help(fixture("master-help-0.3.13.post1.txt")))
    assert result["argv"] == [
        "--rpc_port=50052",
        "--rpc_thread_num=64",
        "--rpc_address=%s" % ADDR,
        "--metrics_port=9004",
        "--metrics_host=%s" % ADDR,
        "--enable_http_metadata_server=true",
        "--http_metadata_server_host=%s" % ADDR,
        "--http_metadata_server_port=8080",
        "--default_kv_lease_ttl=10000",
        "--eviction_high_watermark_ratio=0.9",
        "--eviction_ratio=0.05",
        "--client_ttl=10",
        "--enable_ha=false",
    ]
    assert result["unsupported"] == {}
    # Accepted but not honoured: the metadata server still listens on 0.0.0.0.
    assert result["wildcard_settings"] == ["http_metadata_server_host"]


def test_0_3_7_has_no_metrics_host_so_the_admin_port_listens_everywhere():
    result = master_flags(guide_settings(), parse_master_help(fixture("master-help-0.3.7.txt")))
    assert not [flag for flag in result["argv"] if flag.startswith("--metrics_host")]
    assert result["unsupported"] == {"metrics_host": ADDR}
    assert result["wildcard_settings"] == ["http_metadata_server_host", "metrics_host"]
    assert "--rpc_address=%s" % ADDR in result["argv"]


def test_deprecated_names_are_used_only_when_the_binary_lacks_the_current_ones():
    old_help = "\n".join(line for line in fixture("master-help-0.3.7.txt").splitlines()
                         if "-rpc_port (" not in line and "-rpc_thread_num (" not in line)
    argv = master_flags({"rpc_port": 50052, "rpc_thread_num": 64}, parse_master_help(old_help))["argv"]
    assert argv == ["--port=50052", "--max_threads=64"]


def test_without_help_every_current_name_is_assumed():
    assert master_flags({"metrics_host": ADDR})["argv"] == ["--metrics_host=%s" % ADDR]


def test_empty_values_keep_the_binary_defaults():
    argv = master_flags({"cluster_id": "", "etcd_endpoints": [], "rpc_address": None, "rpc_port": 1})["argv"]
    assert argv == ["--rpc_port=1"]


def test_ha_renders_endpoints_separated_by_semicolons():
    argv = master_flags({"enable_ha": True, "etcd_endpoints": ["10.0.0.1:2379", "10.0.0.2:2379"],
                         "cluster_id": "pd"})["argv"]
    assert argv == ["--enable_ha=true", "--etcd_endpoints=10.0.0.1:2379;10.0.0.2:2379", "--cluster_id=pd"]


def test_ha_without_endpoints_is_refused():
    with pytest.raises(MasterFlagError, match="etcd_endpoints"):
        master_flags({"enable_ha": True})


def test_unknown_setting_is_refused():
    with pytest.raises(MasterFlagError, match="max_thread"):
        master_flags({"max_thread": 4})


def test_floats_render_without_noise():
    argv = master_flags({"eviction_high_watermark_ratio": 1.0, "eviction_ratio": 0.05})["argv"]
    assert argv == ["--eviction_high_watermark_ratio=1", "--eviction_ratio=0.05"]


@pytest.mark.parametrize("version, ports", [("0.3.7", [8080, 9004]), ("0.3.13.post1", [8080])])
def test_wildcard_listeners_from_recorded_ss(version, ports):
    assert wildcard_listeners(fixture("ss-%s.txt" % version), [50052, 9004, 8080]) == ports


def test_wildcard_listeners_reads_ipv6_and_ignores_other_ports():
    text = "LISTEN 0 128 [::]:8080 [::]:*\nLISTEN 0 128 *:9004 *:*\nLISTEN 0 128 0.0.0.0:22 0.0.0.0:*\n"
    assert wildcard_listeners(text, [8080, 9004, 50052]) == [8080, 9004]
