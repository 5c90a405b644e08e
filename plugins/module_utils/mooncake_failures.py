# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What went wrong in a Mooncake store check, named from the client's own log lines.

The patterns were recorded from the real package (see tests/unit/fixtures/mooncake/SOURCES.md).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# Failure classes, each with the log lines (regular expressions) that identify it and a hint that
# says what to do. Order matters: the first class whose pattern matches wins.
FAILURES = (
    ("no_rdma_device",
     (r"No RDMA devices found", r"No available RNIC", r"Failed to install RDMA transport",
      r"cannot initialize RDMA resources"),
     "protocol rdma found no usable RDMA NIC: check `ibv_devices` (driver, /dev/infiniband mounted into the "
     "container), the device names in device_name, or use protocol tcp"),
    ("master_unreachable",
     (r"Client not available", r"coro_rpc_client.*Connection refused", r"send request to \S+ failed",
      r"reconnect client.*stop retry"),
     "the client could not reach the master's RPC port: check that mooncake-master runs "
     "(systemctl status mooncake-master), its rpc address/port, and the firewall between the nodes"),
    ("metadata_unreachable",
     (r"Failed to (?:connect|send).*metadata", r"curl.*(?:Couldn't connect|Failed to connect)",
      r"transfer_metadata_plugin.*(?:Connection refused|Couldn't connect)"),
     "the client could not reach the metadata server: check metadata_server (http://MASTER:8080/metadata) "
     "and that the master runs with --enable_http_metadata_server=true"),
)

# Mooncake's error codes that a check may meet (mooncake-store/include/types.h).
ERROR_CODES = {
    -1: "INTERNAL_ERROR",
    -200: "NO_AVAILABLE_HANDLE (no segment has room: mount a global segment somewhere)",
    -704: "OBJECT_NOT_FOUND",
    -705: "OBJECT_ALREADY_EXISTS",
    -800: "TRANSFER_FAIL",
    -900: "RPC_FAIL (the master did not answer)",
}

_TCP_FALLBACK = (r"Set auto discovery ON by default for rdma protocol", r"Found 0 HCAs")
_TCP_TRANSPORT = r"TcpTransport: listen on port"
_RDMA_TRANSPORT = r"Using specified RDMA devices|RdmaTransport|rdma_transport\.cpp"


def observed_transport(log_text):
    """Which transport the client installed, from its log: 'tcp', 'rdma' or None (not known)."""
    if re.search(_TCP_TRANSPORT, log_text):
        return "tcp"
    if re.search(_RDMA_TRANSPORT, log_text):
        return "rdma"
    return None


def tcp_fallback(protocol, log_text):
    """True when protocol rdma was asked for but the client silently runs over TCP."""
    if protocol != "rdma":
        return False
    return observed_transport(log_text) == "tcp" or all(
        re.search(p, log_text, re.IGNORECASE) for p in _TCP_FALLBACK)


def classify_failure(result, log_text, protocol="tcp", timed_out=False):
    """Name the failure of a store check from its partial result and the client's log.

    Returns (failure_class, message) or (None, None) when the check succeeded.
    """
    result = result or {}
    if result.get("phase") == "done":
        timed_out = False  # the work was done; only the client's exit hung
    for name, patterns, hint in FAILURES:
        for pattern in patterns:
            match = re.search(r"^.*(?:%s).*$" % pattern, log_text, re.MULTILINE | re.IGNORECASE)
            if match and (result.get("setup_rc") not in (0,) or timed_out or result.get("timed_out")):
                return name, "%s; the client logged: %s" % (hint, match.group(0).strip()[:300])
    if result.get("import_error"):
        return "client_import_failed", (
            "the Mooncake venv cannot import mooncake.store (%s): install it with the erdma.pd.mooncake role "
            "(apt: libibverbs1 libcurl4), and for the CUDA wheel put the CUDA runtime on LD_LIBRARY_PATH"
            % result["import_error"])
    if result.get("timed_out") or timed_out:
        phase = result.get("phase", "start")
        return "timeout", ("the store client did not finish its %s step in time (no known error in its log); "
                           "look at log_tail" % phase)
    if result.get("setup_rc") not in (None, 0):
        return "setup_failed", "setup() returned %s%s" % (result["setup_rc"], _code(result["setup_rc"]))
    if "setup_rc" not in result:
        return "client_crashed", "the store client exited before setup() returned; look at log_tail"
    if result.get("put_rc") not in (None, 0):
        return "put_failed", "put() returned %s%s" % (result["put_rc"], _code(result["put_rc"]))
    if result.get("key_found") is False:
        return "key_not_found", ("the key did not appear within wait_timeout_s: did the put side run first "
                                 "and is it still holding its segment (mode put, hold_s)?")
    if result.get("data_verified") is False:
        return "data_mismatch", ("get() returned %s bytes that differ from what was put (an empty value means "
                                 "the object is gone: evicted, lease over, or its segment unmounted)"
                                 % result.get("get_bytes"))
    if result.get("phase") != "done":
        return "client_crashed", "the store client stopped in its %s step; look at log_tail" % result.get("phase")
    if tcp_fallback(protocol, log_text):
        return "rdma_fell_back_to_tcp", (
            "protocol rdma with no device named makes the client auto-discover RNICs; it found none and runs "
            "over TCP: name the devices in device_name (e.g. erdma_0) so a missing NIC fails loudly")
    return None, None


def _code(rc):
    name = ERROR_CODES.get(rc)
    return " (%s)" % name if name else ""
