# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build perftest command lines (ib_write_bw, ib_write_lat, ...) and parse their result tables."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

PERFTEST_PACKAGE = "perftest"
BANDWIDTH_TOOLS = ("ib_write_bw", "ib_read_bw", "ib_send_bw", "ib_atomic_bw")
LATENCY_TOOLS = ("ib_write_lat", "ib_read_lat", "ib_send_lat", "ib_atomic_lat")
TOOLS = BANDWIDTH_TOOLS + LATENCY_TOOLS

# perftest divides by 0x100000 for MB/sec and by 125000000 for Gb/sec: 1 MB/sec = 2**20 * 8 / 1e9 Gb/s.
MIB_PER_SEC_IN_GBPS = 1048576 * 8 / 1e9

BW_COLUMNS = ("bytes", "iterations", "bw_peak", "bw_avg", "msg_rate_mpps")
LAT_COLUMNS = ("bytes", "iterations", "t_min_us", "t_max_us", "t_typical_us", "t_avg_us", "t_stdev_us",
               "p99_us", "p999_us")

# Messages that mean the two sides never exchanged data; the guide hit the first two in eRDMA
# standard mode (compat_mode=N).
CONNECTION_ERRORS = (
    "Failed to modify QP",
    "Unable to Connect the HCA's through the link",
    "Couldn't connect to",
    "Couldn't initialize ROCE GIDs",
    "Couldn't create IB resources",
    "Unable to open file descriptor for socket connection",
)
# What perftest prints when the device named with -d (or any device) is not there.
DEVICE_ERRORS = (
    "Did not detect devices",
    "Unable to find the Infiniband/RoCE device",
)
COMPAT_MODE_HINT = (
    "on eRDMA this is what standard mode (compat_mode=N) does to out-of-band connection setup: "
    "set `options erdma compat_mode=Y` and reload the driver, or use RDMA_CM (rdma_cm: true)"
)

TIMEOUT_RC = 124  # what coreutils `timeout` returns when it had to stop the command


class PerftestError(Exception):
    """The test could not be run, or its output holds no result."""


def _numbers(line):
    try:
        return [float(token) for token in line.split()]
    except ValueError:
        return None


def _header_kind(line):
    if "#bytes" not in line:
        return None, None
    if "t_min" in line:
        return "latency", "usec"
    unit = "Gb/sec" if "Gb/sec" in line else "MB/sec"
    return "bandwidth", unit


def _row(kind, unit, values):
    columns = BW_COLUMNS if kind == "bandwidth" else LAT_COLUMNS
    row = dict(zip(columns, values))
    row["bytes"], row["iterations"] = int(row["bytes"]), int(row["iterations"])
    if kind == "bandwidth":
        factor = 1.0 if unit == "Gb/sec" else MIB_PER_SEC_IN_GBPS
        row["bw_peak_gbps"] = round(row.pop("bw_peak") * factor, 6)
        row["bw_avg_gbps"] = round(row.pop("bw_avg") * factor, 6)
    for name in columns[2:]:
        row.setdefault(name, None)
    row.pop("bw_peak", None)
    row.pop("bw_avg", None)
    return row


def _is_separator(line):
    return set(line) <= set("-* ")


def parse_table(text):
    """Find the result table; return (kind, unit, rows, warnings).

    Rows are the numeric lines under the `#bytes` header. Anything else printed between the header
    and the closing dashes (perftest prints CPU frequency warnings there) becomes a warning, as do
    lines that start with WARNING anywhere.
    """
    kind = unit = None
    rows, warnings = [], []
    in_table = False
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        header_kind, header_unit = _header_kind(line)
        if header_kind:
            kind, unit, in_table = header_kind, header_unit, True
            continue
        values = _numbers(line) if in_table else None
        if values and len(values) >= 4:
            rows.append(_row(kind, unit, values))
        elif in_table and _is_separator(line):
            in_table = not rows  # dashes before the first row belong to the header block
        elif in_table or line.upper().startswith("WARNING"):
            warnings.append(line)
    return kind, unit, rows, warnings


