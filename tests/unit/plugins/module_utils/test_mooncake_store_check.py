# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failure classification of the store check on real client logs (tests/unit/fixtures/mooncake/SOURCES.md),
and the bounds on every wait, with real sockets and processes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import stat
import sys
import time

import pytest

from ansible_collections.erdma.pd.plugins.module_utils.mooncake_failures import (
    classify_failure,
    observed_transport,
    tcp_fallback,
)
from ansible_collections.erdma.pd.plugins.module_utils.mooncake_store_runner import (
    parse_client_output,
    run_client,
    split_host_port,
    store_check,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "mooncake")
DONE = {"phase": "done", "setup_rc": 0, "put_rc": 0, "data_verified": True}


def log(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


@pytest.mark.parametrize("name, result", [
    # 0.3.13.post1 retries setup 20 times (~90 s): the watchdog stops it in the setup phase.
    ("client-0.3.13.post1-master-unreachable.log", {"phase": "setup", "timed_out": True}),
    # 0.3.7 gives up after ~4.3 s with -600.
    ("client-0.3.7-master-unreachable.log", {"phase": "setup", "setup_rc": -600}),
])
def test_master_unreachable(name, result):
    failure, message = classify_failure(result, log(name), "tcp")
    assert failure == "master_unreachable"
    assert "Client not available" in message or "Connection refused" in message
    assert "systemctl status mooncake-master" in message


@pytest.mark.parametrize("name, rc", [
    ("client-0.3.13.post1-rdma-no-device.log", -1),
    ("client-0.3.7-rdma-no-device.log", -600),
])
def test_rdma_without_a_nic(name, rc):
    failure, message = classify_failure({"phase": "setup", "setup_rc": rc}, log(name), "rdma")
    assert failure == "no_rdma_device"
    assert "No RDMA devices found" in message
    assert "ibv_devices" in message


@pytest.mark.parametrize("name", ["client-0.3.13.post1-rdma-empty-device.log", "client-0.3.7-rdma-empty-device.log"])
def test_rdma_with_no_device_named_falls_back_to_tcp_silently(name):
    text = log(name)
    assert observed_transport(text) == "tcp"
    assert tcp_fallback("rdma", text)
    failure, message = classify_failure(DONE, text, "rdma")
    assert failure == "rdma_fell_back_to_tcp"
    assert "device_name" in message


@pytest.mark.parametrize("name", ["client-0.3.13.post1-tcp-get-ok.log", "client-0.3.7-tcp-ok.log"])
def test_tcp_success_is_no_failure(name):
    text = log(name)
    assert observed_transport(text) == "tcp"
    assert classify_failure(DONE, text, "tcp") == (None, None)
    assert not tcp_fallback("tcp", text)


def test_an_rdma_error_in_the_log_does_not_fail_a_check_that_worked():
    # The fallback log carries "No RDMA devices found"; only a failed setup turns it into no_rdma_device.
    failure, _message = classify_failure(DONE, log("client-0.3.7-rdma-empty-device.log"), "rdma")
    assert failure == "rdma_fell_back_to_tcp"


@pytest.mark.parametrize("result, failure, words", [
    ({"phase": "import", "import_error": "ImportError: libcudart.so.12"}, "client_import_failed", "LD_LIBRARY_PATH"),
    ({"phase": "put", "setup_rc": 0, "put_rc": -200}, "put_failed", "NO_AVAILABLE_HANDLE"),
    ({"phase": "wait_key", "setup_rc": 0, "key_found": False}, "key_not_found", "hold_s"),
    ({"phase": "get", "setup_rc": 0, "get_bytes": 0, "data_verified": False}, "data_mismatch", "0 bytes"),
    ({"phase": "setup", "setup_rc": -1}, "setup_failed", "INTERNAL_ERROR"),
    ({"phase": "setup"}, "client_crashed", "before setup"),
    ({"phase": "get", "setup_rc": 0, "timed_out": True}, "timeout", "get step"),
])
def test_other_failures(result, failure, words):
    got, message = classify_failure(result, "", "tcp")
    assert got == failure
    assert words in message


def test_the_last_result_line_wins():
    out = "noise\nMOONCAKE_STORE_CHECK {\"phase\": \"setup\"}\nI1127 glog\nMOONCAKE_STORE_CHECK {\"phase\": \"done\"}\n"
    assert parse_client_output(out) == {"phase": "done"}


@pytest.mark.parametrize("text, host, port", [
    ("10.0.0.1:50052", "10.0.0.1", 50052),
    ("master", "master", 50052),
    ("[fd00::1]:9", "fd00::1", 9),
])
def test_split_host_port(text, host, port):
    assert split_host_port(text, 50052) == (host, port)


def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def params(**extra):
    base = dict(mode="roundtrip", master_server_address="127.0.0.1:%d" % closed_port(),
                metadata_server="P2PHANDSHAKE", protocol="tcp", device_name="", key="k",
                object_size_bytes=1024, global_segment_size_bytes=1 << 20, local_buffer_size_bytes=1 << 20,
                connect_timeout_s=1, setup_timeout_s=2, op_timeout_s=2, wait_timeout_s=1, hold_s=0,
                ack_linger_s=0, log_lines=5, python=sys.executable, environment={}, local_hostname=None)
    base.update(extra)
    return base


def test_unreachable_master_fails_in_a_second_not_ninety():
    started = time.monotonic()
    ok, data = store_check(params(), run=pytest.fail)
    assert not ok
    assert data["failure"] == "master_unreachable"
    assert time.monotonic() - started < 2


def test_unreachable_metadata_server_is_named():
    master = socket.socket()
    master.bind(("127.0.0.1", 0))
    master.listen(1)
    try:
        ok, data = store_check(params(master_server_address="127.0.0.1:%d" % master.getsockname()[1],
                                      metadata_server="http://127.0.0.1:%d/metadata" % closed_port()),
                               run=pytest.fail)
    finally:
        master.close()
    assert not ok and data["failure"] == "metadata_unreachable"


def test_reachable_master_runs_the_client_with_a_bounded_budget():
    master = socket.socket()
    master.bind(("127.0.0.1", 0))
    master.listen(1)
    seen = {}

    def fake_run(python, client_params, environment, timeout):
        seen.update(python=python, params=client_params, environment=environment, timeout=timeout)
        return dict(DONE, setup_ms=1.0, put_ms=2.0, get_ms=3.0), "TcpTransport: listen on port 1", False, 0.1

    try:
        ok, data = store_check(params(master_server_address="127.0.0.1:%d" % master.getsockname()[1]),
                               run=fake_run)
    finally:
        master.close()
    assert ok, data
    assert data["transport"] == "tcp" and data["put_ms"] == 2.0
    assert seen["params"]["local_hostname"] == "127.0.0.1"
    assert seen["environment"]["MC_TCP_BIND_ADDRESS"] == "127.0.0.1"
    assert seen["timeout"] == 2 + 2 + 1 + 0 + 15


def test_client_without_mooncake_reports_the_import_error():
    # A real interpreter without the package: the script's first step fails and says so.
    result, _log, timed_out, _seconds = run_client(sys.executable, dict(params(), setup_timeout_s=2), {}, 20)
    assert not timed_out
    assert "import_error" in result
    assert classify_failure(result, "", "tcp")[0] == "client_import_failed"


def test_hung_client_is_killed_at_the_timeout(tmp_path):
    hung = tmp_path / "python"
    hung.write_text("#!/bin/sh\nsleep 60\n")
    hung.chmod(hung.stat().st_mode | stat.S_IXUSR)
    started = time.monotonic()
    result, _log, timed_out, _seconds = run_client(str(hung), {}, {}, 1)
    assert timed_out and result == {}
    assert time.monotonic() - started < 5
    assert classify_failure(result, "", "tcp", timed_out=True)[0] == "timeout"


def test_a_client_that_hangs_after_its_work_is_not_a_failure():
    assert classify_failure(DONE, log("client-0.3.7-tcp-ok.log"), "tcp", timed_out=True) == (None, None)
