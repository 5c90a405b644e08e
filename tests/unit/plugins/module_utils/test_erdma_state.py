# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""eRDMA driver state: eadm parsers (tests/unit/fixtures/eadm/SOURCES.md) and the file readers on a
directory tree laid out like a host's /proc, /sys, /etc and /dev."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.erdma.pd.plugins.module_utils import erdma_state
from ansible_collections.erdma.pd.plugins.module_utils import kmod

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "eadm")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def write(root, path, text=""):
    full = os.path.join(str(root), path.lstrip("/"))
    if not os.path.isdir(os.path.dirname(full)):
        os.makedirs(os.path.dirname(full))
    with open(full, "w") as handle:
        handle.write(text)


def test_eadm_stat_line_quoted_by_the_exporter_parses_to_an_int():
    assert erdma_state.parse_eadm_stat(fixture("stat_exporter_quote.txt")) == {"listen_create_cnt": 0}


def test_eadm_stat_every_driver_counter_is_an_int():
    stats = erdma_state.parse_eadm_stat(fixture("stat_reconstructed.txt"))
    assert len(stats) == 44
    assert stats["connect_failed_cnt"] == 2
    assert all(isinstance(value, int) for value in stats.values())


def test_eadm_stat_skips_lines_that_are_not_counters():
    assert erdma_state.parse_eadm_stat("Device erdma_0 statistics:\n\nreject_cnt : 3\nnote: 1 2\n") == {"reject_cnt": 3}


def test_eadm_version_from_the_exporters_quote():
    assert erdma_state.parse_eadm_version(fixture("ver_exporter_quote.txt")) == "0.2.38"
    assert erdma_state.parse_eadm_version("eadm: command failed") is None


def test_last_modprobe_option_wins_and_comments_do_not_count():
    files = [
        ("/etc/modprobe.d/a.conf", "options erdma compat_mode=N\n"),
        ("/etc/modprobe.d/erdma.conf", "# options erdma compat_mode=N\noptions erdma compat_mode=Y other=1\n"),
        ("/etc/modprobe.d/z.conf", "options mlx5_core foo=1\n"),
    ]
    assert erdma_state.parse_modprobe_compat_mode(files) == (True, "/etc/modprobe.d/erdma.conf")
    assert erdma_state.parse_modprobe_compat_mode([]) == (None, None)


def test_host_with_the_guides_setup(tmp_path):
    write(tmp_path, "/proc/modules", "erdma 155648 0 - Live 0x0000000000000000\nib_core 1 1 erdma, Live 0x0\n")
    write(tmp_path, "/sys/module/erdma/parameters/compat_mode", "Y\n")
    write(tmp_path, "/sys/module/erdma/version", "0.2.38\n")
    write(tmp_path, "/etc/modprobe.d/erdma.conf", "options erdma compat_mode=Y\n")
    write(tmp_path, "/dev/infiniband/rdma_cm")
    write(tmp_path, "/dev/infiniband/uverbs0")
    state = erdma_state.read_host_state(str(tmp_path))
    assert state == {
        "loaded": True,
        "version": "0.2.38",
        "version_source": "/sys/module/erdma/version",
        "compat_mode": True,
        "compat_mode_persistent": True,
        "compat_mode_persistent_file": "/etc/modprobe.d/erdma.conf",
        "rdma_cm_present": True,
        "uverbs_devices": ["uverbs0"],
    }


def test_host_without_the_driver(tmp_path):
    write(tmp_path, "/proc/modules", "ib_core 1 0 - Live 0x0\n")
    state = erdma_state.read_host_state(str(tmp_path))
    assert state["loaded"] is False
    assert state["compat_mode"] is None
    assert state["compat_mode_persistent"] is None
    assert state["rdma_cm_present"] is False
    assert state["uverbs_devices"] == []


@pytest.mark.parametrize("value", ["Y", "N", "1", "0", "on", "off", "yes", "maybe", "", "true", "2", '"N"'])
def test_facts_and_compat_mode_module_read_every_value_alike(value):
    # One parser (kmod.parse_bool): erdma_facts must not call a value true or false that
    # erdma_compat_mode would rewrite as invalid, nor the other way round.
    text = "options erdma compat_mode=%s\n" % value
    assert erdma_state.parse_modprobe_compat_mode([("/etc/modprobe.d/x.conf", text)])[0] is kmod.persistent_value(text)


def test_junk_is_no_value_but_names_the_file_that_sets_it():
    files = [("/etc/modprobe.d/erdma.conf", "options erdma compat_mode=Y\n"),
             ("/etc/modprobe.d/zz.conf", "options erdma compat_mode=maybe\n")]
    assert erdma_state.parse_modprobe_compat_mode(files) == (None, "/etc/modprobe.d/zz.conf")