def _mean(values):
    return round(sum(values) / len(values), 6)


def summarize_bandwidth(rows):
    """One line for the verdict: the largest message size measured.

    With --run_infinitely the same size repeats once per interval; the summary averages those
    samples and keeps the highest peak, the lowest average and the sample count.
    """
    size = max(row["bytes"] for row in rows)
    samples = [row for row in rows if row["bytes"] == size]
    rates = [row["msg_rate_mpps"] for row in samples if row["msg_rate_mpps"] is not None]
    return {
        "bytes": size,
        "iterations": sum(row["iterations"] for row in samples),
        "bw_peak_gbps": max(row["bw_peak_gbps"] for row in samples),
        "bw_avg_gbps": _mean([row["bw_avg_gbps"] for row in samples]),
        "bw_min_sample_gbps": min(row["bw_avg_gbps"] for row in samples),
        "msg_rate_mpps": _mean(rates) if rates else None,
        "samples": len(samples),
    }


def summarize_latency(rows):
    """One line for the verdict: the smallest message size, which is what 'the latency' means."""
    size = min(row["bytes"] for row in rows)
    summary = dict(next(row for row in rows if row["bytes"] == size))
    summary["samples"] = sum(1 for row in rows if row["bytes"] == size)
    return summary


def connection_errors(text):
    return [line.strip() for line in (text or "").splitlines() if any(e in line for e in CONNECTION_ERRORS)]


def parse_output(text):
    """Parse a perftest run; raise PerftestError when there is no result table with rows."""
    kind, unit, rows, warnings = parse_table(text)
    if not rows:
        errors = connection_errors(text)
        reason = "; ".join(errors) if errors else "no result rows under a '#bytes' header"
        raise PerftestError("perftest output holds no result: %s" % reason)
    summary = summarize_bandwidth(rows) if kind == "bandwidth" else summarize_latency(rows)
    return {
        "kind": kind,
        "unit_reported": unit,
        "rows": rows,
        "summary": summary,
        "warnings": warnings,
    }


def check_thresholds(result, min_bw_gbps=None, max_lat_us=None):
    """Return the failed checks as sentences that state measured vs. expected."""
    failures = []
    summary = result["summary"]
    if min_bw_gbps is not None and result["kind"] == "bandwidth" and summary["bw_avg_gbps"] < min_bw_gbps:
        failures.append(
            "average bandwidth %.2f Gb/s at %d bytes is below the expected minimum %.2f Gb/s"
            % (summary["bw_avg_gbps"], summary["bytes"], min_bw_gbps)
        )
    if max_lat_us is not None and result["kind"] == "latency" and summary["t_avg_us"] > max_lat_us:
        failures.append(
            "average latency %.2f us at %d bytes is above the expected maximum %.2f us"
            % (summary["t_avg_us"], summary["bytes"], max_lat_us)
        )
    return failures


def _flag_args(params):
    flags = (
        ("rdma_cm", "-R"),
        ("all_sizes", "-a"),
        ("run_infinitely", "--run_infinitely"),
        ("ignore_cpufreq", "-F"),
    )
    args = [flag for name, flag in flags if params.get(name)]
    if params.get("report_gbits") and params["tool"] in BANDWIDTH_TOOLS:
        args.append("--report_gbits")
    return args


def _valued_args(params):
    options = (
        ("device", "-d"),
        ("ib_port", "-i"),
        ("port", "-p"),
        ("qps", "-q"),
        ("size", "-s"),
        ("duration", "-D"),
        ("iterations", "-n"),
        ("gid_index", "-x"),
    )
    args = []
    for name, flag in options:
        if params.get(name) is not None:
            args += [flag, str(params[name])]
    return args


