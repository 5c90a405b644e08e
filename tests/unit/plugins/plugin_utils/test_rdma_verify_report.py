# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rdma_verify plan and report, fed with what the modules return for real recorded outputs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.erdma.pd.plugins.module_utils.rdma_devinfo import parse_devinfo
from ansible_collections.erdma.pd.plugins.module_utils.rdma_perftest import parse_output
from ansible_collections.erdma.pd.plugins.plugin_utils.rdma_verify_report import (
    ReportError,
    build_report,
    device_problems,
    markdown,
    part_in_round,
    plan,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")
SETTINGS = {"measure": ["bandwidth", "latency"], "bw_fraction": 0.8, "lat_metric": "t_typical_us",
            "lat_max_us": 30.0, "max_rounds": 0, "check_mode": False}


def fixture(*path):
    with open(os.path.join(FIXTURES, *path)) as handle:
        return handle.read()


def guide_host(**extra):
    """A host as the role publishes it, with the guide's erdma_0 (25 Gb/s port) from ibv_devinfo -v."""
    devices, _warnings = parse_devinfo(fixture("ibv_devinfo", "erdma_guide_verbose.txt"))
    host = {"reached": True, "nic_expected": True, "wanted_devices": ["erdma_0"], "measured_device": "erdma_0",
            "address": "10.0.0.1", "devices": devices,
            "erdma": {"version": "1.4.3", "compat_mode": True, "compat_mode_persistent": True}, "problem": ""}
    host.update(extra)
    return host


def run(client, server, kind, recording, round_number=1, started=100.0, ended=103.0):
    result = parse_output(fixture("perftest", recording))
    return {"client": client, "server": server, "kind": kind, "round": round_number, "started": started,
            "ended": ended, "summary": result["summary"], "rows": result["rows"] if kind == "latency" else [],
            "msg": ""}


def guide_runs(client, server, bw="ib_write_bw_bidir_duration_cpufreq_warning.txt", **times):
    return [run(client, server, "bandwidth", bw, **times),
            run(client, server, "latency", "ib_write_lat_mlx4_client_all_sizes.txt", **times)]


def test_plan_of_a_two_by_two_fleet_is_two_rounds():
    hosts = dict((name, guide_host()) for name in ("p1", "p2", "d1", "d2"))
    the_plan = plan(["p1", "p2"], ["d1", "d2"], hosts)
    assert len(the_plan["rounds"]) == 2 and the_plan["not_measured"] == []
    assert sorted(map(tuple, the_plan["pairs"])) == [("p1", "d1"), ("p1", "d2"), ("p2", "d1"), ("p2", "d2")]


def test_plan_leaves_out_unreachable_broken_and_not_expected_hosts_with_reasons():
    hosts = {"p1": guide_host(), "p2": guide_host(problem="lacks erdma_0"), "p3": guide_host(nic_expected=False),
             "d1": guide_host(), "p4": {}}  # p4 never published anything: unreachable; p5 is outside --limit
    the_plan = plan(["p1", "p2", "p3", "p4", "p5"], ["d1"], hosts)
    assert the_plan["rounds"] == [[["p1", "d1"]]]
    reasons = dict((entry["client"], (entry["result"], entry["reason"])) for entry in the_plan["not_measured"])
    assert reasons["p2"] == ("failed", "not measured: the device checks failed on p2")
    assert reasons["p3"] == ("skipped", "no RDMA expected on p3 (rdma_nic_expected=false)")
    assert reasons["p4"] == ("failed", "not measured: p4 unreachable or left the play")
    assert reasons["p5"] == ("skipped", "not in this run (--limit): p5")


def test_plan_samples_rounds_and_says_so():
    prefill, decode = ["p%d" % i for i in range(4)], ["d%d" % i for i in range(4)]
    hosts = dict((name, guide_host()) for name in prefill + decode)
    the_plan = plan(prefill, decode, hosts, max_rounds=1)
    assert len(the_plan["rounds"]) == 1 and len(the_plan["rounds"][0]) == 4
    assert len(the_plan["not_measured"]) == 12
    assert the_plan["not_measured"][0]["reason"] == "not sampled: rdma_verify_max_rounds=1 of 4 rounds"


def test_a_host_in_both_groups_is_not_paired_with_itself():
    hosts = dict((name, guide_host()) for name in ("a", "b"))
    the_plan = plan(["a", "b"], ["b"], hosts)
    assert the_plan["rounds"] == [[["a", "b"]]]
    assert the_plan["not_measured"] == [{"client": "b", "server": "b", "result": "skipped",
                                         "reason": "the host is both prefill and decode: no link to measure"}]


def test_report_of_a_passing_link_has_bandwidth_against_the_rate_and_latency_percentiles():
    hosts = {"p1": guide_host(), "d1": guide_host()}
    the_plan = plan(["p1"], ["d1"], hosts)
    report = build_report(hosts, guide_runs("p1", "d1"), the_plan, SETTINGS, "2026-12-01T00:00:00Z")
    [link] = report["links"]
    assert (link["result"], link["reason"], link["link_gbps"], link["round"]) == ("passed", "", 25.0, 1)
    assert link["bandwidth"]["bw_avg_gbps"] == 98.02 and link["bandwidth"]["expected_gbps"] == 20.0
    latency = link["latency"]
    # The recorded sweep's smallest size (2 bytes): 0.98 typical, 1.03 avg, 1.21 p99, 5.42 p99.9.
    assert (latency["bytes"], latency["t_typical_us"], latency["t_avg_us"], latency["p99_us"], latency["p999_us"]) == (
        2, 0.98, 1.03, 1.21, 5.42)
    assert len(latency["sizes"]) == 23 and latency["sizes"][-1]["bytes"] == 8388608
    assert latency["sizes"][-1]["p99_us"] == 2327.01
    assert report["problems"] == [] and report["summary"]["passed"] == 1
    assert report["round_times"] == [{"round": 1, "started": 100.0, "ended": 103.0, "seconds": 3.0}]
    json.dumps(report)  # the role writes it with to_nice_json


def test_slow_bandwidth_and_latency_fail_with_measured_and_expected():
    hosts = {"p1": guide_host(), "d1": guide_host()}
    runs = [run("p1", "d1", "bandwidth", "ib_send_bw_rxe_client_mbsec.txt"),
            run("p1", "d1", "latency", "ib_write_lat_mlx4_client_all_sizes.txt")]
    report = build_report(hosts, runs, plan(["p1"], ["d1"], hosts), dict(SETTINGS, lat_max_us=0.5), "t")
    [link] = report["links"]
    assert link["result"] == "failed"
    assert link["reason"] == (
        "bandwidth: 3.03 Gb/s is below 20.00 Gb/s (80% of 25.0 Gb/s); "
        "latency: t_typical_us 0.98 us at 2 bytes is above 0.50 us (rdma_verify_lat_max_us)")
    assert report["problems"] == ["p1 -> d1: " + link["reason"]]


def test_a_client_that_could_not_connect_is_a_failure_with_its_message():
    hosts = {"p1": guide_host(), "d1": guide_host()}
    runs = [{"client": "p1", "server": "d1", "kind": "bandwidth", "round": 1, "started": 1.0, "ended": 2.0,
             "summary": None, "rows": [], "msg": "ib_write_bw client could not connect: Couldn't connect to d1:18515"}]
    report = build_report(hosts, runs, plan(["p1"], ["d1"], hosts), dict(SETTINGS, measure=["bandwidth"]), "t")
    assert report["links"][0]["reason"] == "bandwidth: ib_write_bw client could not connect: Couldn't connect to d1:18515"


def test_unknown_link_rate_fails_the_bandwidth_verdict():
    # Without -v, ibv_devinfo prints no speed: the rate is unknown and no threshold can hold.
    devices, _warnings = parse_devinfo(fixture("ibv_devinfo", "erdma_guide.txt"))
    hosts = {"p1": guide_host(devices=devices), "d1": guide_host()}
    report = build_report(hosts, guide_runs("p1", "d1"), plan(["p1"], ["d1"], hosts), SETTINGS, "t")
    assert "the link rate is unknown" in report["links"][0]["reason"]


def test_check_mode_measures_nothing_and_fails_nothing():
    hosts = {"p1": guide_host(), "d1": guide_host()}
    report = build_report(hosts, [], plan(["p1"], ["d1"], hosts), dict(SETTINGS, check_mode=True), "t")
    assert report["links"][0]["result"] == "skipped" and report["problems"] == []


def test_unreachable_host_is_a_problem_in_the_report():
    hosts = {"p1": guide_host(), "d1": {}}
    report = build_report(hosts, [], plan(["p1"], ["d1"], hosts), SETTINGS, "t")
    assert "d1: d1 is unreachable: its devices were not read" in report["problems"]
    assert report["links"][0]["reason"] == "not measured: d1 unreachable or left the play"


@pytest.mark.parametrize("settings, words", [
    (dict(SETTINGS, measure=["throughput"]), "rdma_verify_measure lists"),
    (dict(SETTINGS, measure=[]), "rdma_verify_measure lists"),
    (dict(SETTINGS, lat_metric="median"), "rdma_verify_lat_metric is 'median'"),
])
def test_settings_the_report_cannot_use_are_refused(settings, words):
    with pytest.raises(ReportError, match=words):
        build_report({}, [], {"pairs": [], "rounds": [], "not_measured": []}, settings, "t")


def test_markdown_shows_versions_compat_mode_rates_and_percentiles():
    erdma = {"version": "1.4.3", "compat_mode": True, "compat_mode_persistent": False}
    hosts = {"p1": guide_host(), "d1": guide_host(erdma=erdma)}
    report = build_report(hosts, guide_runs("p1", "d1"), plan(["p1"], ["d1"], hosts), SETTINGS, "2026-12-01T00:00:00Z")
    text = markdown(report)
    assert "| d1 | True | erdma_0 | 1 | 1.4.3 | 0.2.0 | Y / N |  |" in text
    assert "| p1 | d1 | 1 | erdma_0 -> erdma_0 | 25.0 | 20.0 | 98.02 | 0.98 / 1.03 / 1.21 / 5.42 @2 B | passed |" in text
    assert "| 8388608 | 2296.01 | 2302.01 | 2304.98 | 2327.01 | 2335.48 | 2345.48 |" in text
    assert "1 pair(s) in 1 round(s)" in text and "t_typical_us <= 30.0 us" in text


def test_part_in_round():
    pairs = [["p1", "d1"], ["p2", "d2"]]
    assert part_in_round(pairs, "p1") == {"serves": "", "measures": "d1"}
    assert part_in_round(pairs, "d2") == {"serves": "p2", "measures": ""}
    assert part_in_round(pairs, "x") == {"serves": "", "measures": ""}
    with pytest.raises(ReportError):
        part_in_round([["p1", "d1"], ["p1", "d2"]], "p1")


def test_device_problems_name_the_device_and_the_fix():
    devices, _warnings = parse_devinfo(fixture("ibv_devinfo", "mlx4_two_hcas.txt"))
    assert device_problems(devices, ["mlx4_0", "mlx4_1"]) == []
    assert device_problems(devices, ["erdma_0"]) == [
        "lacks erdma_0 (found [mlx4_0, mlx4_1]): install the driver (playbooks/driver.yml) or fix rdma_device_names."]
    down, _warnings = parse_devinfo(fixture("ibv_devinfo", "mlx4_port2_only.txt"))
    assert device_problems(down, ["mlx4_1"]) == [
        "mlx4_1 has no PORT_ACTIVE port (states: PORT_DOWN): check the ENI's eRDMA attachment in the console and "
        "`ibv_devinfo -d mlx4_1`."]
