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
    device open or a process matching O(in_use_processes) runs, unless O(allow_reload_in_use=true).
    With O(on_in_use=defer) the module leaves the live value alone and returns C(reboot_required=true).
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
  in_use_processes:
    description:
      - Extended regular expressions (C(pgrep -f)) of command lines that mean RDMA is in use.
      - An empty list checks only open uverbs devices.
    type: list
    elements: str
    default: [vllm, mooncake]
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
  - Supports check mode and diff mode; in check mode no file is written and no command runs except C(pgrep).
  - Reads C(/proc/*/fd) to find open uverbs devices; run it as root to see every process.
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
      V(defer) left for a reboot because RDMA is in use; V(skip) live changes not requested or module
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


def write_file(module, path, text):
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=".erdma-compat-")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o644)
    module.atomic_move(tmp, path)


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            compat_mode=dict(type="bool", default=True),
            config_path=dict(type="path", default=kmod.CONFIG_PATH),
            live=dict(type="bool", default=True),
            load=dict(type="bool", default=True),
            allow_reload_in_use=dict(type="bool", default=False),
            on_in_use=dict(type="str", choices=["fail", "defer"], default="fail"),
            in_use_processes=dict(type="list", elements="str", default=list(kmod.DEFAULT_IN_USE_PROCESSES)),
        ),
        supports_check_mode=True,
    )
    params = module.params
    want = params["compat_mode"]
    path = params["config_path"]

    def runner(argv):
        return module.run_command(argv)

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
        commands=[],
        reboot_required=False,
    )

    in_use = []
    needs_switch = params["live"] and live_before["loaded"] and live_before["value"] is not want
    if needs_switch:
        try:
            in_use = kmod.describe_in_use(kmod.find_uverbs_users(),
                                          kmod.find_processes(runner, params["in_use_processes"]))
        except kmod.KmodError as exc:
            module.fail_json(msg=to_native(exc), **result)
    result["in_use"] = in_use
    action, reason = kmod.decide(live_before, want, in_use, apply_live=params["live"],
                                 load_if_absent=params["load"],
                                 allow_reload_in_use=params["allow_reload_in_use"],
                                 on_in_use=params["on_in_use"])
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

    planned = {kmod.LOAD: [["modprobe", kmod.MODULE_NAME, "%s=%s" % (kmod.PARAM_NAME, word)]],
               kmod.RELOAD: [["rmmod", kmod.MODULE_NAME],
                             ["modprobe", kmod.MODULE_NAME, "%s=%s" % (kmod.PARAM_NAME, word)]]}
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
        try:
            if action == kmod.LOAD:
                result["commands"] = kmod.load(runner, want)
            else:
                result["commands"] = kmod.reload(runner, want)
        except kmod.KmodError as exc:
            module.fail_json(msg="%s. Found: %s. Expected: %s=%s in %s. Fix: check that the driver is "
                                 "installed for the running kernel (`modinfo %s`), see `dmesg | tail`."
                                 % (to_native(exc), reason, kmod.PARAM_NAME, word, kmod.param_path(),
                                    kmod.MODULE_NAME), **result)
        live_after = kmod.read_live()
        result["live_after"] = live_after
        if live_after["value"] is not want:
            module.fail_json(msg="%s ran, but %s reads %r; expected %s. Fix: check `dmesg | tail` and "
                                 "`modinfo -p %s` (does this driver build know %s?)."
                                 % (" && ".join(" ".join(c) for c in result["commands"]), kmod.param_path(),
                                    live_after["raw"], word, kmod.MODULE_NAME, kmod.PARAM_NAME), **result)

    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()
