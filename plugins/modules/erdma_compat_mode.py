#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: erdma_compat_mode
short_description: Keep the eRDMA driver in compat mode, persistently and live
version_added: 0.1.0
description:
  - Sets C(options erdma compat_mode=Y) (or C(N)) in a modprobe configuration file, editing an existing
    C(compat_mode=) token in place instead of appending duplicate lines.
  - Makes the running driver agree, reading C(/sys/module/erdma/parameters/compat_mode). When the module is
    loaded with the wanted value nothing happens; when it is not loaded it is loaded with the option
    (C(modprobe erdma compat_mode=Y)); when it is loaded with the other value it is reloaded
    (C(rmmod erdma) then C(modprobe erdma compat_mode=Y)).
  - A reload is refused while RDMA is in use, that is while a process holds a C(/dev/infiniband/uverbs*)
    device open or owns a protection domain or connection id on an eRDMA device
    (C(rdma resource show pd), C(rdma resource show cm_id)), unless O(allow_reload_in_use=true).
    With O(on_in_use=defer) the module leaves the live value alone and returns C(reboot_required=true).
    Processes that hold no RDMA resources (a Mooncake master, which speaks TCP) do not count.
  - The live value is never changed when a module that erdma depends on (C(ib_core), C(ib_uverbs)) is
    loaded from another file than the one on disk, which is what a fresh MLNX OFED or erdma install
    leaves until the reboot. Loading the new erdma then fails with
    C(disagrees about version of symbol ...), and a reload would leave the host without erdma. The
    module leaves the running driver as it is and returns C(action=defer), C(reboot_required=true).
    With O(installed_now=true) a dependency that cannot be compared counts as such too.
  - If a reload still fails to load the module, it is loaded back with its previous value and the
    task fails with the kernel's own words from C(dmesg).
  - Compat mode lets eRDMA set up connections out of band (TCP), as NCCL and Mooncake do; the standard mode
    only supports RDMA_CM and fails with C(Failed to modify QP to RTS).
author:
  - erdma.pd maintainers (@erdma-pd)
