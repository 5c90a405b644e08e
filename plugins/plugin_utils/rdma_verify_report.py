# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rdma_verify role's plan and report (controller side only).

``plan`` decides which prefill -> decode pairs are measured and in which rounds (link_schedule),
and why the others are not. ``build_report`` turns what every host published (devices, driver
state, its measurements as a client) into one verdict per host and per link, and ``markdown``
renders it. The role only moves facts around; every decision is here, where it is unit-tested.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.erdma.pd.plugins.plugin_utils.link_schedule import (
    link_pairs,
    sample_rounds,
    schedule_rounds,
)

KINDS = ("bandwidth", "latency")
LATENCY_METRICS = ("t_min_us", "t_typical_us", "t_avg_us", "p99_us", "p999_us", "t_max_us")


class ReportError(Exception):
    """The inputs of the plan or the report are inconsistent."""


def _why_not_measured(pair, hosts):
    """None when both hosts can be measured; otherwise (result, reason) of the link."""
    outside = [h for h in pair if h not in hosts]
    if outside:
        return "skipped", "not in this run (--limit): %s" % " and ".join(outside)
    not_expected = [h for h in pair if not hosts[h].get("nic_expected", True)]
    if not_expected:
        return "skipped", "no RDMA expected on %s (rdma_nic_expected=false)" % " and ".join(not_expected)
    unreached = [h for h in pair if not hosts[h].get("reached")]
    if unreached:
        return "failed", "not measured: %s unreachable or left the play" % " and ".join(unreached)
    broken = [h for h in pair if hosts[h].get("problem")]
    if broken:
        return "failed", "not measured: the device checks failed on %s" % " and ".join(broken)
    return None


def plan(prefill, decode, hosts, max_rounds=0):
    """Rounds to run and the verdict of every pair that will not run.

    `hosts` maps every host of this run to what it published (nic_expected, reached, problem; {} for a
    host that never got that far); a host of the groups outside this run (--limit) is not measured. Returns
    {"pairs", "rounds", "not_measured": [{client, server, result, reason}], "max_degree"}.
    """
    pairs = link_pairs(prefill, decode)
    runnable, not_measured = [], []
    for pair in pairs:
        why = _why_not_measured(pair, hosts)
        if why:
            not_measured.append({"client": pair[0], "server": pair[1], "result": why[0], "reason": why[1]})
        else:
            runnable.append(pair)
    every_round = schedule_rounds(runnable)
    rounds, left_out = sample_rounds(every_round, int(max_rounds))
    for client, server in left_out:
        not_measured.append({"client": client, "server": server, "result": "skipped",
                             "reason": "not sampled: rdma_verify_max_rounds=%d of %d rounds"
                                       % (int(max_rounds), len(every_round))})
    self_pairs = [[h, h] for h in prefill if h in decode]
    for client, server in self_pairs:
        not_measured.append({"client": client, "server": server, "result": "skipped",
                             "reason": "the host is both prefill and decode: no link to measure"})
    return {"pairs": pairs + self_pairs, "rounds": rounds, "not_measured": not_measured}


def _link_rate(host):
    """Nominal rate of the measured device's active port(s): the smallest one, None when unknown."""
    rates = [
        port.get("link_gbps")
        for device in host.get("devices") or []
        if device.get("hca_id") == host.get("measured_device")
        for port in device.get("ports") or []
        if port.get("state") == "PORT_ACTIVE" and isinstance(port.get("link_gbps"), (int, float))
    ]
    return min(rates) if rates else None


