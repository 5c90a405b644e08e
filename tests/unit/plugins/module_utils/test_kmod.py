# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The compat-mode decision of module_utils/kmod.py, with commands faked at the runner boundary."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.erdma.pd.plugins.module_utils import kmod


class Runner:
    """Records argv lists and answers from a table {tuple(argv): (rc, out, err)}."""

    def __init__(self, answers=None):
        self.answers = answers or {}
        self.calls = []

    def __call__(self, argv):
        self.calls.append(list(argv))
        return self.answers.get(tuple(argv), (0, "", ""))


def make_sysfs(root, value=None, refcnt=0):
    """A /sys/module/erdma tree as a loaded driver shows it; value None = module not loaded."""
    if value is None:
        return str(root)
    params = root / "module" / "erdma" / "parameters"
    params.mkdir(parents=True)
    (params / "compat_mode").write_text(value + "\n")
    (root / "module" / "erdma" / "refcnt").write_text("%d\n" % refcnt)
    return str(root)


@pytest.mark.parametrize("text, expected", [
    ("Y", True), ("N", False), ("y\n", True), ("1", True), ("0", False), ("on", True), ("off", False),
    ("maybe", None), ("", None), (None, None),
])
def test_parse_bool(text, expected):
    assert kmod.parse_bool(text) is expected


class TestRenderConfig:
    def test_missing_file_gets_header_and_the_guides_line(self):
        text = kmod.render_config(None, True)
        assert text.startswith("# Ansible managed")
        assert text.endswith("options erdma compat_mode=Y\n")
        assert kmod.persistent_value(text) is True

    def test_the_guides_line_is_left_alone(self):
        # What `echo 'options erdma compat_mode=Y' >> /etc/modprobe.d/erdma.conf` leaves behind.
        assert kmod.render_config("options erdma compat_mode=Y\n", True) == "options erdma compat_mode=Y\n"

    def test_equivalent_spelling_is_not_churned(self):
        assert kmod.render_config("options erdma compat_mode=1\n", True) == "options erdma compat_mode=1\n"

    def test_wrong_value_is_rewritten_in_place_keeping_other_options_and_comments(self):
        before = "# site tuning\noptions erdma compat_mode=N other=5 # from the installer\n"
        after = kmod.render_config(before, True)
        assert after == "# site tuning\noptions erdma compat_mode=Y other=5 # from the installer\n"

    def test_every_duplicate_is_fixed_so_the_last_one_cannot_win_back(self):
        before = "options erdma compat_mode=Y\noptions erdma compat_mode=N\n"
        after = kmod.render_config(before, True)
        assert after == "options erdma compat_mode=Y\noptions erdma compat_mode=Y\n"
        assert kmod.persistent_value(before) is False
        assert kmod.persistent_value(after) is True

    def test_line_is_appended_when_only_other_options_exist(self):
        before = "options erdma other=1\noptions mlx5_core x=1"
        after = kmod.render_config(before, True)
        assert after == "options erdma other=1\noptions mlx5_core x=1\noptions erdma compat_mode=Y\n"

    def test_other_modules_compat_mode_is_not_ours(self):
        before = "options erdmax compat_mode=N\n"
        assert kmod.persistent_value(before) is None
        assert kmod.render_config(before, True).endswith("options erdma compat_mode=Y\n")

    def test_commented_out_line_does_not_count(self):
        assert kmod.persistent_value("# options erdma compat_mode=Y\n") is None

    def test_switching_back_to_standard_mode(self):
        assert kmod.render_config("options erdma compat_mode=Y\n", False) == "options erdma compat_mode=N\n"

    def test_rendering_twice_is_stable(self):
        once = kmod.render_config("options erdma other=1\n", True)
        assert kmod.render_config(once, True) == once


class TestReadLive:
    def test_not_loaded(self, tmp_path):
        live = kmod.read_live(make_sysfs(tmp_path))
        assert live == {"loaded": False, "value": None, "raw": None, "refcnt": None}

    @pytest.mark.parametrize("raw, value", [("N", False), ("Y", True)])
    def test_loaded(self, tmp_path, raw, value):
        live = kmod.read_live(make_sysfs(tmp_path, raw, refcnt=3))
        assert live == {"loaded": True, "value": value, "raw": raw, "refcnt": 3}

    def test_loaded_without_the_parameter(self, tmp_path):
        (tmp_path / "module" / "erdma").mkdir(parents=True)
        live = kmod.read_live(str(tmp_path))
        assert live["loaded"] is True and live["value"] is None


