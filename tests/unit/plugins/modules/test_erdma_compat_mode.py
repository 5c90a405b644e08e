# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""erdma.pd.erdma_compat_mode end to end, with the kernel simulated at the run_command boundary.

FakeKernel answers rmmod/modprobe/pgrep the way the kernel and procps do and keeps a fake
/sys/module/erdma in a temporary directory, so the module's own re-read of sysfs after a reload
sees what the commands did.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.erdma.pd.plugins.module_utils import kmod
from ansible_collections.erdma.pd.plugins.modules import erdma_compat_mode


class Exit(Exception):
    def __init__(self, result, failed):
        super(Exit, self).__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


class FakeKernel:
    def __init__(self, root, value=None, processes="", rmmod_rc=0, accepts_param=True):
        self.root = root
        self.calls = []
        self.processes = processes
        self.rmmod_rc = rmmod_rc
        self.accepts_param = accepts_param
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

    def __call__(self, argv, *args, **kwargs):
        self.calls.append(list(argv))
        if argv[0] == "pgrep":
            return (0, self.processes, "") if self.processes else (1, "", "")
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
            value = "N"
            for arg in argv[2:]:
                if arg.startswith("compat_mode=") and self.accepts_param:
                    value = arg.split("=", 1)[1]
            self._load(value)
            return 0, "", ""
        raise AssertionError("unexpected command %r" % (argv,))

    def commands(self):
        return [c for c in self.calls if c[0] != "pgrep"]


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

    class Env:
        config = tmp_path / "modprobe.d" / "erdma.conf"
        proc_root = proc

        def kernel(self, **kwargs):
            fake = FakeKernel(sysfs, **kwargs)
            monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda module, argv, **kw: fake(argv))
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

    return Env()


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
    assert kernel.calls == []  # not even pgrep: nothing to decide
    assert env.config.read_text() == "options erdma compat_mode=Y\n"


def test_not_loaded_is_loaded_with_the_option(env):
    kernel = env.kernel(value=None)
    out = env.run()
    assert out.result["action"] == "load"
    assert kernel.commands() == [["modprobe", "erdma", "compat_mode=Y"]]
    assert kernel.value() == "Y"


def test_in_use_by_a_process_is_refused_with_a_message_that_says_what_to_do(env):
    kernel = env.kernel(value="N", processes="311 /opt/venv/bin/vllm serve /data/models/q\n")
    out = env.run()
    assert out.failed
    msg = out.result["msg"]
    assert "pid 311" in msg and "compat_mode=N" in msg
    assert "erdma_driver_allow_live_reload" in msg and "reboot" in msg
    assert kernel.commands() == []
    assert kernel.value() == "N"
    # The persistent half is still done, so a reboot applies it.
    assert env.config.read_text().endswith("options erdma compat_mode=Y\n")
    assert out.result["changed"] is True


def test_in_use_by_an_open_uverbs_device_is_refused(env):
    kernel = env.kernel(value="N")
    fd = env.proc_root / "4242" / "fd"
    fd.mkdir(parents=True)
    (env.proc_root / "4242" / "comm").write_text("ib_write_bw\n")
    (fd / "3").symlink_to("/dev/infiniband/uverbs0")
    out = env.run(in_use_processes=[])
    assert out.failed
    assert "pid 4242 (ib_write_bw) has /dev/infiniband/uverbs0 open" in out.result["msg"]
    assert kernel.commands() == []


def test_in_use_is_reloaded_when_allowed(env):
    kernel = env.kernel(value="N", processes="412 mooncake_master\n")
    out = env.run(allow_reload_in_use=True)
    assert not out.failed
    assert out.result["action"] == "reload"
    assert out.result["in_use"] == ["pid 412 runs 'mooncake_master'"]
    assert kernel.value() == "Y"


def test_in_use_deferred_to_a_reboot(env):
    kernel = env.kernel(value="N", processes="412 mooncake_master\n")
    out = env.run(on_in_use="defer")
    assert not out.failed
    assert out.result["action"] == "defer"
    assert out.result["reboot_required"] is True
    assert kernel.commands() == []
    assert env.config.exists()


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
