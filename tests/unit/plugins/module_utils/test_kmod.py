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


FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")


def fixture(*parts):
    with open(os.path.join(FIXTURES, *parts)) as handle:
        return handle.read()


@pytest.mark.parametrize("text, expected", [
    # What kstrtobool() accepts on every kernel the guide covers (5.15 and later).
    ("Y", True), ("N", False), ("y\n", True), ("1", True), ("0", False), ("on", True), ("off", False),
    ("yes", True), ("no", False), ("ON", True), ('"Y"', True),
    # Junk: the kernel refuses it (and refuses to load the module), so it is no value at all.
    ("maybe", None), ("", None), (None, None), ("2", None), ("o", None), ("ox", None), ('""', None),
    # 5.19+ only ("true"/"false"): Ubuntu 22.04's 5.15 refuses them.
    ("true", None), ("false", None),
])
def test_parse_bool(text, expected):
    assert kmod.parse_bool(text) is expected


class TestFindParam:
    def test_bare_parameter_is_true_as_the_kernel_reads_it(self):
        assert kmod.find_param("options erdma compat_mode\n") == (True, True, None)

    def test_junk_is_set_but_invalid(self):
        assert kmod.find_param("options erdma compat_mode=maybe\n") == (True, None, "maybe")

    def test_not_set(self):
        assert kmod.find_param("options erdma other=1\n") == (False, None, None)

    def test_dash_and_underscore_are_one_name(self):
        assert kmod.find_param("options erdma compat-mode=N\n")[1] is False

    def test_last_one_wins_even_when_it_is_junk(self):
        assert kmod.find_param("options erdma compat_mode=Y\noptions erdma compat_mode=bogus\n")[1] is None


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

    def test_junk_value_is_rewritten_because_the_kernel_would_refuse_to_load(self):
        assert kmod.render_config("options erdma compat_mode=maybe\n", True) == "options erdma compat_mode=Y\n"

    def test_bare_parameter_stays_for_y_and_is_rewritten_for_n(self):
        assert kmod.render_config("options erdma compat_mode\n", True) == "options erdma compat_mode\n"
        assert kmod.render_config("options erdma compat_mode\n", False) == "options erdma compat_mode=N\n"

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

    def test_reasons_name_pid_and_what(self):
        reasons = kmod.describe_in_use([{"pid": 1, "comm": "python3", "device": "/dev/infiniband/uverbs0"}],
                                       [{"pid": 2, "comm": "ib_write_bw", "kind": "pd", "device": "erdma_0"}])
        assert reasons == ["pid 1 (python3) has /dev/infiniband/uverbs0 open",
                           "pid 2 (ib_write_bw) holds a pd on erdma_0 (rdma resource show pd)"]


