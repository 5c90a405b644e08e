# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/verify.yml (role rdma_verify) after converge, idempotence, check and the side effect
(testinfra, podman).

The nodes' ibv_devinfo, ib_write_bw, ib_write_lat and eadm are STAND-INS that replay real recorded outputs
(../standins/rdma_standins.py): erdma_0 with a 25 Gb/s port from the field guide, a 98.02 Gb/s
ib_write_bw client run (passes 0.8 x 25 Gb/s), a 23-size ib_write_lat -a sweep (0.98 us typical at
2 bytes) and, in the side effect, a 3.03 Gb/s run and a 0.5 us latency threshold (both fail).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
from datetime import datetime

import pytest
import testinfra

EPHEMERAL = os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]
FIXTURES = os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "..", "..", "tests", "unit", "fixtures")
PREFILL, DECODE = "vfy-prefill", "vfy-decode"
LINK_GBPS, FRACTION = 25.0, 0.8
FAIL_TASK = "erdma.pd.rdma_verify : Require every host to pass its checks and every measured link its thresholds"
WAIT_TASK = "erdma.pd.rdma_verify : Wait for the server's result"
# ib_write_lat -a: the recorded sweep's smallest size (2 bytes): typical / avg / p99 / p99.9 in us.
LATENCY_ROW = "0.98 / 1.03 / 1.21 / 5.42 @2 B"


def recorded_bw_avg(name, mb_per_sec=False):
    """bw_avg of the last result row of a recorded perftest output, in Gb/s (MB is 2^20 bytes)."""
    with open(os.path.join(FIXTURES, "perftest", name)) as handle:
        rows = [line.split() for line in handle if line.split() and line.split()[0].isdigit()]
    value = float(rows[-1][3])
    return value * 1048576 * 8 / 1e9 if mb_per_sec else value


@pytest.fixture(scope="module")
def nodes():
    return {name: testinfra.get_host("podman://" + name) for name in (PREFILL, DECODE)}


def report(directory):
    with open(os.path.join(directory, "verify.json")) as handle:
        data = json.load(handle)
    with open(os.path.join(directory, "verify.md")) as handle:
        return data, handle.read()


def side_effect_run(name):
    """(rc, seconds, {task name: [results]}) of one side-effect run of the playbook (json callback)."""
    with open(os.path.join(EPHEMERAL, "side_effect", name + ".json")) as handle:
        run = json.load(handle)
    output = json.loads(run["stdout"])
    tasks = {}
    for play in output["plays"]:
        for task in play["tasks"]:
            tasks.setdefault(task["task"]["name"], []).extend(task["hosts"].values())
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    seconds = (datetime.strptime(run["end"], fmt) - datetime.strptime(run["start"], fmt)).total_seconds()
    return run["rc"], seconds, tasks


def standin_log(host, tool):
    text = host.file("/var/log/erdma-pd-standins/%s.log" % tool).content_string
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_converge_report_has_the_recorded_bandwidth_and_latency_and_passes():
    data, markdown = report(os.path.join(EPHEMERAL, "reports"))
    measured = recorded_bw_avg("ib_write_bw_bidir_duration_cpufreq_warning.txt")
    assert measured == 98.02
    assert data["settings"]["bw_fraction"] == FRACTION
    assert sorted((h["host"], [d["hca_id"] for d in h["devices"]], h["active_ports"], h["problem"])
                  for h in data["hosts"]) == [(DECODE, ["erdma_0"], 1, ""), (PREFILL, ["erdma_0"], 1, "")]
    [link] = data["links"]
    assert (link["client"], link["server"], link["devices"], link["round"]) == (PREFILL, DECODE, "erdma_0 -> erdma_0", 1)
    assert link["link_gbps"] == LINK_GBPS
    bandwidth, latency = link["bandwidth"], link["latency"]
    assert bandwidth["expected_gbps"] == round(FRACTION * LINK_GBPS, 2)
    assert bandwidth["bw_avg_gbps"] == measured
    assert link["result"] == "passed" and not link["reason"]
    # The recording's CPU-frequency line inside the table is reported, not taken for a row.
    assert any("Conflicting CPU frequency" in w for w in bandwidth["warnings_in_output"])
    # The whole ib_write_lat -a sweep with its percentiles, 2 B .. 8 MiB.
    assert (latency["t_typical_us"], latency["p99_us"], latency["p999_us"]) == (0.98, 1.21, 5.42)
    assert [row["bytes"] for row in latency["sizes"]] == [2 ** n for n in range(1, 24)]
    assert "| %s | %s | 1 | erdma_0 -> erdma_0 | 25.0 | 20.0 | 98.02 | %s | passed |" % (
        PREFILL, DECODE, LATENCY_ROW) in markdown
    assert "A link passes at 80% of its port rate for bandwidth and t_typical_us <= 30.0 us" in markdown
    assert "| 8388608 | 2296.01 | 2302.01 | 2304.98 | 2327.01 | 2335.48 | 2345.48 |" in markdown


