# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store check of the mooncake_store_check module: probe, run the client script, judge the result.

``store_check`` probes the master's RPC port (and the metadata server) with TCP first, then runs the
client script (mooncake_store_client.py) with the Mooncake venv's Python under a hard timeout (the
script has its own watchdog on ``setup()``), and names a failure with mooncake_failures.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import signal
import socket
import subprocess
import time

from ansible_collections.erdma.pd.plugins.module_utils.mooncake_failures import (
    classify_failure,
    observed_transport,
)
from ansible_collections.erdma.pd.plugins.module_utils.mooncake_store_client import CLIENT_SCRIPT, RESULT_MARKER


def parse_client_output(stdout):
    """The last JSON document the client script printed (its fields accumulate)."""
    result = {}
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            try:
                result = json.loads(line[len(RESULT_MARKER):])
            except ValueError:
                continue
    return result


def split_host_port(address, default_port=None):
    """'host:port' or '[v6]:port' -> (host, port)."""
    if address.startswith("["):
        host, rest = address[1:].split("]", 1) if "]" in address else (address[1:], "")
        port = rest.lstrip(":")
    elif address.count(":") == 1:
        host, port = address.split(":")
    else:
        host, port = address, ""
    if not port:
        if default_port is None:
            raise ValueError("no port in %r" % address)
        port = default_port
    return host, int(port)


def metadata_host_port(url):
    """Host and port of an http:// metadata URL, or None for P2PHANDSHAKE/etcd."""
    match = re.match(r"^https?://([^/]+)", url or "")
    if not match:
        return None
    return split_host_port(match.group(1), 443 if url.startswith("https") else 80)


def probe_tcp(host, port, timeout):
    """Connect once; return (ok, error text, milliseconds)."""
    started = time.monotonic()
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
        conn.close()
        return True, None, round((time.monotonic() - started) * 1000, 2)
    except (socket.timeout, OSError) as exc:
        return False, "%s: %s" % (type(exc).__name__, exc), round((time.monotonic() - started) * 1000, 2)


def local_address_towards(host, port):
    """The local address the kernel picks to reach host:port (no packet is sent)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.connect((host, port))
            return sock.getsockname()[0]
        finally:
            sock.close()
    except (socket.error, OSError):
        return None


def run_client(python, params, environment, timeout):
    """Run CLIENT_SCRIPT; return (result dict, log text, timed_out, seconds)."""
    env = dict(os.environ)
    env.update(environment or {})
    started = time.monotonic()
    proc = subprocess.Popen([python, "-c", CLIENT_SCRIPT, json.dumps(params)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd="/", start_new_session=True,
                            universal_newlines=True)
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        stdout, stderr = proc.communicate()
    result = parse_client_output(stdout or "")
    log_text = "\n".join(line for line in (stdout or "").splitlines() if not line.startswith(RESULT_MARKER))
    log_text = (log_text + "\n" + (stderr or "")).strip()
    return result, log_text, timed_out, round(time.monotonic() - started, 2)


def store_check(params, run=run_client):
    """Run a whole check; return (ok, data). ``params`` carries the module's options."""
    host, port = split_host_port(params["master_server_address"], 50052)
    data = {
        "mode": params["mode"],
        "master_server_address": params["master_server_address"],
        "metadata_server": params["metadata_server"],
        "protocol": params["protocol"],
        "device_name": params["device_name"],
        "key": params["key"],
        "object_size_bytes": params["object_size_bytes"],
        "failure": None,
    }
    ok, error, probe_ms = probe_tcp(host, port, params["connect_timeout_s"])
    data["master_probe_ms"] = probe_ms
    if not ok:
        data["failure"] = "master_unreachable"
        data["msg"] = ("the master's RPC port %s:%s did not accept a TCP connection within %ss (%s): check that "
                       "mooncake-master runs and listens on that address, and the firewall"
                       % (host, port, params["connect_timeout_s"], error))
        return False, data
    meta = metadata_host_port(params["metadata_server"])
    if meta:
        ok, error, _ms = probe_tcp(meta[0], meta[1], params["connect_timeout_s"])
        if not ok:
            data["failure"] = "metadata_unreachable"
            data["msg"] = ("the metadata server %s did not accept a TCP connection within %ss (%s): check "
                           "--enable_http_metadata_server and its port"
                           % (params["metadata_server"], params["connect_timeout_s"], error))
            return False, data
    local = params.get("local_hostname") or local_address_towards(host, port) or socket.gethostname()
    data["local_hostname"] = local
    client_params = {
        "local_hostname": local,
        "metadata_server": params["metadata_server"],
        "global_segment_size": params["global_segment_size_bytes"],
        "local_buffer_size": params["local_buffer_size_bytes"],
        "protocol": params["protocol"],
        "device_name": params["device_name"],
        "master_server_address": params["master_server_address"],
        "mode": params["mode"],
        "key": params["key"],
        "object_size_bytes": params["object_size_bytes"],
        "setup_timeout_s": params["setup_timeout_s"],
        "op_timeout_s": params["op_timeout_s"],
        "wait_timeout_s": params["wait_timeout_s"],
        "hold_s": params["hold_s"],
        "ack_linger_s": params["ack_linger_s"],
    }
    environment = dict(params.get("environment") or {})
    # With only loopback besides the chosen address, the transfer engine needs to be told where to bind.
    environment.setdefault("MC_TCP_BIND_ADDRESS", local)
    budget = params["setup_timeout_s"] + params["op_timeout_s"] + params["wait_timeout_s"] + params["hold_s"] + 15
    result, log_text, timed_out, seconds = run(params["python"], client_params, environment, budget)
    failure, message = classify_failure(result, log_text, params["protocol"], timed_out)
    for key in ("setup_ms", "put_ms", "get_ms", "wait_ms", "hold_ms", "put_throughput_mib_per_s",
                "get_throughput_mib_per_s", "data_verified", "acknowledged", "sha256", "key_found"):
        if key in result:
            data[key] = result[key]
    data["client_seconds"] = seconds
    data["transport"] = observed_transport(log_text)
    data["log_tail"] = log_text.splitlines()[-params["log_lines"]:] if params["log_lines"] else []
    if failure == "rdma_fell_back_to_tcp" and params.get("allow_tcp_fallback"):
        data["warning"] = message
        failure = None
    if failure:
        data["failure"] = failure
        data["msg"] = message
        return False, data
    if params["mode"] == "put" and params["hold_s"] > 0 and params.get("require_ack") and not result.get("acknowledged"):
        data["failure"] = "not_acknowledged"
        data["msg"] = ("no reader acknowledged key %s within hold_s=%s: run the get side while this one holds"
                       % (params["key"], params["hold_s"]))
        return False, data
    data["msg"] = "store check %s passed" % params["mode"]
    return True, data