class TestRdmaResource:
    def test_pd_owners_are_processes_and_kernel_users_are_not(self):
        owners = kmod.parse_rdma_resource(fixture("rdma_resource", "pd_cxgb4_mlx4_iproute2_4.17.txt"))
        assert len(owners) == 8  # 12 PDs, 4 of them the kernel's (pid 0, [ib_srp], [ib_srpt], [ib_core])
        assert {o["comm"] for o in owners} == {"rping"}
        assert owners[0] == {"device": "cxgb4_0", "pid": 30503, "comm": "rping"}
        assert {o["device"] for o in owners} == {"cxgb4_0", "mlx4_0"}

    def test_cm_id_listeners_count_as_owners(self):
        owners = kmod.parse_rdma_resource(fixture("rdma_resource", "cm_id_cxgb4_mlx4_iproute2_4.17.txt"))
        assert [(o["device"], o["pid"]) for o in owners] == [
            ("cxgb4_0", 30485), ("cxgb4_0", 30503), ("cxgb4_0", 30498),
            ("mlx4_0", 30485), ("mlx4_0", 30494), ("mlx4_0", 30492)]

    def test_kernel_qp_without_pid_is_not_an_owner_with_or_without_brackets(self):
        text = fixture("rdma_resource", "qp_kernel_gsi_before_after_bracket_fix.txt")
        assert kmod.parse_rdma_resource(text) == []

    def test_summary_lines_are_not_objects(self):
        assert kmod.parse_rdma_resource(fixture("rdma_resource", "summary_cxgb4_mlx4_iproute2_4.17.txt")) == []

    def test_newer_layout_dev_users_pid_comm(self):
        # iproute2 5.x+ prints `dev <name>` for PDs (res-pd.c: print_dev, users, pid, comm, ctxn, pdn).
        owners = kmod.parse_rdma_resource("dev erdma_0 users 2 pid 4242 comm python3 ctxn 0 pdn 3\n"
                                          "dev erdma_0 users 0 comm [ib_core] pdn 1\n")
        assert owners == [{"device": "erdma_0", "pid": 4242, "comm": "python3"}]

    def test_only_erdma_devices_count_and_each_process_once(self):
        pd = fixture("rdma_resource", "pd_cxgb4_mlx4_iproute2_4.17.txt").replace("mlx4_0", "erdma_0")
        cm_id = fixture("rdma_resource", "cm_id_cxgb4_mlx4_iproute2_4.17.txt").replace("mlx4_0", "erdma_0")
        runner = Runner({("/usr/sbin/rdma", "resource", "show", "pd"): (0, pd, ""),
                         ("/usr/sbin/rdma", "resource", "show", "cm_id"): (0, cm_id, "")})
        owners, notes = kmod.find_rdma_resource_users(runner, "/usr/sbin/rdma")
        assert notes == []
        assert [(o["pid"], o["kind"]) for o in owners] == [
            (30494, "pd"), (30488, "pd"), (30489, "pd"), (30492, "pd"), (30485, "cm_id")]
        assert all(o["device"] == "erdma_0" for o in owners)

    def test_idle_host_and_a_master_that_holds_nothing(self):
        runner = Runner({("rdma", "resource", "show", "pd"): (0, "dev erdma_0 users 0 comm [ib_core] pdn 1\n", ""),
                         ("rdma", "resource", "show", "cm_id"): (0, "", "")})
        assert kmod.find_rdma_resource_users(runner, "rdma") == ([], [])

    def test_without_the_tool_the_note_says_so(self):
        runner = Runner()
        owners, notes = kmod.find_rdma_resource_users(runner, None)
        assert owners == [] and "not installed" in notes[0] and runner.calls == []

    def test_a_failing_or_hung_tool_is_noted(self):
        runner = Runner({("rdma", "resource", "show", "pd"): (124, "", ""),
                         ("rdma", "resource", "show", "cm_id"): (1, "", "error: Operation not supported")})
        owners, notes = kmod.find_rdma_resource_users(runner, "rdma")
        assert owners == []
        assert "timed out" in notes[0] and "Operation not supported" in notes[1]


class TestStaleCore:
    """After an OFED install the RDMA core on disk differs from the one in memory."""

    def sysfs(self, root, **srcversions):
        for name, srcversion in srcversions.items():
            (root / "module" / name).mkdir(parents=True)
            if srcversion:
                (root / "module" / name / "srcversion").write_text(srcversion + "\n")
        return str(root)

    def runner(self, depends="ib_core,ib_uverbs", **on_disk):
        answers = {("modinfo", "-F", "depends", "erdma"): (0, depends + "\n", "") if depends is not None
                   else (1, "", "modinfo: ERROR: Module erdma not found.")}
        for name, srcversion in on_disk.items():
            answers[("modinfo", "-F", "srcversion", name)] = (0, srcversion + "\n", "")
        return Runner(answers)

    def test_ofed_replaced_ib_core_on_disk(self, tmp_path):
        root = self.sysfs(tmp_path, ib_core="7B0C9E3F", ib_uverbs="AAAA")
        reasons = kmod.find_stale_core(self.runner(ib_core="1A2B3C4D", ib_uverbs="AAAA"), sysfs_root=root)
        assert reasons == ["ib_core in memory (srcversion 7B0C9E3F) is not the ib_core on disk (srcversion 1A2B3C4D)"]

    def test_same_core_is_not_stale(self, tmp_path):
        root = self.sysfs(tmp_path, ib_core="7B0C9E3F")
        assert kmod.find_stale_core(self.runner(ib_core="7B0C9E3F"), sysfs_root=root) == []

    def test_unloaded_dependencies_load_from_disk(self, tmp_path):
        runner = self.runner(ib_core="1A2B3C4D")
        assert kmod.find_stale_core(runner, installed_now=True, sysfs_root=str(tmp_path)) == []

    def test_uncomparable_core_counts_only_right_after_an_install(self, tmp_path):
        root = self.sysfs(tmp_path, ib_core=None)
        assert kmod.find_stale_core(self.runner(ib_core="1A2B3C4D"), sysfs_root=root) == []
        reasons = kmod.find_stale_core(self.runner(ib_core="1A2B3C4D"), installed_now=True, sysfs_root=root)
        assert len(reasons) == 1 and "cannot be compared" in reasons[0]

    def test_no_module_on_disk_after_an_install_is_stale(self, tmp_path):
        assert kmod.find_stale_core(self.runner(depends=None), sysfs_root=str(tmp_path)) == []
        assert kmod.find_stale_core(self.runner(depends=None), installed_now=True, sysfs_root=str(tmp_path))


