# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""erdma.pd.rdma_perftest end to end: parse-only on recorded outputs, and the run path through the real
`timeout` and `stdbuf` with a perftest stand-in on PATH that prints a recorded output."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

import pytest


from ansible_collections.erdma.pd.plugins.modules import rdma_perftest

FIXTURES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "perftest"))
SYSTEM_PATH = "/usr/bin:/bin"  # where coreutils' timeout and stdbuf live


@pytest.fixture
def run(run_module):
    def run_it(args, check_mode=False):
        return run_module(rdma_perftest, args, check_mode)

    return run_it


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


@pytest.fixture
def tool(tmp_path, monkeypatch):
    """Install a stand-in perftest tool; returns a function(name, script) -> its path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, SYSTEM_PATH))

    def install(name, script):
        path = str(bin_dir / name)
        with open(path, "w") as handle:
            handle.write('#!/bin/sh\necho "$@" > "%s.argv"\n%s\n' % (path, script))
        os.chmod(path, stat.S_IRWXU)
        return path

    return install


def test_parse_only_bandwidth_passes_without_threshold(run):
    outcome = run({"output": fixture("ib_write_bw_bidir_all_sizes_report_gbits.txt")})
    assert not outcome.failed
    assert outcome.result["summary"]["bw_avg_gbps"] == 204.59
    assert outcome.result["passed"] is True
    assert len(outcome.result["rows"]) == 23


def test_threshold_failure_states_measured_and_expected(run):
    outcome = run({"output": fixture("ib_write_bw_bidir_duration_cpufreq_warning.txt"), "min_bw_gbps": 100.0})
    assert outcome.failed
    assert outcome.result["msg"] == (
        "average bandwidth 98.02 Gb/s at 65536 bytes is below the expected minimum 100.00 Gb/s"
    )
    assert outcome.result["passed"] is False
    assert outcome.result["summary"]["bw_avg_gbps"] == 98.02


def test_latency_threshold_in_microseconds(run):
    outcome = run({"output": fixture("ib_send_lat_rxe_client.txt"), "max_lat_us": 3.0})
    assert outcome.failed and "3.25 us" in outcome.result["msg"] and "3.00 us" in outcome.result["msg"]


def test_client_run_goes_through_timeout_and_stdbuf(tool, run):
    path = tool("ib_write_bw", 'cat "%s/ib_write_bw_bidir_duration_cpufreq_warning.txt"' % FIXTURES)
    outcome = run({"role": "client", "server": "10.0.0.12", "device": "erdma_0", "qps": 16, "timeout": 30})
    assert not outcome.failed
    cmd = outcome.result["cmd"]
    assert cmd[:3] == ["/usr/bin/timeout", "--kill-after=5", "30"] and cmd[4] == "-oL" and cmd[5] == path
    with open(path + ".argv") as handle:
        assert handle.read().split() == ["-d", "erdma_0", "-p", "18515", "-q", "16", "-F", "--report_gbits",
                                         "10.0.0.12"]
    assert outcome.result["summary"]["bw_avg_gbps"] == 98.02
    assert outcome.result["timed_out"] is False
    assert any("Conflicting CPU" in line for line in outcome.result["warnings_in_output"])


def test_check_mode_runs_nothing(tool, run):
    path = tool("ib_write_bw", "exit 0")
    outcome = run({"role": "client", "server": "10.0.0.12"}, check_mode=True)
    assert not outcome.failed and outcome.result["skipped"] is True
    assert not os.path.exists(path + ".argv")
    assert outcome.result["cmd"][0] == "ib_write_bw"


def test_timeout_stops_a_hanging_tool_and_says_so(tool, run):
    tool("ib_write_bw", "exec sleep 30")
    outcome = run({"role": "server", "timeout": 1})
    assert outcome.failed
    assert outcome.result["timed_out"] is True and outcome.result["rc"] == 124
    assert "stopped after timeout=1s" in outcome.result["msg"]


def test_run_infinitely_stopped_by_timeout_keeps_the_rows_printed(tool, run):
    tool("ib_write_bw", '/bin/cat "%s/ib_write_bw_bidir_duration_cpufreq_warning.txt"; exec sleep 30' % FIXTURES)
    outcome = run({"role": "client", "server": "10.0.0.12", "run_infinitely": True, "timeout": 1})
    assert not outcome.failed
    assert outcome.result["timed_out"] is True and outcome.result["rc"] == 124
    assert outcome.result["summary"]["bw_avg_gbps"] == 98.02
    assert "--run_infinitely" in outcome.result["cmd"]


def test_latency_server_without_rows_succeeds(tool, run):
    tool("ib_read_lat", 'cat "%s/ib_read_lat_mlx4_server.txt"' % FIXTURES)
    outcome = run({"tool": "ib_read_lat", "role": "server"})
    assert not outcome.failed
    assert outcome.result["rows"] == []


def test_standard_mode_connection_failure_points_at_compat_mode(tool, run):
    tool("ib_write_bw", "echo ' Failed to modify QP to RTS'; echo \" Unable to Connect the HCA's through the link\"; exit 1")
    outcome = run({"role": "client", "server": "10.0.0.12"})
    assert outcome.failed
    assert "Failed to modify QP to RTS" in outcome.result["msg"] and "compat_mode=Y" in outcome.result["msg"]


def test_missing_tool_names_the_package(tmp_path, monkeypatch, run):
    monkeypatch.setenv("PATH", str(tmp_path))
    outcome = run({"role": "client", "server": "10.0.0.12", "tool": "ib_read_bw"})
    assert outcome.failed
    assert "ib_read_bw was not found" in outcome.result["msg"] and "perftest" in outcome.result["msg"]


@pytest.mark.parametrize("args, words", [
    # coreutils reads `timeout 0` as "no limit": a hung server would hold the play for good.
    ({"timeout": 0}, "timeout must be at least 1 second"),
    ({"timeout": -5}, "timeout must be at least 1 second"),
    ({"port": 0}, "port must be a TCP port from 1 to 65535"),
    ({"port": 70000}, "port must be a TCP port from 1 to 65535"),
    # perftest takes the last bare word as the server: this one would become an option.
    ({"server": "-x3"}, "server must be a host name or an address"),
    ({"server": "10.0.0.12 -R"}, "server must be a host name or an address"),
    ({"tool": "ib_write_lat", "qps": 16}, "Multiple QPs only available on bw tests"),
    ({"tool": "ib_write_lat", "all_sizes": True, "duration": 5}, "duration and all_sizes exclude each other"),
    ({"qps": 0}, "qps must be at least 1"),
])
def test_settings_perftest_would_misread_are_refused_before_running(tool, run, args, words):
    path = tool(args.get("tool", "ib_write_bw"), 'cat "%s/ib_write_bw_bidir_duration_cpufreq_warning.txt"' % FIXTURES)
    outcome = run(dict({"role": "client", "server": "10.0.0.12"}, **args))
    assert outcome.failed
    assert words in outcome.result["msg"]
    assert not os.path.exists(path + ".argv")  # nothing ran


def test_settings_are_refused_in_check_mode_too(run):
    outcome = run({"role": "client", "server": "-x3"}, check_mode=True)
    assert outcome.failed and "server must be a host name" in outcome.result["msg"]


def test_latency_sweep_runs_with_iterations_and_without_qps(tool, run):
    path = tool("ib_write_lat", 'cat "%s/ib_send_lat_rxe_client.txt"' % FIXTURES)
    outcome = run({"tool": "ib_write_lat", "role": "client", "server": "10.0.0.12", "device": "erdma_0",
                   "all_sizes": True, "iterations": 1000, "rdma_cm": True})
    assert not outcome.failed, outcome.result
    with open(path + ".argv") as handle:
        argv = handle.read().split()
    assert argv == ["-d", "erdma_0", "-p", "18515", "-n", "1000", "-R", "-a", "-F", "10.0.0.12"]
