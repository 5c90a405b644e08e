# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the mooncake role: the master's flags and its wildcard listeners (logic in plugin_utils/mooncake_master.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.erdma.pd.plugins.plugin_utils.mooncake_master import (
    MasterFlagError,
    master_flags,
    parse_master_help,
    wildcard_listeners,
)


def mooncake_master_flags(settings, help_text=None):
    """Flags for mooncake_master from the role's settings; only those that the binary's --help lists."""
    supported = parse_master_help(help_text) if help_text else None
    try:
        return master_flags(dict(settings), supported)
    except MasterFlagError as exc:
        raise AnsibleFilterError(str(exc))


def mooncake_wildcard_listeners(ss_text, ports):
    """Ports among `ports` that `ss -ltnH` shows listening on every address."""
    return wildcard_listeners(ss_text or "", ports)


class FilterModule(object):
    def filters(self):
        return {
            "mooncake_master_flags": mooncake_master_flags,
            "mooncake_wildcard_listeners": mooncake_wildcard_listeners,
        }
