# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""erdma.pd.erdma_compat_mode end to end, with the kernel simulated at the run_command boundary.

FakeKernel answers rmmod/modprobe/modinfo/rdma/dmesg the way the kernel, kmod and iproute2 do
(their real messages: see tests/unit/fixtures/{kernel_log,rdma_resource}/SOURCES.md) and keeps a
fake /sys/module in a temporary directory, so the module's own re-read of sysfs after a reload
sees what the commands did. Like the real loader, it refuses to load erdma while the ib_core in
memory is not the one erdma was built against (the state a fresh MLNX OFED install leaves).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.erdma.pd.plugins.module_utils import kmod
from ansible_collections.erdma.pd.plugins.modules import erdma_compat_mode

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")
TIMEOUT = "/usr/bin/timeout"
RDMA = "/usr/sbin/rdma"
INSERT_EINVAL = "modprobe: ERROR: could not insert 'erdma': Invalid argument"


def fixture(*parts):
    with open(os.path.join(FIXTURES, *parts)) as handle:
        return handle.read()


class Exit(Exception):
    def __init__(self, result, failed):
        super(Exit, self).__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


class FakeKernel:
    def __init__(self, root, value=None, rmmod_rc=0, accepts_param=True, core_in_memory="CORE1",
                 core_on_disk="CORE1", resources=None, modprobe_failures=0):
        self.root = root
        self.calls = []
        self.timeouts = []
        self.rmmod_rc = rmmod_rc
        self.accepts_param = accepts_param
        self.core_on_disk = core_on_disk
        self.resources = resources or {}
        self.modprobe_failures = modprobe_failures
        self.log = []
        if core_in_memory:
            (root / "module" / "ib_core").mkdir(parents=True)
            (root / "module" / "ib_core" / "srcversion").write_text(core_in_memory + "\n")
        if value is not None:
            self._load(value)

    @property
    def module_dir(self):
        return self.root / "module" / "erdma"

    def _load(self, value):
        params = self.module_dir / "parameters"
        params.mkdir(parents=True)
        (params / "compat_mode").write_text(value + "\n")
        (self.module_dir / "refcnt").write_text("0\n")

    def value(self):
        path = self.module_dir / "parameters" / "compat_mode"
        return path.read_text().strip() if path.exists() else None

    def core_in_memory(self):
        path = self.root / "module" / "ib_core" / "srcversion"
        return path.read_text().strip() if path.exists() else None

    def __call__(self, argv):
        if argv[:2] == [TIMEOUT, "--kill-after=5"]:
            self.timeouts.append(int(argv[2]))
            argv = argv[3:]
        else:
            raise AssertionError("ran without a timeout: %r" % (argv,))
        self.calls.append(list(argv))
        if argv == ["modinfo", "-F", "depends", "erdma"]:
            return 0, "ib_core,ib_uverbs\n", ""
        if argv == ["modinfo", "-F", "srcversion", "ib_core"]:
            return 0, self.core_on_disk + "\n", ""
        if argv == ["modinfo", "-F", "srcversion", "ib_uverbs"]:
            return 0, "UVERBS\n", ""
        if argv[:3] == [RDMA, "resource", "show"]:
            return 0, self.resources.get(argv[3], ""), ""
        if argv == ["dmesg"]:
            return 0, "".join(line + "\n" for line in self.log), ""
        if argv == ["rmmod", "erdma"]:
            if self.rmmod_rc:
                return self.rmmod_rc, "", "rmmod: ERROR: Module erdma is in use"
            for path in sorted(self.module_dir.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            self.module_dir.rmdir()
            return 0, "", ""
        if argv[:2] == ["modprobe", "erdma"]:
            if self.module_dir.exists():
                return 0, "", ""  # modprobe of a loaded module changes nothing, as the real one
            if self.modprobe_failures:
                self.modprobe_failures -= 1
                return 1, "", INSERT_EINVAL
            if self.core_in_memory() not in (None, self.core_on_disk):
                # The loader's own words (kernel/module/version.c, main.c), then kmod's.
                self.log += ["[ 812.503311] erdma: disagrees about version of symbol ib_register_device",
                             "[ 812.503318] erdma: Unknown symbol ib_register_device (err -22)"]
                return 1, "", INSERT_EINVAL
            value = "N"
            for arg in argv[2:]:
                if arg.startswith("compat_mode=") and self.accepts_param:
                    value = arg.split("=", 1)[1]
            self._load(value)
            return 0, "", ""
        raise AssertionError("unexpected command %r" % (argv,))

    def commands(self):
        """The commands that change something (reading ones filtered out)."""
        return [c for c in self.calls if c[0] in ("rmmod", "modprobe")]


@pytest.fixture
def env(tmp_path, monkeypatch):
    sysfs = tmp_path / "sys"
    sysfs.mkdir()
    proc = tmp_path / "proc"
    proc.mkdir()
    monkeypatch.setattr(kmod, "SYSFS_ROOT", str(sysfs))
    monkeypatch.setattr(kmod, "PROC_ROOT", str(proc))

    def exit_json(self, **result):
        raise Exit(result, failed=False)

    def fail_json(self, **result):
        raise Exit(result, failed=True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    tools = {"timeout": TIMEOUT, "rdma": RDMA}

    class Env:
        config = tmp_path / "modprobe.d" / "erdma.conf"
        proc_root = proc

        def kernel(self, rdma_installed=True, **kwargs):
            fake = FakeKernel(sysfs, **kwargs)
            monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda module, argv, **kw: fake(argv))
            found = dict(tools) if rdma_installed else {"timeout": TIMEOUT}
            monkeypatch.setattr(basic.AnsibleModule, "get_bin_path",
                                lambda module, name, *a, **kw: found.get(name))
            return fake

        def run(self, check_mode=False, diff=False, **args):
            args.setdefault("config_path", str(self.config))
            if check_mode:
                args["_ansible_check_mode"] = True
            if diff:
                args["_ansible_diff"] = True
            with patch_module_args(args):
                with pytest.raises(Exit) as caught:
                    erdma_compat_mode.main()
            return caught.value

        def open_uverbs(self, pid, comm):
            fd = proc / str(pid) / "fd"
            fd.mkdir(parents=True)
            (proc / str(pid) / "comm").write_text(comm + "\n")
            (fd / "3").symlink_to("/dev/infiniband/uverbs0")

    return Env()


# An ib_write_bw server on erdma_0 as `rdma resource show pd` lists it (iproute2 5.x+ layout), with
# the kernel's own PD next to it; and the collection's Mooncake master, which holds nothing.
PD_IB_WRITE_BW = "dev erdma_0 users 3 pid 5150 comm ib_write_bw ctxn 0 pdn 4\ndev erdma_0 users 1 comm [ib_core] pdn 1\n"


def test_loaded_with_n_is_reloaded_and_the_file_written(env):
    kernel = env.kernel(value="N")
    out = env.run()
    assert not out.failed, out.result
    assert out.result["changed"] is True
    assert out.result["action"] == "reload"
    assert kernel.commands() == [["rmmod", "erdma"], ["modprobe", "erdma", "compat_mode=Y"]]
    assert kernel.value() == "Y"
    assert out.result["live_after"]["value"] is True
    assert env.config.read_text().endswith("options erdma compat_mode=Y\n")
    assert out.result["persistent_before"] is None and out.result["persistent_after"] is True


def test_second_run_changes_nothing(env):
    kernel = env.kernel(value="N")
    env.run()
    again = env.run()
    assert again.result["changed"] is False
    assert again.result["action"] == "none"
    assert kernel.commands() == [["rmmod", "erdma"], ["modprobe", "erdma", "compat_mode=Y"]]


def test_loaded_with_y_and_file_right_does_nothing(env):
    env.config.parent.mkdir()
    env.config.write_text("options erdma compat_mode=Y\n")
    kernel = env.kernel(value="Y")
    out = env.run()
    assert out.result["changed"] is False
    assert out.result["action"] == "none"
    assert kernel.calls == []  # nothing to decide, so nothing is asked
    assert env.config.read_text() == "options erdma compat_mode=Y\n"


def test_not_loaded_is_loaded_with_the_option(env):
    kernel = env.kernel(value=None)
    out = env.run()
    assert out.result["action"] == "load"
    assert kernel.commands() == [["modprobe", "erdma", "compat_mode=Y"]]
    assert kernel.value() == "Y"


def test_in_use_by_a_pd_owner_is_refused_with_a_message_that_says_what_to_do(env):
    kernel = env.kernel(value="N", resources={"pd": PD_IB_WRITE_BW})
    out = env.run()
    assert out.failed
    msg = out.result["msg"]
    assert "pid 5150 (ib_write_bw) holds a pd on erdma_0" in msg and "compat_mode=N" in msg
    assert "erdma_driver_allow_live_reload" in msg and "reboot" in msg
    assert kernel.commands() == []
    assert kernel.value() == "N"
    # The persistent half is still done, so a reboot applies it.
    assert env.config.read_text().endswith("options erdma compat_mode=Y\n")
    assert out.result["changed"] is True


def test_in_use_by_a_recorded_cm_id_listener_is_refused(env):
    cm_id = fixture("rdma_resource", "cm_id_cxgb4_mlx4_iproute2_4.17.txt").replace("mlx4_0", "erdma_0")
    kernel = env.kernel(value="N", resources={"cm_id": cm_id})
    out = env.run()
    assert out.failed
    assert "pid 30485 (rping) holds a cm_id on erdma_0" in out.result["msg"]
    assert "cxgb4" not in out.result["msg"]  # another driver's users are not erdma's
    assert kernel.commands() == []


def test_in_use_by_an_open_uverbs_device_is_refused(env):
    kernel = env.kernel(value="N", rdma_installed=False)
    env.open_uverbs(4242, "ib_write_bw")
    out = env.run()
    assert out.failed
    assert "pid 4242 (ib_write_bw) has /dev/infiniband/uverbs0 open" in out.result["msg"]
    assert out.result["in_use_notes"] and "not installed" in out.result["in_use_notes"][0]
    assert kernel.commands() == []


def test_a_process_that_holds_no_rdma_resource_does_not_block(env):
    # The guide's topology: the Mooncake master runs on the prefill host and speaks TCP only. It has no
    # uverbs device open and owns nothing in `rdma resource show`, so the switch goes ahead.
    master = env.proc_root / "412"
    (master / "fd").mkdir(parents=True)
    (master / "comm").write_text("mooncake_master\n")
    (master / "fd" / "3").symlink_to("/dev/null")
    kernel = env.kernel(value="N", resources={"pd": "dev erdma_0 users 1 comm [ib_core] pdn 1\n"})
    out = env.run()
    assert not out.failed, out.result
    assert out.result["action"] == "reload" and out.result["in_use"] == []
    assert kernel.value() == "Y"
    assert [RDMA, "resource", "show", "pd"] in kernel.calls and [RDMA, "resource", "show", "cm_id"] in kernel.calls


def test_in_use_is_reloaded_when_allowed(env):
    kernel = env.kernel(value="N", resources={"pd": PD_IB_WRITE_BW})
    out = env.run(allow_reload_in_use=True)
    assert not out.failed
    assert out.result["action"] == "reload"
    assert out.result["in_use"] == ["pid 5150 (ib_write_bw) holds a pd on erdma_0 (rdma resource show pd)"]
    assert kernel.value() == "Y"


def test_in_use_deferred_to_a_reboot(env):
    kernel = env.kernel(value="N", resources={"pd": PD_IB_WRITE_BW})
    out = env.run(on_in_use="defer")
    assert not out.failed
    assert out.result["action"] == "defer"
    assert out.result["reboot_required"] is True
    assert kernel.commands() == []
    assert env.config.exists()


class TestAfterAFreshInstall:
    """OFED replaced ib_core on disk; the old one is still in memory until the reboot."""

    def test_loaded_driver_is_left_loaded_and_the_switch_deferred(self, env):
        kernel = env.kernel(value="N", core_in_memory="CORE1", core_on_disk="CORE2")
        out = env.run()
        assert not out.failed, out.result
        assert out.result["action"] == "defer" and out.result["reboot_required"] is True
        assert kernel.commands() == []  # no rmmod: erdma stays loaded
        assert kernel.value() == "N"
        assert "ib_core in memory (srcversion CORE1) is not the ib_core on disk (srcversion CORE2)" in out.result[
            "reason"]
        assert "disagrees about version of symbol" in out.result["reason"]
        assert env.config.read_text().endswith("options erdma compat_mode=Y\n")  # applies at boot

    def test_even_when_a_live_reload_in_use_is_allowed(self, env):
        kernel = env.kernel(value="N", core_on_disk="CORE2", resources={"pd": PD_IB_WRITE_BW})
        out = env.run(allow_reload_in_use=True)
        assert out.result["action"] == "defer" and kernel.commands() == []

    def test_absent_driver_is_not_loaded_against_the_old_core(self, env):
        kernel = env.kernel(value=None, core_on_disk="CORE2")
        out = env.run()
        assert out.result["action"] == "defer" and out.result["reboot_required"] is True
        assert kernel.commands() == []

    def test_installed_now_defers_when_the_core_cannot_be_compared(self, env):
        kernel = env.kernel(value="N")
        (kernel.root / "module" / "ib_core" / "srcversion").unlink()
        assert env.run(check_mode=True).result["action"] == "reload"
        out = env.run(installed_now=True)
        assert out.result["action"] == "defer" and "cannot be compared" in out.result["reason"]
        assert kernel.commands() == []

    def test_same_core_after_an_install_switches_live(self, env):
        kernel = env.kernel(value="N", core_in_memory="CORE2", core_on_disk="CORE2")
        out = env.run(installed_now=True)
        assert out.result["action"] == "reload" and kernel.value() == "Y"

    def test_a_reload_that_meets_the_old_core_anyway_restores_the_driver(self, env, monkeypatch):
        # The comparison saw nothing (e.g. another tool replaced ib_core after it ran): the loader
        # refuses erdma; the module loads it back, fails, and quotes the kernel.
        kernel = env.kernel(value="N", core_in_memory="CORE1", core_on_disk="CORE1")
        monkeypatch.setattr(kmod, "find_stale_core", lambda *a, **kw: [])
        kernel.core_on_disk = "CORE2"
        out = env.run()
        assert out.failed
        msg = out.result["msg"]
        assert INSERT_EINVAL in msg
        assert "erdma: disagrees about version of symbol ib_register_device" in msg
        assert "reboot" in msg
        assert out.result["kernel_messages"] == [  # once per attempt, as the kernel logs them
            "[ 812.503311] erdma: disagrees about version of symbol ib_register_device",
            "[ 812.503318] erdma: Unknown symbol ib_register_device (err -22)"] * 2
        # Both attempts met the same old core: the module is gone and the result says a reboot is needed.
        assert kernel.commands() == [["rmmod", "erdma"], ["modprobe", "erdma", "compat_mode=Y"],
                                     ["modprobe", "erdma", "compat_mode=N"]]
        assert "NOT loaded now" in msg and out.result["reboot_required"] is True


def test_a_failed_modprobe_after_rmmod_puts_the_driver_back(env):
    kernel = env.kernel(value="N", modprobe_failures=1)
    out = env.run()
    assert out.failed
    assert kernel.commands() == [["rmmod", "erdma"], ["modprobe", "erdma", "compat_mode=Y"],
                                 ["modprobe", "erdma", "compat_mode=N"]]
    assert kernel.value() == "N"  # loaded again with its old value
    assert "loaded again with compat_mode=N" in out.result["msg"]
    assert out.result["reboot_required"] is True


def test_every_command_runs_under_timeout(env):
    kernel = env.kernel(value="N")
    env.run(timeout=17)
    assert kernel.timeouts and set(kernel.timeouts) == {17}
    assert env.run(timeout=0).failed


def test_no_temporary_file_is_left_when_the_move_fails(env, monkeypatch):
    env.kernel(value="Y")

    def broken_move(module, src, dest, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(basic.AnsibleModule, "atomic_move", broken_move)
    out = env.run()
    assert out.failed and "No space left" in out.result["msg"]
    assert [p.name for p in env.config.parent.iterdir()] == []


def test_junk_in_the_file_is_rewritten(env):
    env.config.parent.mkdir()
    env.config.write_text("options erdma compat_mode=maybe\n")
    env.kernel(value="Y")
    out = env.run()
    assert out.result["persistent_before"] is None and out.result["persistent_after"] is True
    assert env.config.read_text() == "options erdma compat_mode=Y\n"


def test_check_mode_runs_nothing_writes_nothing_and_reports_the_diff(env):
    kernel = env.kernel(value="N")
    out = env.run(check_mode=True, diff=True)
    assert out.result["changed"] is True
    assert out.result["commands"] == [["rmmod", "erdma"], ["modprobe", "erdma", "compat_mode=Y"]]
    assert kernel.commands() == []
    assert not env.config.exists()
    file_diff, live_diff = out.result["diff"]
    assert file_diff["before"] == "" and "options erdma compat_mode=Y" in file_diff["after"]
    assert live_diff["before"] == "N\n" and live_diff["after"] == "Y\n"


def test_live_false_manages_only_the_file(env):
    kernel = env.kernel(value=None)
    out = env.run(live=False)
    assert out.result["action"] == "skip"
    assert out.result["changed"] is True
    assert kernel.calls == []
    assert env.run(live=False).result["changed"] is False


def test_rmmod_failure_fails_with_the_kernels_words(env):
    kernel = env.kernel(value="N", rmmod_rc=1)
    out = env.run()
    assert out.failed
    assert "Module erdma is in use" in out.result["msg"]
    assert kernel.value() == "N"


def test_a_driver_that_ignores_the_option_is_caught(env):
    env.kernel(value="N", accepts_param=False)
    out = env.run()
    assert out.failed
    assert "expected Y" in out.result["msg"]