class TestInUse:
    def make_proc(self, root, pid, comm, targets):
        fd = root / str(pid) / "fd"
        fd.mkdir(parents=True)
        (root / str(pid) / "comm").write_text(comm + "\n")
        for number, target in enumerate(targets):
            os.symlink(target, str(fd / str(number)))

    def test_open_uverbs_devices_are_found(self, tmp_path):
        self.make_proc(tmp_path, 4242, "python3", ["/dev/null", "/dev/infiniband/uverbs0", "socket:[1]"])
        self.make_proc(tmp_path, 17, "sshd", ["/dev/null"])
        self.make_proc(tmp_path, 900, "ib_write_bw", ["/dev/infiniband/uverbs1", "/dev/infiniband/uverbs1"])
        (tmp_path / "self").mkdir()  # not a pid: ignored
        users = kmod.find_uverbs_users(str(tmp_path))
        assert users == [
            {"pid": 900, "comm": "ib_write_bw", "device": "/dev/infiniband/uverbs1"},
            {"pid": 4242, "comm": "python3", "device": "/dev/infiniband/uverbs0"},
        ]

    def test_rdma_cm_alone_is_not_a_uverbs_user(self, tmp_path):
        self.make_proc(tmp_path, 5, "rping", ["/dev/infiniband/rdma_cm"])
        assert kmod.find_uverbs_users(str(tmp_path)) == []

    def test_processes_by_pattern(self):
        runner = Runner({("pgrep", "-a", "-f", "vllm|mooncake"): (
            0, "311 /opt/venv/bin/python3 /opt/venv/bin/vllm serve /data/models/q\n"
               "412 mooncake_master --rpc_port 50052\n", "")})
        found = kmod.find_processes(runner, ["vllm", "mooncake"])
        assert found == [{"pid": 311, "cmdline": "/opt/venv/bin/python3 /opt/venv/bin/vllm serve /data/models/q"},
                         {"pid": 412, "cmdline": "mooncake_master --rpc_port 50052"}]

    def test_no_process_is_pgrep_rc_1(self):
        runner = Runner({("pgrep", "-a", "-f", "vllm"): (1, "", "")})
        assert kmod.find_processes(runner, ["vllm"]) == []

    def test_pgrep_failure_is_an_error_not_silence(self):
        runner = Runner({("pgrep", "-a", "-f", "vllm"): (2, "", "pgrep: invalid option")})
        with pytest.raises(kmod.KmodError, match="invalid option"):
            kmod.find_processes(runner, ["vllm"])

    def test_no_patterns_runs_nothing(self):
        runner = Runner()
        assert kmod.find_processes(runner, []) == []
        assert runner.calls == []

    def test_reasons_name_pid_and_what(self):
        reasons = kmod.describe_in_use([{"pid": 1, "comm": "python3", "device": "/dev/infiniband/uverbs0"}],
                                       [{"pid": 2, "cmdline": "vllm serve x"}])
        assert reasons == ["pid 1 (python3) has /dev/infiniband/uverbs0 open", "pid 2 runs 'vllm serve x'"]


LOADED_N = {"loaded": True, "value": False, "raw": "N", "refcnt": 0}
LOADED_Y = {"loaded": True, "value": True, "raw": "Y", "refcnt": 0}
ABSENT = {"loaded": False, "value": None, "raw": None, "refcnt": None}
BUSY = ["pid 7 (vllm) has /dev/infiniband/uverbs0 open"]


@pytest.mark.parametrize("live, in_use, kwargs, action", [
    (LOADED_N, [], {}, kmod.RELOAD),                                   # N -> reload
    (LOADED_Y, [], {}, kmod.NONE),                                     # Y -> nothing
    (LOADED_Y, BUSY, {}, kmod.NONE),                                   # Y and busy -> still nothing
    (ABSENT, [], {}, kmod.LOAD),                                       # not loaded -> modprobe with option
    (ABSENT, [], {"load_if_absent": False}, kmod.SKIP),
    (LOADED_N, BUSY, {}, kmod.REFUSE),                                 # in use -> refuse
    (LOADED_N, BUSY, {"allow_reload_in_use": True}, kmod.RELOAD),      # ... unless allowed
    (LOADED_N, BUSY, {"on_in_use": "defer"}, kmod.DEFER),              # ... or left to a reboot
    (LOADED_N, [], {"apply_live": False}, kmod.SKIP),                  # containers: file only
    (dict(LOADED_Y, value=None, raw="?"), [], {}, kmod.RELOAD),        # unreadable value is not Y
])
def test_decide(live, in_use, kwargs, action):
    got, why = kmod.decide(live, True, in_use, **kwargs)
    assert got == action
    assert why


def test_decide_explains_refusal_with_the_busy_processes():
    action, why = kmod.decide(LOADED_N, True, BUSY)
    assert action == kmod.REFUSE
    assert "compat_mode=N" in why and "uverbs0" in why


def test_decide_standard_mode_wanted():
    assert kmod.decide(LOADED_Y, False, [])[0] == kmod.RELOAD
    assert kmod.decide(LOADED_N, False, [])[0] == kmod.NONE


def test_load_runs_modprobe_with_the_option():
    runner = Runner()
    assert kmod.load(runner, True) == [["modprobe", "erdma", "compat_mode=Y"]]
    assert runner.calls == [["modprobe", "erdma", "compat_mode=Y"]]


def test_reload_runs_rmmod_then_modprobe():
    runner = Runner()
    kmod.reload(runner, True)
    assert runner.calls == [["rmmod", "erdma"], ["modprobe", "erdma", "compat_mode=Y"]]


def test_reload_stops_when_rmmod_fails():
    runner = Runner({("rmmod", "erdma"): (1, "", "rmmod: ERROR: Module erdma is in use")})
    with pytest.raises(kmod.KmodError, match="is in use"):
        kmod.reload(runner, True)
    assert runner.calls == [["rmmod", "erdma"]]  # no modprobe after a failed rmmod


def test_load_failure_is_reported():
    runner = Runner({("modprobe", "erdma", "compat_mode=Y"): (1, "", "modprobe: FATAL: Module erdma not found")})
    with pytest.raises(kmod.KmodError, match="not found"):
        kmod.load(runner, True)
