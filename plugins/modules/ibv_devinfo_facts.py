#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: ibv_devinfo_facts
short_description: Read RDMA devices and ports from ibv_devinfo as facts
version_added: "0.1.0"
description:
  - Runs C(ibv_devinfo) (with C(-v) when O(verbose=true), with C(-d) when O(device) is set) and sets
    C(ansible_facts.rdma_devices), one typed dictionary per HCA with its ports.
  - Or parses the text given in O(output) and runs nothing, to analyse a saved output offline.
  - Handles several HCAs, eRDMA (no C(board_id)), mlx4/mlx5 with MLNX_OFED extras and rxe. Output cut
    off inside a device keeps the complete devices before it and returns a warning.
    C(No IB devices found) gives an empty list, not a failure.
  - "C(link_gbps) is the nominal port rate. For InfiniBand and RoCE NICs it is the lane count of
    C(active_width) times the lane speed of C(active_speed) (4X at 25.0 Gbps = 100 Gb/s). The eRDMA
    driver prints C(4X) and C(25.0 Gbps) for a 25 Gb/s port, so for eRDMA devices (transport C(eRDMA),
    vendor C(0x1ded) or a name starting with C(erdma)) C(link_gbps) is the printed speed."
author:
  - erdma.pd maintainers (@erdma-pd)
options:
  verbose:
    description:
      - Add C(-v) to read every capability of the device and port (GIDs, flags, limits).
    type: bool
    default: false
  device:
    description:
      - Read only this HCA (C(ibv_devinfo -d DEVICE)). Fails when the host has no such device.
    type: str
  port:
    description:
      - Read only this port of each HCA (C(ibv_devinfo -i PORT)), for example one port of a
        multi-port HCA. With O(output), the port that the saved text was printed with.
      - Without it, a saved output whose device shows one port other than port 1 is read as printed
        with C(-i) too.
    type: int
  timeout:
    description:
      - Seconds after which C(ibv_devinfo) is stopped (coreutils C(timeout), killed 5 s later); the
        module then fails and says so. At least 1.
    type: int
    default: 30
  output:
    description:
      - Text of a previous C(ibv_devinfo) run to parse instead of running the command.
    type: str
notes:
  - Needs C(ibv_devinfo) from the C(ibverbs-utils) package unless O(output) is given.
  - Values printed as C(TEXT (N)) are returned as the text (C(state=PORT_ACTIVE), C(max_mtu=4096)) with
    the number in C(<key>_code); decimal numbers are ints; hexadecimal values stay strings as printed.
    Flag lists follow their value as C(<key>_list), with C(<key>_unknown) for C(Unknown flags).
  - Headings without a value such as C(rc_odp_caps) become the list of flag lines under them;
    the nested key/value lines under a heading are returned flat on the device.
attributes:
  check_mode:
    support: full
    description: Reading devices changes nothing, so check mode runs the command as well.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  facts:
    support: full
    description: Sets the facts listed under RV(ansible_facts).
seealso:
  - module: erdma.pd.erdma_facts
  - module: erdma.pd.rdma_perftest
"""

EXAMPLES = r"""
- name: Read the RDMA devices of this host
  erdma.pd.ibv_devinfo_facts:

- name: Read every capability of erdma_0
  erdma.pd.ibv_devinfo_facts:
    device: erdma_0
    verbose: true

- name: Require an active port on every device
  ansible.builtin.assert:
    that: item.ports | selectattr('state', 'equalto', 'PORT_ACTIVE') | list | length > 0
    fail_msg: "{{ item.hca_id }} has no PORT_ACTIVE port"
  loop: "{{ ansible_facts.rdma_devices }}"
  loop_control:
    label: "{{ item.hca_id }}"

- name: Read port 2 of a two-port HCA
  erdma.pd.ibv_devinfo_facts:
    device: mlx5_0
    port: 2
    verbose: true

