# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Mooncake firewall's source allow-list; logic in plugin_utils/mooncake_firewall.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.erdma.pd.plugins.plugin_utils import mooncake_firewall


def mooncake_firewall_sources(hostvars, hosts, extra_sources=None, own_addresses=None):
    try:
        selected = dict((host, _variables(hostvars, host)) for host in hosts or [])
        return mooncake_firewall.allowed_sources(selected, extra_sources or [], own_addresses or [])
    except mooncake_firewall.FirewallError as exc:
        raise AnsibleFilterError(str(exc))


def _variables(hostvars, host):
    """The few variables the allow-list reads, each templated on its own (a missing one is None)."""
    variables = hostvars[host]
    picked = {}
    for name in mooncake_firewall.CANDIDATES + ("ansible_facts",):
        try:
            picked[name] = variables[name] if name in variables else None
        except Exception:  # an undefined or failing template counts as not set
            picked[name] = None
    return picked


class FilterModule(object):
    def filters(self):
        return {"mooncake_firewall_sources": mooncake_firewall_sources}