def _bandwidth_verdict(run, link_gbps, fraction):
    entry = {"result": "failed", "reason": "", "expected_gbps": None, "bw_avg_gbps": None, "bw_peak_gbps": None}
    summary = (run or {}).get("summary")
    if not summary:
        entry["reason"] = (run or {}).get("msg") or "the bandwidth client returned no result"
        return entry
    entry.update(bw_avg_gbps=summary.get("bw_avg_gbps"), bw_peak_gbps=summary.get("bw_peak_gbps"),
                 bytes=summary.get("bytes"), qps=run.get("qps"),
                 # perftest's own warnings (CPU frequency, peak not measured) go with the number they qualify.
                 warnings_in_output=run.get("warnings_in_output") or [])
    if link_gbps is None:
        entry["reason"] = "the link rate is unknown: no PORT_ACTIVE port with link_gbps on both devices (ibv_devinfo -v)"
        return entry
    expected = round(link_gbps * fraction, 2)
    measured = float(summary.get("bw_avg_gbps") or 0.0)
    entry["expected_gbps"] = expected
    if measured < expected:
        entry["reason"] = "%.2f Gb/s is below %.2f Gb/s (%.0f%% of %.1f Gb/s)" % (
            measured, expected, fraction * 100, link_gbps)
        return entry
    entry["result"] = "passed"
    return entry


def _latency_verdict(run, metric, max_us):
    entry = {"result": "failed", "reason": "", "metric": metric, "max_us": max_us or None}
    rows = (run or {}).get("rows") or []
    if not rows:
        entry["reason"] = (run or {}).get("msg") or "the latency client returned no result"
        return entry
    smallest = min(rows, key=lambda row: row["bytes"])
    entry.update(dict((name, smallest.get(name)) for name in LATENCY_METRICS))
    entry["bytes"] = smallest["bytes"]
    # The sweep (-a) by size: what KV blocks of every size see, percentiles included.
    entry["sizes"] = [dict((k, row.get(k)) for k in ("bytes",) + LATENCY_METRICS) for row in rows]
    value = smallest.get(metric)
    if max_us and value is not None and value > max_us:
        entry["reason"] = "%s %.2f us at %d bytes is above %.2f us (rdma_verify_lat_max_us)" % (
            metric, value, smallest["bytes"], max_us)
        return entry
    entry["result"] = "passed"
    return entry


def _measured_link(pair, hosts, runs, settings):
    client, server = pair
    link_gbps_values = [_link_rate(hosts[client]), _link_rate(hosts[server])]
    link_gbps = min(link_gbps_values) if None not in link_gbps_values else None
    link = {"client": client, "server": server, "link_gbps": link_gbps,
            "devices": "%s -> %s" % (hosts[client].get("measured_device"), hosts[server].get("measured_device"))}
    reasons = []
    for kind in settings["measure"]:
        run = runs.get((client, server, kind))
        if settings.get("check_mode"):
            link[kind] = {"result": "skipped", "reason": "check mode: not measured"}
            continue
        if kind == "bandwidth":
            link[kind] = _bandwidth_verdict(run, link_gbps, settings["bw_fraction"])
        else:
            link[kind] = _latency_verdict(run, settings["lat_metric"], settings["lat_max_us"])
        link["round"] = (run or {}).get("round", link.get("round"))
        if link[kind]["result"] == "failed":
            reasons.append("%s: %s" % (kind, link[kind]["reason"]))
    if settings.get("check_mode"):
        link.update(result="skipped", reason="check mode: not measured")
    else:
        link.update(result="failed" if reasons else "passed", reason="; ".join(reasons))
    return link


def _host_entry(name, host):
    if not host.get("reached"):
        return {"host": name, "reached": False, "problem": "%s is unreachable: its devices were not read" % name}
    entry = dict(host)
    entry["host"] = name
    entry["active_ports"] = sum(1 for device in host.get("devices") or [] for port in device.get("ports") or []
                                if port.get("state") == "PORT_ACTIVE")
    return entry


def _round_times(runs_list):
    rounds = {}
    for run in runs_list:
        if run.get("round") is None or run.get("started") is None:
            continue
        window = rounds.setdefault(run["round"], [run["started"], run["ended"]])
        window[0], window[1] = min(window[0], run["started"]), max(window[1], run["ended"])
    return [{"round": number, "started": window[0], "ended": window[1], "seconds": round(window[1] - window[0], 2)}
            for number, window in sorted(rounds.items())]


