# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client script of the store check, run on the target by the Mooncake venv's Python.

It mounts a segment, puts an object and/or reads one back through the master, times each step and
prints its progress as JSON lines starting with ``RESULT_MARKER`` (the fields accumulate; the last
line is the result). mooncake_store_runner.py starts it and bounds every wait.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

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
