# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The perftest parser and command builder against real outputs (tests/unit/fixtures/perftest/SOURCES.md)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.erdma.pd.plugins.module_utils import rdma_perftest as perftest

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "perftest")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def client_params(**overrides):
    params = dict(tool="ib_write_bw", role="client", server="10.0.0.12", device="erdma_0", ib_port=None,
                  port=18515, qps=16, size=None, all_sizes=False, duration=None, iterations=None,
                  run_infinitely=False, rdma_cm=False, gid_index=None, report_gbits=True,
                  ignore_cpufreq=True, extra_args=[], timeout=60)
    params.update(overrides)
    return params


def test_all_sizes_report_gbits_gives_23_rows_and_summarises_the_largest():
    result = perftest.parse_output(fixture("ib_write_bw_bidir_all_sizes_report_gbits.txt"))
    assert result["kind"] == "bandwidth" and result["unit_reported"] == "Gb/sec"
    rows = result["rows"]
    assert [row["bytes"] for row in rows] == [2 ** n for n in range(1, 24)]
    assert rows[0] == {"bytes": 2, "iterations": 5000, "bw_peak_gbps": 0.142947, "bw_avg_gbps": 0.012281,
                       "msg_rate_mpps": 0.767588}
    summary = result["summary"]
    assert (summary["bytes"], summary["bw_avg_gbps"], summary["samples"]) == (8388608, 204.59, 1)
    assert result["warnings"] == []


def test_warning_lines_inside_the_table_are_warnings_not_rows():
    result = perftest.parse_output(fixture("ib_write_bw_bidir_duration_cpufreq_warning.txt"))
    assert len(result["rows"]) == 1
    assert result["summary"]["bw_avg_gbps"] == 98.02
    assert result["summary"]["iterations"] == 560845
    assert any(line.startswith("Conflicting CPU frequency") for line in result["warnings"])
    assert any("BW peak won't be measured" in line for line in result["warnings"])


def test_mb_per_sec_is_converted_with_perftest_mebibytes():
    result = perftest.parse_output(fixture("ib_send_bw_rxe_client_mbsec.txt"))
    assert result["unit_reported"] == "MB/sec"
    summary = result["summary"]
    # 360.91 MB/sec (2**20 bytes) = 3.0275 Gb/s ...
    assert summary["bw_avg_gbps"] == pytest.approx(360.91 * 1048576 * 8 / 1e9)
    # ... which the independent message rate confirms: 0.005775 Mpps x 65536 B x 8 bit.
    assert summary["bw_avg_gbps"] == pytest.approx(0.005775e6 * 65536 * 8 / 1e9, rel=1e-3)


def test_latency_row_has_all_nine_columns_in_microseconds():
    result = perftest.parse_output(fixture("ib_send_lat_rxe_client.txt"))
    assert result["kind"] == "latency"
    assert result["summary"] == {"bytes": 2, "iterations": 1000, "t_min_us": 2.86, "t_max_us": 87.64,
                                 "t_typical_us": 2.95, "t_avg_us": 3.25, "t_stdev_us": 2.72, "p99_us": 8.92,
                                 "p999_us": 87.64, "samples": 1}


def test_latency_warning_between_header_and_row():
    result = perftest.parse_output(fixture("ib_read_lat_mlx4_client_cpufreq_warning.txt"))
    assert result["summary"]["t_avg_us"] == 1.8
    assert result["warnings"] == [
        "Conflicting CPU frequency values detected: 2400.000000 != 1873.463000. CPU Frequency is not max."
    ]


def test_latency_server_side_has_no_rows():
    with pytest.raises(perftest.PerftestError, match="no result rows"):
        perftest.parse_output(fixture("ib_read_lat_mlx4_server.txt"))


def test_repeated_rows_of_one_size_are_averaged():
    # No recorded --run_infinitely output is public: its rows have the normal layout, so the rows of
    # two real runs of the same size stand in for two intervals.
    server = perftest.parse_table(fixture("ib_send_bw_rxe_server_mbsec.txt"))[2]
    client = perftest.parse_table(fixture("ib_send_bw_rxe_client_mbsec.txt"))[2]
    summary = perftest.summarize_bandwidth(server + client)
    assert summary["samples"] == 2
    assert summary["iterations"] == 2000
    assert summary["bw_avg_gbps"] == pytest.approx((server[0]["bw_avg_gbps"] + client[0]["bw_avg_gbps"]) / 2)
    assert summary["bw_min_sample_gbps"] == client[0]["bw_avg_gbps"]
    assert summary["bw_peak_gbps"] == client[0]["bw_peak_gbps"]


def test_bandwidth_threshold_failure_states_measured_and_expected():
    result = perftest.parse_output(fixture("ib_send_bw_rxe_client_mbsec.txt"))
    failures = perftest.check_thresholds(result, min_bw_gbps=20.0)
    assert failures == ["average bandwidth 3.03 Gb/s at 65536 bytes is below the expected minimum 20.00 Gb/s"]
    assert perftest.check_thresholds(result, min_bw_gbps=3.0) == []


def test_latency_threshold_failure_states_measured_and_expected():
    result = perftest.parse_output(fixture("ib_send_lat_rxe_client.txt"))
    assert perftest.check_thresholds(result, max_lat_us=3.0) == [
        "average latency 3.25 us at 2 bytes is above the expected maximum 3.00 us"
    ]
    assert perftest.check_thresholds(result, max_lat_us=5.0) == []


def test_connection_error_text_explains_compat_mode():
    text = "Failed to modify QP to RTS\n Unable to Connect the HCA's through the link\n"
    with pytest.raises(perftest.PerftestError, match="Failed to modify QP to RTS"):
        perftest.parse_output(text)
    message = perftest.failure_message(client_params(), 1, text, "", False)
    assert "compat_mode=Y" in message


def test_missing_device_is_explained_from_the_recorded_output():
    text = fixture("ib_write_bw_no_device_debian12.txt")
    with pytest.raises(perftest.PerftestError):
        perftest.parse_output(text)
    message = perftest.failure_message(client_params(role="server"), 1, "", text, False)
    assert message.startswith("ib_write_bw server found no RDMA device erdma_0")
    assert "Unable to find the Infiniband/RoCE device" in message


def test_client_command_matches_the_guides_measurement():
    argv = perftest.command("/usr/bin/ib_write_bw", "/usr/bin/timeout", "/usr/bin/stdbuf", client_params())
    assert argv == ["/usr/bin/timeout", "--kill-after=5", "60", "/usr/bin/stdbuf", "-oL", "/usr/bin/ib_write_bw",
                    "-d", "erdma_0", "-p", "18515", "-q", "16", "-F", "--report_gbits", "10.0.0.12"]


def test_latency_tool_gets_no_report_gbits_and_server_gets_no_address():
    params = client_params(tool="ib_write_lat", role="server", qps=None, rdma_cm=True, all_sizes=True)
    assert perftest.perftest_args(params) == ["-d", "erdma_0", "-p", "18515", "-R", "-a", "-F"]


def test_client_without_server_and_size_with_all_sizes_are_refused():
    with pytest.raises(perftest.PerftestError, match="needs server"):
        perftest.perftest_args(client_params(server=None))
    with pytest.raises(perftest.PerftestError, match="exclude each other"):
        perftest.perftest_args(client_params(size=65536, all_sizes=True))