- name: Parse a saved ibv_devinfo output without running anything
  erdma.pd.ibv_devinfo_facts:
    output: "{{ lookup('ansible.builtin.file', 'saved/ibv_devinfo-gpu01.txt') }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts set by this module.
  returned: always
  type: dict
  contains:
    rdma_devices:
      description: One entry per HCA, in the order C(ibv_devinfo) printed them.
      returned: always
      type: list
      elements: dict
      contains:
        hca_id:
          description: Device name.
          type: str
          sample: erdma_0
        transport:
          description: Transport name without its code (the code is in C(transport_code)).
          type: str
          sample: eRDMA
        fw_ver:
          description: Firmware version.
          type: str
          sample: 0.2.0
        node_guid:
          description: Node GUID as printed.
          type: str
          sample: 0216:3eff:fe52:33a9
        sys_image_guid:
          description: System image GUID as printed.
          type: str
        vendor_id:
          description: PCI vendor id in the tool's hexadecimal form.
          type: str
          sample: "0x1ded"
        vendor_part_id:
          description: Vendor part id.
          type: int
          sample: 4223
        hw_ver:
          description: Hardware version in the tool's form.
          type: str
          sample: "0x0"
        board_id:
          description: Board id; absent on eRDMA and rxe.
          type: str
          sample: MT_0000000008
        phys_port_cnt:
          description: Number of physical ports.
          type: int
          sample: 1
        is_erdma:
          description: Whether the device is an eRDMA device (decides the C(link_gbps) rule).
          type: bool
        port_selected:
          description:
            - The port that C(ibv_devinfo -i) printed alone (C(ports) then holds only it, while
              C(phys_port_cnt) counts them all); null when every port was printed.
          type: int
          sample: 2
        not_supported:
          description: Capabilities that the tool reported as not supported (verbose only).
          type: list
          elements: str
          sample: [completion_timestamp_mask, core_clock, tag_matching]
        ports:
          description: The device's ports.
          type: list
          elements: dict
          contains:
            port:
              description: Port number.
              type: int
              sample: 1
            state:
              description: Port state.
              type: str
              sample: PORT_ACTIVE
            max_mtu:
              description: Largest MTU of the port, in bytes.
              type: int
              sample: 4096
            active_mtu:
              description: MTU in use, in bytes.
              type: int
              sample: 4096
            link_layer:
              description: C(Ethernet) or C(InfiniBand).
              type: str
            active_width:
              description: Link width (verbose only).
              type: str
              sample: 4X
            active_speed:
              description: Lane speed as printed (verbose only).
              type: str
              sample: 25.0 Gbps
            active_speed_gbps:
              description: C(active_speed) as a number (verbose only).
              type: float
              sample: 25.0
            link_gbps:
              description: Nominal port rate in Gb/s (see the rule above); null without C(verbose).
              type: float
              sample: 25.0
            gid_tbl_len:
              description: Size of the GID table (verbose only).
              type: int
            gids:
              description: GID table entries that the tool printed (verbose only).
              type: list
              elements: dict
              sample: [{index: 1, gid: "::ffff:192.168.96.110", type: RoCE v2}]
warnings:
  description: Present when the output ended inside a device; that device is not in C(rdma_devices).
  returned: when output was cut off
  type: list
  elements: str
cmd:
  description: The command that ran; empty in parse-only mode.
  returned: always
  type: list
  elements: str
  sample: [/usr/bin/ibv_devinfo, -d, erdma_0, -v]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.erdma.pd.plugins.module_utils.bounded_command import BoundedCommandError, check_timeout
from ansible_collections.erdma.pd.plugins.module_utils.rdma_devinfo import (
    DevinfoError,
    parse_devinfo,
    run_devinfo,
)

# An HCA port number is a u8 in the verbs API; 0 is not a port.
MAX_PORT = 255


def main():
    module = AnsibleModule(
        argument_spec=dict(
            verbose=dict(type="bool", default=False),
            device=dict(type="str"),
            port=dict(type="int"),
            timeout=dict(type="int", default=30),
            output=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    argv = []
    if params["port"] is not None and not 1 <= params["port"] <= MAX_PORT:
        module.fail_json(msg="port must be a port number from 1 to %d (found %d)" % (MAX_PORT, params["port"]), cmd=[])
    text = params["output"]
    if text is None:
        try:
            check_timeout(params["timeout"])
            text, argv, reason = run_devinfo(module, verbose=params["verbose"], device=params["device"],
                                             port=params["port"], timeout=params["timeout"])
        except BoundedCommandError as error:
            module.fail_json(msg=str(error), cmd=argv)
        except DevinfoError as error:
            module.fail_json(msg=str(error), cmd=argv)
        if reason:
            module.warn(reason)
    devices, warnings = parse_devinfo(text, params["port"])
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=False, cmd=argv, ansible_facts={"rdma_devices": devices})


if __name__ == "__main__":
    main()
