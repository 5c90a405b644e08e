# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""STAND-INS for ibv_devinfo, ib_write_bw, ib_write_lat and eadm on the nodes of the molecule scenario verify.

No RDMA NIC can exist in a container. The scenario's nodes get this file and, on PATH, the wrapper
`rdma_standin` under the tools' names; the wrapper runs `python3 rdma_standins.py TOOL ARGS...`.
Nothing here measures anything: every tool prints a REAL RECORDED OUTPUT of the real tool, taken from
tests/unit/fixtures (see their SOURCES.md), chosen by /etc/erdma-pd-standins/replay.json:

    {"devices": ["erdma_0"],                      the devices the recordings show
     "ibv_devinfo": "ibv_devinfo/erdma_guide.txt",
     "ibv_devinfo -v": "ibv_devinfo/erdma_guide_verbose.txt",
     "ib_write_bw client": "perftest/....txt",     what the client prints once connected
     "ib_write_bw server": "perftest/....txt",     what the server prints (banner first, rest after)
     "ib_write_lat client": "perftest/....txt",    the same for the latency tool
     "ib_write_lat server": "perftest/....txt",
     "ib_write_bw no device": "perftest/ib_write_bw_no_device_debian12.txt",
     "eadm ver": "eadm/ver_exporter_quote.txt",
     "eadm stat": "eadm/stat_exporter_quote.txt"}

The recordings live in /usr/local/share/erdma-pd-standins/recordings/ under their fixture paths.

