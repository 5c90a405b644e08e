#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: erdma_facts
short_description: Read the state of the eRDMA driver as facts
version_added: "0.1.0"
description:
  - Sets C(ansible_facts.erdma) - whether the C(erdma) kernel module is loaded, its version, the live
    C(compat_mode) from C(/sys/module/erdma/parameters/compat_mode), the persistent C(compat_mode) from
    C(/etc/modprobe.d/*.conf), the device nodes C(/dev/infiniband/rdma_cm) and C(uverbs*), and the
    counters of C(eadm stat -d DEVICE -l) as integers.
  - With O(output) it parses that C(eadm stat) text instead and reads nothing from the host.
  - Reads files and runs C(modinfo) and C(eadm) only when they are installed; a host without the
    driver returns C(loaded=false) and empty counters rather than failing.
author:
  - erdma.pd maintainers (@erdma-pd)
options:
  device:
    description:
      - eRDMA device whose counters C(eadm stat) reads.
    type: str
    default: erdma_0
  stats:
    description:
      - Read the C(eadm stat) counters (needs the C(eadm) package).
    type: bool
    default: true
  output:
    description:
      - Text of a previous C(eadm stat) run to parse instead of reading the host.
    type: str
  root:
    description:
      - Directory that stands for C(/) when reading C(/proc), C(/sys), C(/etc) and C(/dev), for
        inspecting a mounted image or a chroot.
    type: path
    default: /
  timeout:
    description:
      - Seconds that each C(eadm) or C(modinfo) call may take before it is stopped (coreutils
        C(timeout), killed 5 s later). A stopped call leaves its answer out with a warning instead of
        holding the play. At least 1.
    type: int
    default: 30
notes:
  - C(compat_mode=Y) is needed for out-of-band connection setup (NCCL, perftest without C(-R)); in
    standard mode perftest fails with C(Failed to modify QP to RTS).
  - When several C(/etc/modprobe.d) files set C(compat_mode), the last one that modprobe reads wins
    and is the one reported.
attributes:
  check_mode:
    support: full
    description: The module only reads, so it runs unchanged in check mode.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  facts:
    support: full
    description: Sets the facts listed under RV(ansible_facts).
seealso:
  - module: erdma.pd.ibv_devinfo_facts
"""

EXAMPLES = r"""
- name: Read the eRDMA driver state
  erdma.pd.erdma_facts:

- name: Require compat mode, live and persistent
  ansible.builtin.assert:
    that:
      - ansible_facts.erdma.compat_mode
      - ansible_facts.erdma.compat_mode_persistent
    fail_msg: >-
      compat_mode is {{ ansible_facts.erdma.compat_mode }} (live) and
      {{ ansible_facts.erdma.compat_mode_persistent }} (persistent); expected true for both

- name: Parse saved eadm stat counters
  erdma.pd.erdma_facts:
    output: "{{ lookup('ansible.builtin.file', 'saved/eadm-stat.txt') }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts set by this module.
  returned: always
  type: dict
  contains:
    erdma:
      description: State of the eRDMA driver; in parse-only mode only C(stats) and C(stats_device).
      returned: always
      type: dict
      contains:
        loaded:
          description: Whether C(erdma) is listed in C(/proc/modules).
          type: bool
          sample: true
        version:
          description: Driver version from C(/sys/module/erdma/version), else C(modinfo), else C(eadm ver).
          type: str
          sample: 0.2.38
        version_source:
          description: Where C(version) came from.
          type: str
          sample: /sys/module/erdma/version
        eadm_present:
          description: Whether the C(eadm) tool is installed.
          type: bool
        eadm_driver_version:
          description: Kernel driver version as C(eadm ver) reports it.
          type: str
        compat_mode:
          description: Live compat mode of the loaded module; null when the module is not loaded.
          type: bool
          sample: true
        compat_mode_persistent:
          description: Compat mode that C(/etc/modprobe.d) applies at the next load; null when unset.
          type: bool
          sample: true
        compat_mode_persistent_file:
          description: The modprobe.d file that sets it.
          type: str
          sample: /etc/modprobe.d/erdma.conf
        rdma_cm_present:
          description: Whether C(/dev/infiniband/rdma_cm) exists.
          type: bool
        uverbs_devices:
          description: Names of the C(/dev/infiniband/uverbs*) nodes.
          type: list
          elements: str
          sample: [uverbs0]
        stats_device:
          description: Device whose counters were read.
          type: str
          sample: erdma_0
        stats:
          description: C(eadm stat) counters by name; empty when eadm is missing or O(stats=false).
          type: dict
          sample: {connect_total_cnt: 12, connect_failed_cnt: 0}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.erdma.pd.plugins.module_utils.bounded_command import BoundedCommandError, check_timeout
from ansible_collections.erdma.pd.plugins.module_utils.erdma_state import gather, parse_eadm_stat


def main():
    module = AnsibleModule(
        argument_spec=dict(
            device=dict(type="str", default="erdma_0"),
            stats=dict(type="bool", default=True),
            output=dict(type="str"),
            root=dict(type="path", default="/"),
            timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["output"] is not None:
        facts = {"stats_device": params["device"], "stats": parse_eadm_stat(params["output"])}
    else:
        try:
            check_timeout(params["timeout"])
            facts = gather(module, root=params["root"], device=params["device"], stats=params["stats"],
                           timeout=params["timeout"])
        except BoundedCommandError as error:
            module.fail_json(msg=str(error))
    module.exit_json(changed=False, ansible_facts={"erdma": facts})


if __name__ == "__main__":
    main()
