# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mooncake_master command line, for the mooncake role's filters (controller side only).

``master_flags`` / ``parse_master_help`` turn the role's settings into ``mooncake_master`` flags,
keeping only the flags that the installed binary knows (its ``--help`` is read on the host), so one
role serves 0.3.7 (the guide's pin) and 0.3.13 (the non-CUDA wheel of the lab). ``wildcard_listeners``
reads ``ss -ltnH`` for the ports that listen on every interface whatever the master was told.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# Role setting -> (current flag, deprecated flag the guide uses). Deprecated names are only used
# when the binary does not know the current one.
MASTER_FLAG_NAMES = (
    ("rpc_port", ("rpc_port", "port")),
    ("rpc_thread_num", ("rpc_thread_num", "max_threads")),
    ("rpc_address", ("rpc_address",)),
    ("metrics_port", ("metrics_port",)),
    ("metrics_host", ("metrics_host",)),
    ("enable_http_metadata_server", ("enable_http_metadata_server",)),
    ("http_metadata_server_host", ("http_metadata_server_host",)),
    ("http_metadata_server_port", ("http_metadata_server_port",)),
    ("default_kv_lease_ttl", ("default_kv_lease_ttl",)),
    ("eviction_high_watermark_ratio", ("eviction_high_watermark_ratio",)),
    ("eviction_ratio", ("eviction_ratio",)),
    ("client_ttl", ("client_ttl",)),
    ("enable_ha", ("enable_ha",)),
    ("etcd_endpoints", ("etcd_endpoints",)),
    ("cluster_id", ("cluster_id",)),
)

# Flags that a binary accepts but does not honour (it still listens on 0.0.0.0), found by running it
# and reading `ss -ltn`: the HTTP metadata server of 0.3.7 and 0.3.13.post1 logs "started on ADDR"
# and binds every interface.
KNOWN_IGNORED_FLAGS = {
    "http_metadata_server_host": "the HTTP metadata server listens on 0.0.0.0 whatever this says "
                                 "(seen in 0.3.7 and 0.3.13.post1)",
}

# Settings that bind a listening socket: when the binary lacks the flag, the port is open on every
# interface, which the caller must report (and may close with the firewall).
BIND_SETTINGS = {
    "rpc_address": "rpc_port",
    "metrics_host": "metrics_port",
    "http_metadata_server_host": "http_metadata_server_port",
}

_HELP_FLAG = re.compile(r"^\s+-([A-Za-z0-9_]+)\s+\(")


class MasterFlagError(ValueError):
    """A setting cannot be expressed with the flags of this binary."""


def parse_master_help(text):
    """Return the set of flag names that ``mooncake_master --help`` (gflags) lists."""
    flags = set()
    for line in text.splitlines():
        match = _HELP_FLAG.match(line)
        if match:
            flags.add(match.group(1))
    return flags


def _flag_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, (list, tuple)):
        return ";".join(str(item) for item in value)
    return str(value)


def master_flags(settings, supported=None):
    """Render the master's flags.

    ``settings`` maps setting names (``MASTER_FLAG_NAMES``) to values; ``None`` or ``""`` leaves the
    binary's default. ``supported`` is the set from ``parse_master_help`` (``None``: assume every
    current name exists). Returns a dict: ``argv`` (list of ``--flag=value``), ``unsupported`` (settings
    the binary has no flag for, with their value), ``wildcard_settings`` (bind settings the binary
    cannot honour, so the port listens on all interfaces).
    """
    known = dict(MASTER_FLAG_NAMES)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise MasterFlagError("unknown master setting(s): %s" % ", ".join(unknown))
    argv = []
    unsupported = {}
    wildcard = []
    for name, candidates in MASTER_FLAG_NAMES:
        value = settings.get(name)
        if value is None or value == "" or value == []:
            continue
        flag = None
        for candidate in candidates:
            if supported is None or candidate in supported:
                flag = candidate
                break
        if flag is None:
            unsupported[name] = value
            if name in BIND_SETTINGS:
                wildcard.append(name)
            continue
        if name in KNOWN_IGNORED_FLAGS:
            wildcard.append(name)
        argv.append("--%s=%s" % (flag, _flag_value(value)))
    if settings.get("enable_ha") and not settings.get("etcd_endpoints"):
        raise MasterFlagError("enable_ha needs etcd_endpoints (the HA backend)")
    return {"argv": argv, "unsupported": unsupported, "wildcard_settings": sorted(wildcard)}


def wildcard_listeners(ss_text, ports):
    """Ports from ``ports`` that ``ss -ltnH`` shows listening on every address (0.0.0.0, ::, *)."""
    wanted = set(int(p) for p in ports)
    found = set()
    for line in ss_text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        local = fields[3]
        host, port = local.rsplit(":", 1) if ":" in local else ("", "")
        if not port.isdigit() or int(port) not in wanted:
            continue
        if host in ("0.0.0.0", "*", "[::]", "::"):
            found.add(int(port))
    return sorted(found)