What the stand-in ib_write_bw and ib_write_lat do like the real ones (perftest's TCP exchange of connection data):
the server listens on the TCP port (-p, default 18515), prints the recording's "Waiting for client to
connect" banner and blocks until a client connects, however long that takes: only its timeout (the
module's coreutils `timeout`) ends a server that no client reaches. The client connects to SERVER:PORT
and fails with perftest's messages when nothing listens there. Both then exchange a line, run for -D
seconds (ib_write_lat: a fixed 0.3 s, short on purpose; a real `-a -n 1000` sweep takes seconds) and
print their recording.
ib_write_lat refuses -q as perftest does. A device that the recordings do not show fails as the recorded
no-device run does. Every call is logged (argv, role, outcome) to /var/log/erdma-pd-standins/TOOL.log.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import socket
import sys
import time

# ERDMA_PD_STANDINS_ROOT moves every path under another directory (to try the stand-ins without a container).
ROOT = os.environ.get("ERDMA_PD_STANDINS_ROOT", "/")
CONFIG = os.path.join(ROOT, "etc/erdma-pd-standins/replay.json")
RECORDINGS = os.path.join(ROOT, "usr/local/share/erdma-pd-standins/recordings")
LOG_DIR = os.path.join(ROOT, "var/log/erdma-pd-standins")
DEFAULT_PORT = 18515  # perftest's default TCP port for the connection-data exchange
LATENCY_SWEEP_SECONDS = 0.3

# perftest options that take a value (the rest are flags); the last other word is the server.
VALUED = {
    "-d": "device", "--ib-dev": "device", "-p": "port", "--port": "port", "-q": "qps", "--qp": "qps",
    "-D": "duration", "--duration": "duration", "-n": "iters", "--iters": "iters",
    "-x": "gid", "--gid-index": "gid", "-i": "ib_port", "--ib-port": "ib_port",
    "-s": "size", "--size": "size", "-m": "mtu", "--mtu": "mtu",
}


def config():
    with open(CONFIG) as handle:
        return json.load(handle)


def recording(key):
    with open(os.path.join(RECORDINGS, config()[key])) as handle:
        return handle.read()


def log(tool, **entry):
    if not os.path.isdir(LOG_DIR):
        os.makedirs(LOG_DIR)
    entry.update(pid=os.getpid(), time=round(time.time(), 3))
    with open(os.path.join(LOG_DIR, tool + ".log"), "a") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")


def out(text, stream=None):
    (stream or sys.stdout).write(text if text.endswith("\n") else text + "\n")
    (stream or sys.stdout).flush()


def ibv_devinfo(args):
    """rdma-core's ibv_devinfo: -v verbose, -d DEVICE one device (rc 255 when it does not exist)."""
    verbose = any(a in ("-v", "--verbose") for a in args)
    device = None
    for index, arg in enumerate(args):
        if arg in ("-d", "--ib-dev") and index + 1 < len(args):
            device = args[index + 1]
        elif arg.startswith("--ib-dev="):
            device = arg.split("=", 1)[1]
    log("ibv_devinfo", argv=args)
    if device is not None and device not in config()["devices"]:
        out("IB device '%s' wasn't found" % device, sys.stderr)  # devinfo.c's message
        return 255
    out(recording("ibv_devinfo -v" if verbose else "ibv_devinfo"))
    return 0


def eadm(args):
    """Alibaba's eadm: `ver` and `stat -d DEVICE [-l]`, as the recordings have them."""
    log("eadm", argv=args)
    if args[:1] == ["ver"]:
        out(recording("eadm ver"))
        return 0
    if args[:1] == ["stat"]:
        out(recording("eadm stat"))
        return 0
    out("eadm stand-in: only `ver` and `stat` are recorded", sys.stderr)
    return 1


def perftest_options(args):
    options, words, index = {}, [], 0
    while index < len(args):
        arg = args[index]
        name, _sep, inline = arg.partition("=")
        if name in VALUED:
            if inline:
                options[VALUED[name]] = inline
            else:
                options[VALUED[name]] = args[index + 1] if index + 1 < len(args) else ""
                index += 1
        elif arg.startswith("-"):
            options[arg] = True
        else:
            words.append(arg)
        index += 1
    return options, (words[-1] if words else None)


def split_banner(text):
    """(the lines a server prints before a client connects, the rest): the banner ends at the first rule."""
    lines = text.splitlines(True)
    for index, line in enumerate(lines):
        if line.startswith("-----"):
            return "".join(lines[:index]), "".join(lines[index:])
    return "", text


def perftest(tool, args):
    """ib_write_bw and ib_write_lat: the TCP exchange for real, the numbers from a recording."""
    options, server = perftest_options(args)
    role = "client" if server else "server"
    port = int(options.get("port") or DEFAULT_PORT)
    # -D seconds of traffic; a latency sweep (-a -n N) of a real link ends in well under a second.
    duration = float(options.get("duration") or LATENCY_SWEEP_SECONDS)
    if tool.endswith("_lat") and options.get("qps"):
        out(" Multiple QPs only available on bw tests", sys.stderr)  # perftest_parameters.c
        return 1
    log(tool, argv=args, role=role, event="start")
    device = options.get("device")
    if device is not None and device not in config()["devices"]:
        out(recording("ib_write_bw no device"), sys.stderr)
        log(tool, role=role, event="no device", device=device)
        return 1
    if role == "server":
        banner, rest = split_banner(recording(tool + " server"))
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("0.0.0.0", port))
        except OSError:
            out("Couldn't listen to port %d" % port, sys.stderr)  # perftest_communication.c
            return 1
        listener.listen(1)
        out(banner)
        peer, address = listener.accept()  # no deadline of its own, as perftest's server
        log(tool, role=role, event="client connected", peer=address[0])
        peer.sendall(b"standin-server\n")
        peer.recv(64)
        time.sleep(duration)
        peer.close()
        out(rest)
    else:
        try:
            peer = socket.create_connection((server, port), timeout=10)
        except OSError as error:
            # perftest_communication.c, then perftest's main
            out("Couldn't connect to %s:%d" % (server, port), sys.stderr)
            out(" Unable to open file descriptor for socket connection Unable to init the socket connection",
                sys.stderr)
            log(tool, role=role, event="connect failed", error=str(error))
            return 1
        peer.recv(64)
        peer.sendall(b"standin-client\n")
        time.sleep(duration)
        peer.close()
        out(recording(tool + " client"))
    log(tool, role=role, event="done")
    return 0


TOOLS = {
    "ibv_devinfo": ibv_devinfo,
    "ib_write_bw": lambda args: perftest("ib_write_bw", args),
    "ib_write_lat": lambda args: perftest("ib_write_lat", args),
    "eadm": eadm,
}


def main(argv):
    if len(argv) < 2 or argv[1] not in TOOLS:
        out("usage: python3 rdma_standins.py {%s} ARGS..." % ",".join(sorted(TOOLS)), sys.stderr)
        return 2
    return TOOLS[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
