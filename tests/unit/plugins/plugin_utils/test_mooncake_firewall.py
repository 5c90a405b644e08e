# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Mooncake firewall's source allow-list from inventory variables (the rules themselves are
loaded by real nftables in molecule/mooncake)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.erdma.pd.plugins.filter.mooncake_firewall import mooncake_firewall_sources
from ansible_collections.erdma.pd.plugins.plugin_utils import mooncake_firewall as fw

# The field guide's topology (inventories/pd): prefill + master + proxy on the 4090, decode on the H20.
GUIDE = {
    "gpu-4090-01": {"vllm_pd_host_address": "172.16.0.10", "ansible_host": "gpu-4090-01.example"},
    "gpu-h20-01": {"vllm_pd_host_address": "172.16.0.20", "ansible_host": "203.0.113.7"},
}


def test_guide_topology_allows_the_engines_and_loopback_only():
    sources = fw.allowed_sources(GUIDE, own_addresses=["172.16.0.10"])
    assert sources == {"ipv4": ["127.0.0.0/8", "172.16.0.10/32", "172.16.0.20/32"], "ipv6": ["::1/128"]}


def test_address_order_explicit_then_engine_then_ansible_host_then_facts():
    assert fw.host_address("a", {"mooncake_firewall_source_address": "10.0.0.1",
                                 "vllm_pd_host_address": "10.0.0.2"}) == "10.0.0.1"
    assert fw.host_address("a", {"vllm_pd_host_address": "10.0.0.2", "ansible_host": "10.0.0.3"}) == "10.0.0.2"
    assert fw.host_address("a", {"vllm_pd_host_address": None, "ansible_host": "10.0.0.3"}) == "10.0.0.3"
    assert fw.host_address("a", {"ansible_host": "name.example",
                                 "ansible_facts": {"default_ipv4": {"address": "10.0.0.4"}}}) == "10.0.0.4"
    assert fw.host_address("a", {"ansible_host": "name.example"}) is None


def test_a_host_without_an_address_fails_naming_it():
    with pytest.raises(fw.FirewallError) as exc:
        fw.allowed_sources(dict(GUIDE, **{"monitor-01": {"ansible_host": "monitor-01.example"}}))
    assert "monitor-01" in str(exc.value) and "mooncake_firewall_source_address" in str(exc.value)


def test_extra_networks_and_ipv6_are_collapsed():
    sources = fw.allowed_sources({"v6": {"mooncake_firewall_source_address": "fd00::5"}},
                                 extra_sources=["10.89.60.0/24", "10.89.60.7", "192.0.2.0/25", "192.0.2.128/25"])
    assert sources["ipv4"] == ["10.89.60.0/24", "127.0.0.0/8", "192.0.2.0/24"]
    assert sources["ipv6"] == ["::1/128", "fd00::5/128"]


@pytest.mark.parametrize("bad", ["10.0.0.300", "any", "10.0.0.1; drop", "10.0.0.0/33"])
def test_bad_sources_are_refused(bad):
    with pytest.raises(fw.FirewallError, match="not an IP address or network"):
        fw.allowed_sources({}, extra_sources=[bad])


def test_filter_reads_hostvars_and_reports_errors_as_filter_errors():
    hostvars = {"p": {"vllm_pd_host_address": "10.89.60.11"}, "d": {"ansible_host": "10.89.60.12"},
                "x": {}}
    assert mooncake_firewall_sources(hostvars, ["p", "d"])["ipv4"] == [
        "10.89.60.11/32", "10.89.60.12/32", "127.0.0.0/8"]
    with pytest.raises(AnsibleFilterError, match="cannot tell the address of x"):
        mooncake_firewall_sources(hostvars, ["p", "x"])