class TestKernelLog:
    def test_recorded_symbol_version_failure_is_found(self):
        lines = kmod.kernel_load_errors(fixture("kernel_log", "a867_symbol_version_ubuntu12.04.txt"), "a867")
        assert lines == ["[   13.418792] a867: disagrees about version of symbol dvb_usb_device_init",
                         "[   13.418798] a867: Unknown symbol dvb_usb_device_init (err -22)"]

    def test_other_modules_lines_are_not_ours(self):
        text = fixture("kernel_log", "slcan_modprobe_exec_format_error.txt")
        assert kmod.kernel_load_errors(text, "erdma") == []
        assert kmod.kernel_load_errors(text, "slcan") == ["slcan: disagrees about version of symbol module_layout"]


LOADED_N = {"loaded": True, "value": False, "raw": "N", "refcnt": 0}
LOADED_Y = {"loaded": True, "value": True, "raw": "Y", "refcnt": 0}
ABSENT = {"loaded": False, "value": None, "raw": None, "refcnt": None}
BUSY = ["pid 7 (vllm) has /dev/infiniband/uverbs0 open"]
STALE = ["ib_core in memory (srcversion A) is not the ib_core on disk (srcversion B)"]


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
    (LOADED_N, [], {"stale_core": STALE}, kmod.DEFER),                 # fresh OFED: never rmmod
    (LOADED_N, BUSY, {"stale_core": STALE, "allow_reload_in_use": True}, kmod.DEFER),
    (ABSENT, [], {"stale_core": STALE}, kmod.DEFER),                   # nor modprobe against the old core
    (LOADED_Y, [], {"stale_core": STALE}, kmod.NONE),                  # nothing to change live
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
    kmod.reload(runner, True, False)
    assert runner.calls == [["rmmod", "erdma"], ["modprobe", "erdma", "compat_mode=Y"]]


def test_reload_stops_when_rmmod_fails():
    runner = Runner({("rmmod", "erdma"): (1, "", "rmmod: ERROR: Module erdma is in use")})
    with pytest.raises(kmod.KmodError, match="is in use"):
        kmod.reload(runner, True, False)
    assert runner.calls == [["rmmod", "erdma"]]  # no modprobe after a failed rmmod


def test_reload_that_cannot_load_puts_the_old_value_back():
    runner = Runner({("modprobe", "erdma", "compat_mode=Y"): (
        1, "", "modprobe: ERROR: could not insert 'erdma': Invalid argument")})
    with pytest.raises(kmod.KmodError, match="loaded again with compat_mode=N"):
        kmod.reload(runner, True, False)
    assert runner.calls[-1] == ["modprobe", "erdma", "compat_mode=N"]


def test_reload_that_cannot_load_at_all_says_the_module_is_gone():
    error = (1, "", "modprobe: ERROR: could not insert 'erdma': Invalid argument")
    runner = Runner({("modprobe", "erdma", "compat_mode=Y"): error, ("modprobe", "erdma", "compat_mode=N"): error})
    with pytest.raises(kmod.KmodError, match="NOT loaded now"):
        kmod.reload(runner, True, False)


def test_load_failure_is_reported():
    runner = Runner({("modprobe", "erdma", "compat_mode=Y"): (1, "", "modprobe: FATAL: Module erdma not found")})
    with pytest.raises(kmod.KmodError, match="not found"):
        kmod.load(runner, True)


def test_a_hung_modprobe_says_it_timed_out():
    runner = Runner({("modprobe", "erdma", "compat_mode=Y"): (124, "", "")})
    with pytest.raises(kmod.KmodError, match="timed out"):
        kmod.load(runner, True)
