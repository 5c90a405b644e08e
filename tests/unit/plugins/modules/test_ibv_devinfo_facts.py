# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""erdma.pd.ibv_devinfo_facts end to end: parse-only, and the run path through run_command with an
`ibv_devinfo` stand-in on PATH that prints a recorded output (this machine has no RDMA)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat
import time

import pytest

from ansible.module_utils import basic


from ansible_collections.erdma.pd.plugins.modules import ibv_devinfo_facts

# coreutils (timeout bounds every tool the modules run); none of the RDMA tools is installed there.
SYSTEM_PATH = "/usr/bin:/bin"
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "ibv_devinfo")


@pytest.fixture
def run(run_module):
    def run_it(args, check_mode=False):
        return run_module(ibv_devinfo_facts, args, check_mode)

    return run_it


def stand_in(bin_dir, name, script):
    """An executable that plays the real tool: records its argv, then does what `script` says."""
    path = os.path.join(str(bin_dir), name)
    with open(path, "w") as handle:
        handle.write('#!/bin/sh\necho "$@" > "%s.argv"\n%s\n' % (path, script))
    os.chmod(path, stat.S_IRWXU)
    return path


def fixture_path(name):
    return os.path.abspath(os.path.join(FIXTURES, name))


def test_parse_only_sets_rdma_devices(tmp_path, run):
    with open(fixture_path("erdma_guide_verbose.txt")) as handle:
        outcome = run({"output": handle.read()})
    assert not outcome.failed
    devices = outcome.result["ansible_facts"]["rdma_devices"]
    assert devices[0]["ports"][0]["link_gbps"] == 25.0
    assert outcome.result["cmd"] == []
    assert outcome.result["changed"] is False


def test_runs_ibv_devinfo_with_device_and_verbose(tmp_path, monkeypatch, run):
    tool = stand_in(tmp_path, "ibv_devinfo", '/bin/cat "%s"' % fixture_path("erdma_guide_verbose.txt"))
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, SYSTEM_PATH))
    outcome = run({"device": "erdma_0", "verbose": True})
    assert not outcome.failed
    with open(tool + ".argv") as handle:
        assert handle.read().split() == ["-d", "erdma_0", "-v"]
    assert outcome.result["cmd"] == [tool, "-d", "erdma_0", "-v"]
    assert outcome.result["ansible_facts"]["rdma_devices"][0]["hca_id"] == "erdma_0"


def test_no_devices_is_an_empty_list_even_with_a_failing_rc(tmp_path, monkeypatch, run):
    stand_in(tmp_path, "ibv_devinfo", "echo 'No IB devices found' >&2; exit 255")
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, SYSTEM_PATH))
    outcome = run({})
    assert not outcome.failed
    assert outcome.result["ansible_facts"]["rdma_devices"] == []


def test_kernel_without_rdma_is_an_empty_list_with_a_warning(tmp_path, monkeypatch, run):
    stand_in(tmp_path, "ibv_devinfo", '/bin/cat "%s" >&2; exit 255' % fixture_path("no_rdma_kernel_debian12.txt"))
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, SYSTEM_PATH))
    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warnings.append(text))
    outcome = run({"verbose": True})
    assert not outcome.failed
    assert outcome.result["ansible_facts"]["rdma_devices"] == []
    assert warnings and "Function not implemented" in warnings[0]


def test_libibverbs_warnings_on_stderr_do_not_enter_the_facts(tmp_path, monkeypatch, run):
    script = ('echo "libibverbs: Warning: couldn\'t load driver \'libfoo-rdmav34.so\'" >&2\n'
              '/bin/cat "%s"' % fixture_path("rxe_two_hcas.txt"))
    stand_in(tmp_path, "ibv_devinfo", script)
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, SYSTEM_PATH))
    outcome = run({})
    devices = outcome.result["ansible_facts"]["rdma_devices"]
    assert [d["hca_id"] for d in devices] == ["rxe_server", "rxe_client"]
    # stderr used to be appended after stdout, where its lines became fields of the last port.
    last_port = devices[-1]["ports"][-1]
    assert "libibverbs" not in last_port and "libibverbs" not in devices[-1]


def test_unknown_device_fails_with_the_tools_message(tmp_path, monkeypatch, run):
    stand_in(tmp_path, "ibv_devinfo", "echo \"IB device 'erdma_9' wasn't found\" >&2; exit 255")
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, SYSTEM_PATH))
    outcome = run({"device": "erdma_9"})
    assert outcome.failed
    assert "rc=255" in outcome.result["msg"] and "erdma_9" in outcome.result["msg"]


def test_missing_binary_names_the_package(tmp_path, monkeypatch, run):
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, SYSTEM_PATH))
    outcome = run({})
    assert outcome.failed
    assert "ibverbs-utils" in outcome.result["msg"]


def test_cut_output_warns_and_keeps_complete_devices(tmp_path, monkeypatch, run):
    stand_in(tmp_path, "ibv_devinfo", '/bin/cat "%s"' % fixture_path("rxe_verbose_cut.txt"))
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, SYSTEM_PATH))
    outcome = run({"verbose": True})
    assert not outcome.failed
    assert [d["hca_id"] for d in outcome.result["ansible_facts"]["rdma_devices"]] == ["rxe_0"]


def test_one_port_of_a_multi_port_hca(tmp_path, monkeypatch, run):
    tool = stand_in(tmp_path, "ibv_devinfo", '/bin/cat "%s"' % fixture_path("mlx4_port2_only_verbose.txt"))
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, SYSTEM_PATH))
    outcome = run({"device": "mlx4_1", "port": 2, "verbose": True})
    assert not outcome.failed
    with open(tool + ".argv") as handle:
        assert handle.read().split() == ["-d", "mlx4_1", "-i", "2", "-v"]
    device = outcome.result["ansible_facts"]["rdma_devices"][0]
    assert device["port_selected"] == 2 and device["ports"][0]["link_gbps"] == 10.0


def test_a_hanging_ibv_devinfo_is_stopped_by_the_timeout(tmp_path, monkeypatch, run):
    stand_in(tmp_path, "ibv_devinfo", "exec /bin/sleep 60")
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, SYSTEM_PATH))
    started = time.monotonic()
    outcome = run({"timeout": 1})
    assert time.monotonic() - started < 10
    assert outcome.failed
    assert "did not finish within 1 s" in outcome.result["msg"]


@pytest.mark.parametrize("args, words", [
    ({"timeout": 0}, "timeout must be at least 1 second"),
    ({"port": 0}, "port must be a port number from 1 to 255"),
])
def test_settings_without_meaning_are_refused(tmp_path, monkeypatch, run, args, words):
    stand_in(tmp_path, "ibv_devinfo", '/bin/cat "%s"' % fixture_path("erdma_guide.txt"))
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, SYSTEM_PATH))
    outcome = run(args)
    assert outcome.failed and words in outcome.result["msg"]