def _check_settings(settings):
    unknown = [kind for kind in settings["measure"] if kind not in KINDS]
    if unknown or not settings["measure"]:
        raise ReportError("rdma_verify_measure lists %s; use one or both of %s" % (settings["measure"], ", ".join(KINDS)))
    if settings["lat_metric"] not in LATENCY_METRICS:
        raise ReportError("rdma_verify_lat_metric is %r; use one of %s" % (settings["lat_metric"], ", ".join(LATENCY_METRICS)))


def build_report(hosts, runs_list, the_plan, settings, generated_at):
    """One verdict per host and per pair.

    hosts: name -> what the host published (reached, nic_expected, devices, erdma, problem, ...).
    runs_list: the clients' measurements ({client, server, kind, round, started, ended, summary,
    rows, msg}). the_plan: what plan() returned. settings: measure, bw_fraction, lat_metric,
    lat_max_us, max_rounds, check_mode.
    """
    _check_settings(settings)
    runs = dict(((run["client"], run["server"], run["kind"]), run) for run in runs_list)
    not_measured = dict(((entry["client"], entry["server"]), entry) for entry in the_plan["not_measured"])
    links = []
    for client, server in the_plan["pairs"]:
        if (client, server) in not_measured:
            links.append(dict(not_measured[(client, server)]))
        else:
            links.append(_measured_link((client, server), hosts, runs, settings))
    host_entries = [_host_entry(name, hosts[name]) for name in sorted(hosts)]
    problems = ["%s: %s" % (entry["host"], entry["problem"]) for entry in host_entries if entry.get("problem")]
    problems += ["%s -> %s: %s" % (link["client"], link["server"], link["reason"]) for link in links
                 if link["result"] == "failed"]
    round_times = _round_times(runs_list)
    return {
        "generated_at": generated_at,
        "settings": dict(settings),
        "hosts": host_entries,
        "links": links,
        "rounds": [{"round": i + 1, "pairs": pairs} for i, pairs in enumerate(the_plan["rounds"])],
        "round_times": round_times,
        "summary": {
            "pairs": len(links),
            "rounds": len(the_plan["rounds"]),
            "measured": sum(1 for link in links if any(
                isinstance(link.get(kind), dict) and link[kind]["result"] != "skipped" for kind in KINDS)),
            "passed": sum(1 for link in links if link["result"] == "passed"),
            "failed": sum(1 for link in links if link["result"] == "failed"),
            "skipped": sum(1 for link in links if link["result"] == "skipped"),
            "measure_seconds": round(round_times[-1]["ended"] - round_times[0]["started"], 2) if round_times else 0,
        },
        "problems": problems,
    }


def _cell(value, fmt="%s"):
    if value is None or value == "":
        return ""
    text = fmt % value if not isinstance(value, str) else value
    return text.replace("|", "/").replace("\n", " ")


def _yes_no(value):
    return "n/a" if value is None else ("Y" if value else "N")


def _hosts_table(report):
    lines = ["| host | RDMA expected | devices | active ports | driver | firmware | compat_mode live / persistent | problem |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for host in report["hosts"]:
        erdma = host.get("erdma") or {}
        devices = [device.get("hca_id") for device in host.get("devices") or []]
        firmware = sorted(set(str(device.get("fw_ver")) for device in host.get("devices") or [] if device.get("fw_ver")))
        lines.append("| %s | %s | %s | %s | %s | %s | %s / %s | %s |" % (
            host["host"], _cell(host.get("nic_expected")), _cell(", ".join(devices)) or "NO RDMA DEVICE",
            _cell(host.get("active_ports")), _cell(erdma.get("version")), _cell(", ".join(firmware)),
            _yes_no(erdma.get("compat_mode")), _yes_no(erdma.get("compat_mode_persistent")), _cell(host.get("problem"))))
    return lines


def _links_table(report):
    lines = ["| client | server | round | devices | link Gb/s | expected Gb/s | measured Gb/s | latency us "
             "(typical / avg / p99 / p99.9 at smallest size) | result |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for link in report["links"]:
        bandwidth, latency = link.get("bandwidth") or {}, link.get("latency") or {}
        latency_text = ""
        if latency.get("p99_us") is not None:
            latency_text = "%.2f / %.2f / %.2f / %.2f @%d B" % (
                latency["t_typical_us"], latency["t_avg_us"], latency["p99_us"], latency["p999_us"], latency["bytes"])
        verdict = link["result"] + (": " + link["reason"] if link.get("reason") else "")
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            link["client"], link["server"], _cell(link.get("round")), _cell(link.get("devices")),
            _cell(link.get("link_gbps")), _cell(bandwidth.get("expected_gbps")),
            _cell(bandwidth.get("bw_avg_gbps"), "%.2f"), latency_text, _cell(verdict)))
    return lines