def test_perftest_ran_as_the_guide_runs_it_over_dns_names(nodes):
    server = [e for e in standin_log(nodes[DECODE], "ib_write_bw") if e.get("event") == "start"]
    client = [e for e in standin_log(nodes[PREFILL], "ib_write_bw") if e.get("event") == "start"]
    assert server and all(e["role"] == "server" for e in server)
    assert client and all(e["role"] == "client" for e in client)
    for argv in (server[0]["argv"], client[0]["argv"]):
        assert argv[argv.index("-d") + 1] == "erdma_0" and argv[argv.index("-q") + 1] == "16"
        assert argv[argv.index("-p") + 1] == "18515" and "-F" in argv and "--report_gbits" in argv
    assert client[0]["argv"][-1] == DECODE
    prefill_address = nodes[PREFILL].check_output("hostname -I").split()[0]
    connected = [e for e in standin_log(nodes[DECODE], "ib_write_bw") if e.get("event") == "client connected"]
    assert connected and connected[0]["peer"] == prefill_address


def test_latency_ran_as_the_guide_runs_it(nodes):
    # ib_write_lat -R -a -F, -n iterations per size (perftest's -D does not run all sizes), and no -q:
    # perftest's latency tools refuse it ("Multiple QPs only available on bw tests").
    server = [e for e in standin_log(nodes[DECODE], "ib_write_lat") if e.get("event") == "start"]
    client = [e for e in standin_log(nodes[PREFILL], "ib_write_lat") if e.get("event") == "start"]
    assert server and client and client[0]["argv"][-1] == DECODE
    for argv in (server[0]["argv"], client[0]["argv"]):
        assert {"-R", "-a", "-F"} <= set(argv) and "-q" not in argv and "-D" not in argv
        assert argv[argv.index("-n") + 1] == "1000" and argv[argv.index("-p") + 1] == "18516"


@pytest.mark.parametrize("name", [PREFILL, DECODE])
def test_no_perftest_process_or_async_job_is_left(nodes, name):
    host = nodes[name]
    assert host.run("pgrep -af '[i]b_write_(bw|lat)|[r]dma_standins'").rc == 1, host.run("ps -ef").stdout
    jobs = host.run("ls -A /root/.ansible_async 2>/dev/null").stdout.split()
    assert not jobs


def test_slow_link_fails_the_playbook_with_measured_vs_expected():
    rc, _seconds, tasks = side_effect_run("slow")
    measured = recorded_bw_avg("ib_send_bw_rxe_client_mbsec.txt", mb_per_sec=True)
    assert rc == 2
    [verdict] = tasks[FAIL_TASK]
    assert verdict["failed"]
    expected = "%.2f Gb/s is below 20.00 Gb/s (80%% of 25.0 Gb/s)" % measured
    assert expected == "3.03 Gb/s is below 20.00 Gb/s (80% of 25.0 Gb/s)"
    latency = "t_typical_us 0.98 us at 2 bytes is above 0.50 us (rdma_verify_lat_max_us)"
    assert "%s -> %s: bandwidth: %s; latency: %s" % (PREFILL, DECODE, expected, latency) in verdict["msg"]
    data, markdown = report(os.path.join(EPHEMERAL, "side_effect", "slow"))
    [link] = data["links"]
    assert link["result"] == "failed" and link["bandwidth"]["bw_avg_gbps"] == round(measured, 6)
    assert link["latency"]["result"] == "failed"
    assert "| 3.03 | %s | failed: bandwidth: %s; latency: %s |" % (LATENCY_ROW, expected, latency) in markdown


def test_server_without_client_is_waited_for_until_its_timeout():
    rc, seconds, tasks = side_effect_run("no_listener")
    assert rc == 2
    [verdict] = tasks[FAIL_TASK]
    assert verdict["failed"]
    assert "bandwidth: ib_write_bw client could not connect: Couldn't connect to %s:18515" % PREFILL in verdict["msg"]
    # The server waited for a client that never came until its timeout (10 s) stopped it, and the
    # playbook waited for that end before it went on.
    # Every host of the play runs the task; the decode host served, the prefill host skipped it.
    [server] = [result for result in tasks[WAIT_TASK] if not result.get("skipped")]
    assert server["finished"] and server["timed_out"] and server["rc"] == 124
    assert seconds > 10


def test_server_without_client_never_saw_one(nodes):
    events = standin_log(nodes[DECODE], "ib_write_bw")
    last_start = max(i for i, e in enumerate(events) if e.get("event") == "start")
    assert events[last_start]["role"] == "server"
    assert [e["event"] for e in events[last_start + 1:]] == []
