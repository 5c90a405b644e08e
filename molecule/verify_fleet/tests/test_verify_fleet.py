# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The verify stage on 4 prefill x 4 decode hosts (testinfra, podman): rounds of disjoint pairs.

The hosts' perftest tools are STAND-INS (../verify/standins) that connect over TCP for real and replay
recorded outputs; every call is logged with its time on the host that ran it. From those logs and the
three reports: every pair measured once, no host in two runs at once, the runs of a round at the same
time, and the stage's measuring time set by the number of rounds, not of pairs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest
import testinfra

EPHEMERAL = os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]
PREFILL = ["fleet-p%d" % i for i in range(1, 5)]
DECODE = ["fleet-d%d" % i for i in range(1, 5)]


def report(*path):
    with open(os.path.join(EPHEMERAL, *path, "verify.json")) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def runs_by_host():
    """host -> [(tool, role, start, end)] of every perftest run, from the stand-ins' logs."""
    out = {}
    for name in PREFILL + DECODE:
        host = testinfra.get_host("podman://" + name)
        runs = []
        for tool in ("ib_write_bw", "ib_write_lat"):
            text = host.run("cat /var/log/erdma-pd-standins/%s.log" % tool).stdout
            started = {}
            for entry in (json.loads(line) for line in text.splitlines() if line.strip()):
                if entry.get("event") == "start":
                    started[entry["pid"]] = entry
                elif entry.get("event") == "done" and entry["pid"] in started:
                    first = started.pop(entry["pid"])
                    runs.append((tool, first["role"], first["time"], entry["time"]))
        out[name] = sorted(runs, key=lambda run: run[2])
    return out


def test_sixteen_pairs_in_four_rounds_all_measured_and_passed():
    data = report("reports")
    assert data["summary"]["pairs"] == 16 and data["summary"]["rounds"] == 4
    assert data["summary"]["passed"] == 16 and data["problems"] == []
    measured = sorted((link["client"], link["server"]) for link in data["links"])
    assert measured == sorted((p, d) for p in PREFILL for d in DECODE)
    for entry in data["rounds"]:
        hosts = [host for pair in entry["pairs"] for host in pair]
        assert len(entry["pairs"]) == 4 and len(set(hosts)) == 8
    for link in data["links"]:
        assert link["bandwidth"]["result"] == "passed" and link["latency"]["p99_us"] == 1.21


def test_no_host_ever_ran_two_perftests_at_once(runs_by_host):
    for name, runs in runs_by_host.items():
        # Converge: 4 links x 2 tools per host; the side effect adds 8 more (4 x 2) or fewer.
        assert len(runs) >= 8, name
        for earlier, later in zip(runs, runs[1:]):
            assert earlier[3] <= later[2], (name, earlier, later)


def test_the_runs_of_a_round_overlap_in_time(runs_by_host):
    clients = sorted((start, end) for name in PREFILL for tool, role, start, end in runs_by_host[name]
                     if role == "client" and tool == "ib_write_bw")
    # The most bandwidth clients running at the same moment: all four of a round.
    most = max(sum(1 for start, end in clients if start <= moment < end) for moment, _end in clients)
    assert most == 4


def test_half_the_rounds_take_about_half_the_time():
    full, four_by_two, sampled = report("reports"), report("side_effect", "four_by_two"), report("side_effect", "sampled")
    assert (four_by_two["summary"]["rounds"], four_by_two["summary"]["passed"]) == (4, 8)
    assert (sampled["summary"]["rounds"], sampled["summary"]["passed"]) == (2, 8)
    seconds = dict((name, data["summary"]["measure_seconds"]) for name, data in
                   (("16 pairs / 4 rounds", full), ("8 pairs / 4 rounds", four_by_two), ("8 pairs / 2 rounds", sampled)))
    print("measuring time on the simulated fleet: %s" % seconds)
    # Same 8 hosts, half the rounds: about half the time.
    assert 0.3 < seconds["8 pairs / 2 rounds"] / seconds["16 pairs / 4 rounds"] < 0.8, seconds
    # Twice the pairs in as many rounds is not compared: through podman on 2 cores every task of a round
    # costs per host, so 8 hosts per round took 1.8-1.9x the 6 of the 4 x 2 run (127.8 vs 70.3 s,
    # 2026-12-01; 6 % more with a local connection, roles/rdma_verify/README.md). That the runs of a
    # round do run at once is test_the_runs_of_a_round_overlap_in_time's, from the stand-ins' own logs.


def test_sampling_still_measures_every_host_and_says_what_it_left_out():
    data = report("side_effect", "sampled")
    measured = set(host for link in data["links"] if link["result"] == "passed"
                   for host in (link["client"], link["server"]))
    assert measured == set(PREFILL + DECODE)
    left_out = [link for link in data["links"] if link["result"] == "skipped"]
    assert len(left_out) == 8
    assert all(link["reason"] == "not sampled: rdma_verify_max_rounds=2 of 4 rounds" for link in left_out)


def test_limited_run_skips_the_hosts_outside_the_limit():
    data = report("side_effect", "four_by_two")
    skipped = [link for link in data["links"] if link["result"] == "skipped"]
    assert len(skipped) == 8
    assert all(link["reason"].startswith("not in this run (--limit): fleet-d") for link in skipped)