def _check_ranges(params):
    """Refuse values that perftest or `timeout` would take for something else than meant."""
    if params.get("timeout") is not None and params["timeout"] < 1:
        raise PerftestError("timeout must be at least 1 second (found %d): `timeout 0` would let %s run "
                            "without any limit" % (params["timeout"], params["tool"]))
    port = params.get("port")
    if port is not None and not 1 <= port <= 65535:
        raise PerftestError("port must be a TCP port from 1 to 65535 (found %d)" % port)
    for name in ("ib_port", "qps", "size", "duration", "iterations"):
        if params.get(name) is not None and params[name] < 1:
            raise PerftestError("%s must be at least 1 (found %d)" % (name, params[name]))
    server = params.get("server")
    if server and (server.startswith("-") or any(c.isspace() for c in server)):
        # perftest takes the last bare word as the server: '-x' there would become an option.
        raise PerftestError("server must be a host name or an address (found %r): it cannot start with '-' "
                            "or hold spaces" % server)
    if params["tool"] in LATENCY_TOOLS and (params.get("qps") or 1) > 1:
        raise PerftestError("qps=%d: %s measures one queue pair (perftest: \"Multiple QPs only available on bw "
                            "tests\"); leave qps unset for latency tools" % (params["qps"], params["tool"]))


def perftest_args(params):
    """The tool's own arguments; the client names the server last, as perftest expects."""
    if params.get("all_sizes") and params.get("size") is not None:
        raise PerftestError("size and all_sizes exclude each other: -a measures every size from 2 bytes up")
    if params.get("all_sizes") and params.get("duration") is not None:
        # perftest refuses -D with -a; -n sets the iterations per size instead.
        raise PerftestError("duration and all_sizes exclude each other: perftest's duration mode does not "
                            "run all sizes; use iterations (-n, per size) with all_sizes")
    _check_ranges(params)
    args = _valued_args(params) + _flag_args(params) + list(params.get("extra_args") or [])
    if params["role"] == "client":
        if not params.get("server"):
            raise PerftestError("role=client needs server: the address of the host running the server side")
        args.append(params["server"])
    return args


def command(tool_path, timeout_path, stdbuf_path, params):
    """argv bounded by `timeout`; stdbuf keeps rows printed before a stop (run_infinitely) in the pipe."""
    argv = [timeout_path, "--kill-after=5", str(params["timeout"])]
    if stdbuf_path:
        argv += [stdbuf_path, "-oL"]
    return argv + [tool_path] + perftest_args(params)


def resolve_binaries(module, tool):
    tool_path = module.get_bin_path(tool)
    if not tool_path:
        raise PerftestError(
            "%s was not found on this host: install the package %s (apt-get install %s) and run again"
            % (tool, PERFTEST_PACKAGE, PERFTEST_PACKAGE)
        )
    timeout_path = module.get_bin_path("timeout")
    if not timeout_path:
        raise PerftestError("timeout (coreutils) was not found: it bounds the test's run time")
    return tool_path, timeout_path, module.get_bin_path("stdbuf")


def run(module, params):
    """Run the test; return (argv, rc, stdout, stderr, timed_out)."""
    tool_path, timeout_path, stdbuf_path = resolve_binaries(module, params["tool"])
    argv = command(tool_path, timeout_path, stdbuf_path, params)
    rc, out, err = module.run_command(argv)
    return argv, rc, out or "", err or "", rc == TIMEOUT_RC


def device_errors(text):
    return [line.strip() for line in (text or "").splitlines() if any(e in line for e in DEVICE_ERRORS)]


def failure_message(params, rc, out, err, timed_out):
    """Explain a run without a usable result: no device, timeout, connection failure or a plain error."""
    text = out + "\n" + err
    missing = device_errors(text)
    if missing:
        return "%s %s found no RDMA device %s: %s; check `ibv_devinfo` on this host" % (
            params["tool"], params["role"], params.get("device") or "", "; ".join(missing))
    errors = connection_errors(text)
    if errors:
        return "%s %s could not connect: %s; %s" % (params["tool"], params["role"], "; ".join(errors), COMPAT_MODE_HINT)
    if timed_out:
        return "%s %s was stopped after timeout=%ss without a result" % (params["tool"], params["role"], params["timeout"])
    tail = " | ".join(line.strip() for line in text.strip().splitlines()[-5:])
    return "%s %s failed with rc=%d: %s" % (params["tool"], params["role"], rc, tail)
