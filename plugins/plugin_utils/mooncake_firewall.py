# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The source allow-list of the Mooncake master's firewall, from the inventory.

mooncake_master 0.3.x binds its metadata (and in 0.3.7 its admin) port to every interface, and
serves both without authentication: only the hosts that need the master may reach it. Each
allowed host contributes one address, the first that is set of:

1. ``mooncake_firewall_source_address`` (the host's address on the network it reaches the master by),
2. ``vllm_pd_host_address`` (an engine's address on the KV-cache network),
3. ``ansible_host``, when it is an IP address,
4. the host's default IPv4 address from gathered facts.

A host with none of them is an error: a silent gap would refuse an engine at run time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

LOOPBACK = ("127.0.0.0/8", "::1/128")
CANDIDATES = ("mooncake_firewall_source_address", "vllm_pd_host_address", "ansible_host")


class FirewallError(ValueError):
    """An allow-list that cannot be built; the message names the host and the variable to set."""


def _network(value, where):
    try:
        return ipaddress.ip_network(u"%s" % (value,), strict=False)
    except ValueError:
        raise FirewallError("%s: %r is not an IP address or network" % (where, value))


def _is_ip(value):
    try:
        ipaddress.ip_address(u"%s" % (value,))
        return True
    except ValueError:
        return False


def host_address(host, hostvars):
    """The address a host connects from, per the order in the module docstring; None if unknown."""
    explicit = hostvars.get("mooncake_firewall_source_address")
    if explicit:
        _network(explicit, "%s: mooncake_firewall_source_address" % host)
        return str(explicit)
    for name in CANDIDATES[1:]:
        value = hostvars.get(name)
        if value and _is_ip(value):
            return str(value)
    facts = hostvars.get("ansible_facts") or {}
    default = (facts.get("default_ipv4") or {}).get("address")
    return str(default) if default else None


def allowed_sources(hosts, extra_sources=(), own_addresses=()):
    """{'ipv4': [...], 'ipv6': [...]} of networks (loopback, own addresses, hosts, extras), collapsed.

    `hosts` maps inventory names to their variables (hostvars); an empty value means the host was
    listed but its variables are unknown.
    """
    networks = [_network(n, "loopback") for n in LOOPBACK]
    networks += [_network(a, "the master's own address") for a in own_addresses if a]
    missing = []
    for host in sorted(hosts):
        address = host_address(host, hosts[host] or {})
        if address is None:
            missing.append(host)
        else:
            networks.append(_network(address, host))
    if missing:
        raise FirewallError(
            "the Mooncake firewall cannot tell the address of %s (in mooncake_firewall_allowed_groups): set "
            "mooncake_firewall_source_address (or vllm_pd_host_address, or an IP address as ansible_host) for "
            "each, or gather their facts first" % ", ".join(missing))
    networks += [_network(n, "mooncake_firewall_allowed_sources") for n in extra_sources or []]
    result = {}
    for version, key in ((4, "ipv4"), (6, "ipv6")):
        result[key] = [str(n) for n in ipaddress.collapse_addresses(n for n in networks if n.version == version)]
    return result