def _sweep_table(report):
    """Latency by message size of every measured link: the -a sweep with its percentiles."""
    lines = []
    for link in report["links"]:
        sizes = (link.get("latency") or {}).get("sizes")
        if not sizes:
            continue
        lines += ["", "### %s -> %s" % (link["client"], link["server"]), "",
                  "| bytes | t_min | t_typical | t_avg | p99 | p99.9 | t_max |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in sizes:
            lines.append("| %d | %s | %s | %s | %s | %s | %s |" % tuple(
                [row["bytes"]] + [_cell(row.get(name), "%.2f") for name in
                                  ("t_min_us", "t_typical_us", "t_avg_us", "p99_us", "p999_us", "t_max_us")]))
    return lines


def markdown(report):
    """The report as Markdown: hosts, links (bandwidth against the link rate, latency percentiles), sweeps."""
    settings, summary = report["settings"], report["summary"]
    threshold = ("%s <= %s us" % (settings["lat_metric"], settings["lat_max_us"])
                 if settings.get("lat_max_us") else "no latency threshold")
    lines = [
        "# RDMA verification", "",
        "Generated %s. A link passes at %d%% of its port rate for bandwidth and %s (smallest message size)."
        % (report["generated_at"], round(settings["bw_fraction"] * 100), threshold), "",
        "%d pair(s) in %d round(s) (no host in two runs at once): %d passed, %d failed, %d skipped; "
        "measuring took %.1f s." % (summary["pairs"], summary["rounds"], summary["passed"], summary["failed"],
                                    summary["skipped"], summary["measure_seconds"]),
        "", "## Hosts", "",
    ]
    lines += _hosts_table(report)
    lines += ["", "## Links (prefill -> decode)", ""]
    lines += _links_table(report)
    sweep = _sweep_table(report)
    if sweep:
        lines += ["", "## Latency by message size (ib_write_lat -a)"] + sweep
    if report["problems"]:
        lines += ["", "## Problems", ""] + ["- " + _cell(problem) for problem in report["problems"]]
    return "\n".join(lines) + "\n"


def part_in_round(pairs, host):
    """What `host` does in a round: serve a client, measure a server, or neither (empty strings)."""
    serves = [client for client, server in pairs if server == host]
    measures = [server for client, server in pairs if client == host]
    if len(serves) + len(measures) > 1:
        raise ReportError("%s is in more than one pair of a round: %s" % (host, pairs))
    return {"serves": serves[0] if serves else "", "measures": measures[0] if measures else ""}


def device_problems(devices, wanted):
    """Sentences for each wanted device that is missing or has no PORT_ACTIVE port, with the fix."""
    found = dict((device.get("hca_id"), device) for device in devices or [])
    problems = []
    missing = [name for name in wanted if name not in found]
    if missing:
        problems.append("lacks %s (found [%s]): install the driver (playbooks/driver.yml) or fix rdma_device_names."
                        % (", ".join(missing), ", ".join(sorted(found))))
    for name in wanted:
        ports = (found.get(name) or {}).get("ports") or []
        if name in found and not any(port.get("state") == "PORT_ACTIVE" for port in ports):
            problems.append("%s has no PORT_ACTIVE port (states: %s): check the ENI's eRDMA attachment in the "
                            "console and `ibv_devinfo -d %s`." % (name, ", ".join(str(p.get("state")) for p in ports) or "none", name))
    return problems
