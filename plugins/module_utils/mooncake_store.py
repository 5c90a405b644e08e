# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mooncake helpers: the master's command line, and a store check run through the real client.

Two halves:

* ``master_flags`` / ``parse_master_help`` turn the role's settings into ``mooncake_master`` flags,
  keeping only the flags that the installed binary knows (its ``--help`` is read on the host), so one
  role serves 0.3.7 (the guide's pin) and 0.3.13 (the non-CUDA wheel of the lab).
* ``run_store_check`` runs a small client script with the Mooncake venv's Python on the target: it
  mounts a segment, puts an object and/or reads one back through the master, times each step and
  prints one JSON document. The caller bounds every wait (TCP probe of the master first, a watchdog on
  ``setup()``, a hard timeout on the process), and ``classify_failure`` names what went wrong from the
  client's own log lines, recorded from the real package (see tests/unit/fixtures/mooncake/).
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

# ---------------------------------------------------------------------------------------------
# The master's command line
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Store check
# ---------------------------------------------------------------------------------------------

RESULT_MARKER = "MOONCAKE_STORE_CHECK "

# Run by the venv's python with one JSON argument. Prints progress and the final result as lines
# starting with RESULT_MARKER; glog writes the client's own log to stderr.
CLIENT_SCRIPT = r'''
import hashlib, json, os, random, sys, threading, time

p = json.loads(sys.argv[1])
MARK = "MOONCAKE_STORE_CHECK "
out = {"phase": "import"}

def emit(**kw):
    out.update(kw)
    sys.stdout.write(MARK + json.dumps(out) + "\n")
    sys.stdout.flush()

def finish(code):
    # Skip the interpreter's exit handlers: the native client's threads can hang them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

def payload(key, size):
    return random.Random(key).randbytes(size)

def mib_per_s(size, seconds):
    return round(size / 1048576.0 / seconds, 2) if seconds > 0 else None

def watchdog(seconds, phase):
    def fire():
        emit(phase=phase, timed_out=True)
        os._exit(3)
    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()
    return t

try:
    from mooncake.store import MooncakeDistributedStore
except Exception as exc:  # the venv lacks the package or a library (libibverbs, libcudart)
    emit(import_error="%s: %s" % (type(exc).__name__, exc))
    finish(2)

store = MooncakeDistributedStore()
emit(phase="setup")
dog = watchdog(p["setup_timeout_s"], "setup")
t0 = time.monotonic()
rc = store.setup(p["local_hostname"], p["metadata_server"], p["global_segment_size"],
                 p["local_buffer_size"], p["protocol"], p["device_name"], p["master_server_address"])
dog.cancel()
emit(setup_rc=rc, setup_ms=round((time.monotonic() - t0) * 1000, 2))
if rc != 0:
    finish(1)

key, size, mode = p["key"], p["object_size_bytes"], p["mode"]
data = payload(key, size)
expected = hashlib.sha256(data).hexdigest()
emit(sha256=expected)
dog = watchdog(p["op_timeout_s"], "store")

if mode in ("roundtrip", "put"):
    emit(phase="put")
    t0 = time.monotonic()
    rc = store.put(key, data)
    dt = time.monotonic() - t0
    emit(put_rc=rc, put_ms=round(dt * 1000, 2), put_throughput_mib_per_s=mib_per_s(size, dt))
    if rc != 0:
        finish(1)

if mode == "get":
    emit(phase="wait_key")
    t0 = time.monotonic()
    while store.is_exist(key) != 1:
        if time.monotonic() - t0 > p["wait_timeout_s"]:
            emit(key_found=False, wait_ms=round((time.monotonic() - t0) * 1000, 2))
            finish(1)
        time.sleep(0.1)
    emit(key_found=True, wait_ms=round((time.monotonic() - t0) * 1000, 2))

if mode in ("roundtrip", "get"):
    emit(phase="get")
    t0 = time.monotonic()
    value = store.get(key)
    dt = time.monotonic() - t0
    value = bytes(value or b"")
    emit(get_bytes=len(value), get_ms=round(dt * 1000, 2), get_throughput_mib_per_s=mib_per_s(len(value), dt),
         data_verified=hashlib.sha256(value).hexdigest() == expected)
    if mode == "roundtrip":
        emit(remove_rc=store.remove(key))
    else:
        emit(phase="ack", ack_rc=store.put(key + ".ack", b"read"))
        time.sleep(p["ack_linger_s"])

dog.cancel()
if mode == "put" and p["hold_s"] > 0:
    emit(phase="hold")
    t0 = time.monotonic()
    acked = False
    while time.monotonic() - t0 < p["hold_s"]:
        if store.is_exist(key + ".ack") == 1:
            acked = True
            break
        time.sleep(0.1)
    emit(acknowledged=acked, hold_ms=round((time.monotonic() - t0) * 1000, 2))
    store.remove(key)

emit(phase="done")
store.close()
finish(0)
'''

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