options:
  compat_mode:
    description: The wanted value of the C(compat_mode) parameter.
    type: bool
    default: true
  config_path:
    description: The modprobe configuration file that holds the persistent setting.
    type: path
    default: /etc/modprobe.d/erdma.conf
  live:
    description:
      - Also make the running driver's value match.
      - Set to V(false) where no kernel module can be loaded (containers); only the file is managed then.
    type: bool
    default: true
  load:
    description: Load the module with the option when it is not loaded. With V(false) an absent module is left alone.
    type: bool
    default: true
  allow_reload_in_use:
    description: Reload the module even while RDMA is in use. Processes using RDMA lose their connections.
    type: bool
    default: false
  on_in_use:
    description:
      - What to do when a reload is needed but RDMA is in use and O(allow_reload_in_use=false).
      - V(fail) stops with a message naming the processes. V(defer) keeps the live value, writes the
        persistent setting and returns C(reboot_required=true) so that a reboot can apply it.
    type: str
    choices: [fail, defer]
    default: fail
  installed_now:
    description:
      - Whether the driver (MLNX OFED or erdma) was installed in this run. The role sets it.
      - When true, a loaded dependency of erdma whose srcversion cannot be compared with the file on disk
        counts as stale, and the live change is left to the reboot.
    type: bool
    default: false
  timeout:
    description: Seconds each command (C(modprobe), C(rmmod), C(modinfo), C(rdma), C(dmesg)) may take before it is stopped.
    type: int
    default: 60
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Supports check mode and diff mode; in check mode no file is written and only read-only commands run
    (C(modinfo), C(rdma resource show)).
  - Reads C(/proc/*/fd) to find open uverbs devices; run it as root to see every process.
  - Without the C(rdma) tool (iproute2) only open uverbs devices are looked at; RV(in_use_notes) says so.
"""

EXAMPLES = r"""
- name: Switch eRDMA to compat mode, refusing to reload under running engines
  erdma.pd.erdma_compat_mode:
    compat_mode: true

- name: Write the persistent setting only (containers, or when a reboot follows anyway)
  erdma.pd.erdma_compat_mode:
    live: false

- name: Switch now if idle, otherwise leave it to a reboot
  erdma.pd.erdma_compat_mode:
    on_in_use: defer
  register: compat

- name: Reboot when the live value could not be changed
  ansible.builtin.reboot:
  when: compat.reboot_required
"""

RETURN = r"""
action:
  description:
    - What was done (or would be done in check mode) to the running driver.
    - V(none) already right; V(load) module loaded with the option; V(reload) rmmod + modprobe;
      V(defer) left for a reboot because RDMA is in use or the RDMA core in memory is stale; V(skip) live changes not requested or module
      absent with O(load=false). A refused reload fails the task instead.
  returned: success
  type: str
  sample: reload
reason:
  description: One sentence explaining the action.
  returned: always
  type: str
  sample: "module erdma is loaded with compat_mode=N: reload it with compat_mode=Y"
persistent_before:
  description: The value in O(config_path) before the task; null when the file does not set it.
  returned: always
  type: bool
  sample: false
persistent_after:
  description: The value in O(config_path) after the task (or after it in check mode).
  returned: always
  type: bool
  sample: true
live_before:
  description: The running driver's state before the task.
  returned: always
  type: dict
  contains:
    loaded:
      description: Whether C(/sys/module/erdma) exists.
      type: bool
    value:
      description: The parsed C(compat_mode) value; null when not loaded or unreadable.
      type: bool
    raw:
      description: The text of C(/sys/module/erdma/parameters/compat_mode).
      type: str
    refcnt:
      description: The module's reference count.
      type: int
  sample: {"loaded": true, "value": false, "raw": "N", "refcnt": 0}
live_after:
  description: The running driver's state after the task; equal to RV(live_before) in check mode.
  returned: always
  type: dict
  sample: {"loaded": true, "value": true, "raw": "Y", "refcnt": 0}
in_use:
  description: Why RDMA counts as in use; filled only when a reload was considered.
  returned: always
  type: list
  elements: str
  sample: ["pid 4242 (python3) has /dev/infiniband/uverbs0 open"]
in_use_notes:
  description: Why part of the in-use check could not run (no C(rdma) tool, a failing C(rdma resource show)).
  returned: always
  type: list
  elements: str
  sample: []
stale_core:
  description:
    - Why the module on disk cannot be loaded against the RDMA core in memory; filled only when a live change
      was considered. Non-empty means the live change was left to the reboot.
  returned: always
  type: list
  elements: str
  sample: ["ib_core in memory (srcversion 7B0C9E3F) is not the ib_core on disk (srcversion 1A2B3C4D)"]
kernel_messages:
  description: The kernel log's lines about erdma failing to load, when a C(modprobe) failed.
  returned: when a modprobe failed
  type: list
  elements: str
  sample: ["[ 812.5] erdma: disagrees about version of symbol ib_register_device"]
commands:
  description: The commands run (or that would run in check mode), each as an argv list.
  returned: always
  type: list
  elements: list
  sample: [["rmmod", "erdma"], ["modprobe", "erdma", "compat_mode=Y"]]
reboot_required:
  description: True when the live value still differs and only a reboot (or a later reload) will apply it.
  returned: always
  type: bool
  sample: false
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.erdma.pd.plugins.module_utils import kmod
from ansible_collections.erdma.pd.plugins.module_utils.bounded_command import (
    BoundedCommandError, check_timeout, run_bounded)


def write_file(module, path, text):
    """Write through a temporary file in the same directory, which is removed whatever happens."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=".erdma-compat-")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def make_runner(module, seconds):
    """run_command under coreutils `timeout`, so that a hung modprobe or modinfo cannot hang the play."""

    def runner(argv):
        try:
            rc, out, err, timed_out = run_bounded(module, argv, seconds)
        except BoundedCommandError as exc:
            module.fail_json(msg=to_native(exc))
        return (kmod.TIMEOUT_RC if timed_out else rc), out, err

    return runner


def find_in_use(module, runner):
    uverbs = kmod.find_uverbs_users()
    owners, notes = kmod.find_rdma_resource_users(runner, module.get_bin_path("rdma"))
    return kmod.describe_in_use(uverbs, owners), notes


def kernel_messages(runner):
    rc, out, _err = runner(["dmesg"])
    return kmod.kernel_load_errors(out) if rc == 0 else []


def explain_load_failure(messages):
    if any("disagrees about version of symbol" in line or "Unknown symbol" in line for line in messages):
        return ("The kernel says the erdma on disk was built against another RDMA core than the one in memory "
                "(%s): that is what a new MLNX OFED/erdma install leaves until the reboot. Fix: reboot the host "
                "(erdma_driver_reboot_allowed=true lets the role do it)." % " | ".join(messages))
    if messages:
        return "The kernel says: %s." % " | ".join(messages)
    return "Fix: check that the driver is installed for the running kernel (`modinfo erdma`), see `dmesg | tail`."


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            compat_mode=dict(type="bool", default=True),
            config_path=dict(type="path", default=kmod.CONFIG_PATH),
            live=dict(type="bool", default=True),
            load=dict(type="bool", default=True),
            allow_reload_in_use=dict(type="bool", default=False),
            on_in_use=dict(type="str", choices=["fail", "defer"], default="fail"),
            installed_now=dict(type="bool", default=False),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    params = module.params
    want = params["compat_mode"]
    path = params["config_path"]
    try:
        check_timeout(params["timeout"])
    except BoundedCommandError as exc:
        module.fail_json(msg=to_native(exc))
    runner = make_runner(module, params["timeout"])

    try:
        before_text = kmod.read_text(path)
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot read %s: %s" % (path, to_native(exc)))
    after_text = kmod.render_config(before_text, want)
    file_changed = after_text != (before_text or "")
    live_before = kmod.read_live()
    result = dict(
        changed=False,
        persistent_before=kmod.persistent_value(before_text),
        persistent_after=kmod.persistent_value(after_text),
        live_before=live_before,
        live_after=live_before,
        in_use=[],
        in_use_notes=[],
        stale_core=[],
        commands=[],
        reboot_required=False,
    )

    live_change = params["live"] and (live_before["value"] is not want if live_before["loaded"] else params["load"])
    if live_change:
        result["stale_core"] = kmod.find_stale_core(runner, params["installed_now"])
        if live_before["loaded"] and not result["stale_core"]:
            result["in_use"], result["in_use_notes"] = find_in_use(module, runner)
    action, reason = kmod.decide(live_before, want, result["in_use"], apply_live=params["live"],
                                 load_if_absent=params["load"],
                                 allow_reload_in_use=params["allow_reload_in_use"],
                                 on_in_use=params["on_in_use"], stale_core=result["stale_core"])
    result["action"] = action
    result["reason"] = reason

    word = kmod.bool_word(want)
    diff = [dict(before_header=path, after_header=path, before=before_text or "", after=after_text)]
    if action in (kmod.LOAD, kmod.RELOAD):
        diff.append(dict(before_header=kmod.param_path(), after_header=kmod.param_path(),
                         before="%s\n" % (live_before["raw"] if live_before["loaded"] else "(not loaded)"),
                         after="%s\n" % word))
    if module._diff:
        result["diff"] = diff

    planned = {kmod.LOAD: [kmod.modprobe_argv(want)],
               kmod.RELOAD: [["rmmod", kmod.MODULE_NAME], kmod.modprobe_argv(want)]}
    result["changed"] = file_changed or action in planned

    if action == kmod.REFUSE:
        result["changed"] = file_changed and not module.check_mode
        if file_changed and not module.check_mode:
            write_file(module, path, after_text)
        module.fail_json(
            msg="Refusing to reload the eRDMA driver: %s. Expected: nothing using RDMA while %s is reloaded "
                "with %s=%s. Fix: stop those processes and re-run; or reboot (%s now sets %s=%s, which "
                "applies at boot; erdma_driver_reboot_allowed=true lets the role do it); or reload anyway "
                "with allow_reload_in_use=true (role variable erdma_driver_allow_live_reload=true), "
                "which drops the RDMA connections of those processes."
                % (reason, kmod.MODULE_NAME, kmod.PARAM_NAME, word, path, kmod.PARAM_NAME, word),
            **result)

    if action == kmod.DEFER:
        result["reboot_required"] = True

    if module.check_mode:
        result["commands"] = planned.get(action, [])
        module.exit_json(**result)

    if file_changed:
        try:
            write_file(module, path, after_text)
        except (IOError, OSError) as exc:
            module.fail_json(msg="cannot write %s: %s" % (path, to_native(exc)), **result)

    if action in planned:
        apply_live(module, runner, action, want, live_before, reason, result)

    module.exit_json(**result)


def apply_live(module, runner, action, want, live_before, reason, result):
    word = kmod.bool_word(want)
    try:
        if action == kmod.LOAD:
            result["commands"] = kmod.load(runner, want)
        else:
            # An unreadable value is restored as the module's default (N), the guide's standard mode.
            result["commands"] = kmod.reload(runner, want, bool(live_before["value"]))
    except kmod.KmodError as exc:
        result["kernel_messages"] = kernel_messages(runner)
        result["live_after"] = live_after = kmod.read_live()
        result["reboot_required"] = live_after["value"] is not want
        module.fail_json(msg="%s. Found: %s. Expected: %s=%s in %s. %s"
                             % (to_native(exc), reason, kmod.PARAM_NAME, word, kmod.param_path(),
                                explain_load_failure(result["kernel_messages"])), **result)
    live_after = kmod.read_live()
    result["live_after"] = live_after
    if live_after["value"] is not want:
        module.fail_json(msg="%s ran, but %s reads %r; expected %s. Fix: check `dmesg | tail` and "
                             "`modinfo -p %s` (does this driver build know %s?)."
                             % (" && ".join(" ".join(c) for c in result["commands"]), kmod.param_path(),
                                live_after["raw"], word, kmod.MODULE_NAME, kmod.PARAM_NAME), **result)


def main():
    run_module()


if __name__ == "__main__":
    main()
