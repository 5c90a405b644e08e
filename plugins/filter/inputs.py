# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the input checks (playbooks/validate.yml and each role's tasks/validate.yml).

The logic lives in plugin_utils/inventory_checks.py, unit-tested there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.erdma.pd.plugins.plugin_utils import inventory_checks


def input_problems(values, host, addresses=None):
    """Per-host problems of the values (variable -> value) by kind and range, and bind addresses."""
    values = dict(values or {})
    return (inventory_checks.host_problems(str(host), values)
            + inventory_checks.address_problems(str(host), values, list(addresses or [])))


def fleet_input_problems(hosts, groups, addresses=None):
    """Cross-host problems: ports of one host, the Mooncake master, engine addresses, the P/D guard."""
    hosts = dict((str(name), dict(values or {})) for name, values in dict(hosts or {}).items())
    addresses = dict((str(name), list(found or [])) for name, found in dict(addresses or {}).items())
    return inventory_checks.fleet_problems(hosts, dict(groups or {}), addresses)


def host_fact_problems(facts, host, values=None, rdma=False):
    """Problems of the host's system (service manager, apt, the driver's systems) from its facts."""
    return inventory_checks.fact_problems(str(host), dict(facts or {}), dict(values or {}), bool(rdma))


def offline_cpus(wanted, online_text):
    """The CPUs of a CPU list that the host does not have online (from /sys/devices/system/cpu/online)."""
    try:
        return inventory_checks.offline_cpus(wanted, str(online_text or "").strip())
    except ValueError as exc:
        raise AnsibleFilterError("not a CPU list: %s" % exc)


class FilterModule(object):
    """Input checks."""

    def filters(self):
        return {
            "input_problems": input_problems,
            "fleet_input_problems": fleet_input_problems,
            "host_fact_problems": host_fact_problems,
            "offline_cpus": offline_cpus,
        }
