#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: mooncake_store_check
short_description: Put and get an object through a Mooncake master with the real store client
version_added: "0.1.0"
description:
  - Runs a small Mooncake store client with the Python of the Mooncake venv on the target. The client
    mounts a segment, puts an object and/or reads it back through the master, and the module returns how
    long each step took and the throughput.
  - Three modes. V(roundtrip) puts and reads back on the same node. V(put) puts an object and keeps its
    segment mounted for O(hold_s) seconds, until a reader acknowledges. V(get) waits for the key, reads it
    across the network, checks it byte for byte and acknowledges. Run V(put) on one node with C(async) and
    V(get) on another to prove that a KV object crosses nodes.
  - Every wait is bounded. The master's RPC port and the HTTP metadata server are probed with a TCP
    connect first (O(connect_timeout_s)), a watchdog bounds the client's setup call (O(setup_timeout_s));
    Mooncake 0.3.13 would otherwise retry for about 90 seconds.
  - Known failures get a class in RV(failure) and a message that says what to fix - master unreachable,
    metadata server unreachable, no RDMA device (C(No RDMA devices found), C(No available RNIC)), and the
    silent fallback to TCP when O(protocol=rdma) but no device is named.
  - The check leaves nothing behind (the object lives only as long as the client), so it never reports a
    change. In check mode it only says what it would do.
author:
  - erdma.pd maintainers (@erdma-pd)
options:
  mode:
    description: What to do.
    type: str
    choices: [roundtrip, put, get]
    default: roundtrip
  master_server_address:
    description: The master's RPC address, C(HOST:PORT).
    type: str
    required: true
  metadata_server:
    description:
      - Where the transfer engines publish their segments, for example C(http://MASTER:8080/metadata),
        or C(P2PHANDSHAKE).
    type: str
    required: true
  protocol:
    description: Transport of the transfer engine.
    type: str
    choices: [tcp, rdma]
    default: tcp
  device_name:
    description:
      - RDMA devices, comma-separated (C(erdma_0,erdma_1)). Empty with O(protocol=rdma) makes Mooncake
        auto-discover and fall back to TCP silently; the module fails then unless O(allow_tcp_fallback).
    type: str
    default: ""
  allow_tcp_fallback:
    description: Accept that O(protocol=rdma) ends up on TCP (a warning instead of a failure).
    type: bool
    default: false
  local_hostname:
    description:
      - Address this client announces to the others. Default is the local address that routes to the
        master.
    type: str
  venv:
    description: The Mooncake venv; its C(bin/python) runs the client.
    type: path
    default: /opt/mooncake
  environment:
    description:
      - Extra environment for the client, for example C(LD_LIBRARY_PATH) to the CUDA runtime of the
        C(mooncake-transfer-engine) wheel. C(MC_TCP_BIND_ADDRESS) defaults to O(local_hostname).
    type: dict
    default: {}
  key:
    description:
      - Object key. The payload is derived from the key, so the V(get) side knows what to expect without
        being told.
    type: str
    default: erdma-pd-store-check
  object_size_mib:
    description: Size of the object.
    type: int
    default: 8
  global_segment_size_mib:
    description:
      - Memory this client contributes to the store. V(0) mounts nothing, so a V(get) must read from
        another node's segment.
    type: int
    default: 64
  local_buffer_size_mib:
    description: The client's transfer buffer (at least O(object_size_mib)).
    type: int
    default: 64
  connect_timeout_s:
    description: Seconds for the TCP probe of the master and the metadata server.
    type: float
    default: 3
  setup_timeout_s:
    description: Seconds that the client's setup call may take.
    type: float
    default: 15
  op_timeout_s:
    description: Seconds that the put and get may take together.
    type: float
    default: 30
  wait_timeout_s:
    description: Seconds that V(get) waits for the key to appear.
    type: float
    default: 30
  hold_s:
    description: Seconds that V(put) keeps its segment mounted waiting for a reader's acknowledgement.
    type: float
    default: 0
  require_ack:
    description: With O(mode=put) and O(hold_s), fail when no reader acknowledged in time.
    type: bool
    default: true
  ack_linger_s:
    description: Seconds that V(get) stays connected after acknowledging, so the writer sees it.
    type: float
    default: 1
  log_lines:
    description: How many of the client's last log lines to return.
    type: int
    default: 25
notes:
  - Needs the Mooncake venv on the target (role M(erdma.pd.mooncake) installs it; any venv with
    C(mooncake-transfer-engine) or C(mooncake-transfer-engine-non-cuda) works).
  - Supports check mode; reports what it would do.
attributes:
  check_mode:
    support: full
    description: In check mode nothing runs; RV(would) says what the check would do.
  diff_mode:
    support: none
    description: The check leaves nothing behind, so there is no diff.
"""

EXAMPLES = r"""
- name: Put and read back an object through the master
  erdma.pd.mooncake_store_check:
    master_server_address: 10.0.0.10:50052
    metadata_server: http://10.0.0.10:8080/metadata

- name: Check the eRDMA path, failing if no RNIC is usable
  erdma.pd.mooncake_store_check:
    master_server_address: 10.0.0.10:50052
    metadata_server: http://10.0.0.10:8080/metadata
    protocol: rdma
    device_name: erdma_0
    venv: /opt/mooncake
    environment:
      LD_LIBRARY_PATH: /opt/mooncake/lib/python3.10/site-packages/nvidia/cuda_runtime/lib

- name: Put an object on node B and hold it until a reader acknowledges
  erdma.pd.mooncake_store_check:
    mode: put
    key: cross-node
    hold_s: 60
    master_server_address: 10.0.0.10:50052
    metadata_server: http://10.0.0.10:8080/metadata
  delegate_to: node-b
  async: 120
  poll: 0
  register: _put

- name: Read it on node C, from B's segment
  erdma.pd.mooncake_store_check:
    mode: get
    key: cross-node
    global_segment_size_mib: 0
    master_server_address: 10.0.0.10:50052
    metadata_server: http://10.0.0.10:8080/metadata
  delegate_to: node-c
"""

RETURN = r"""
mode:
  description: The mode that ran.
  returned: always
  type: str
  sample: get
failure:
  description:
    - Class of the failure, or null. One of C(master_unreachable), C(metadata_unreachable),
      C(no_rdma_device), C(rdma_fell_back_to_tcp), C(client_import_failed), C(setup_failed), C(put_failed),
      C(key_not_found), C(data_mismatch), C(not_acknowledged), C(timeout), C(client_crashed).
  returned: always
  type: str
  sample: null
transport:
  description: Transport that the client installed, read from its log (C(tcp), C(rdma)), or null.
  returned: when the client ran
  type: str
  sample: tcp
local_hostname:
  description: Address the client announced.
  returned: when the client ran
  type: str
  sample: 10.89.60.11
object_size_bytes:
  description: Size of the object.
  returned: always
  type: int
  sample: 8388608
master_probe_ms:
  description: Time the TCP connect to the master's RPC port took.
  returned: always
  type: float
  sample: 0.21
setup_ms:
  description: Time the setup call took (connect to the master, mount the segment).
  returned: when setup returned
  type: float
  sample: 29.6
put_ms:
  description: Time of the put.
  returned: when a put ran
  type: float
  sample: 7.4
put_throughput_mib_per_s:
  description: Object size over put time.
  returned: when a put ran
  type: float
  sample: 1076.2
get_ms:
  description: Time of the get.
  returned: when a get ran
  type: float
  sample: 19.2
get_throughput_mib_per_s:
  description: Bytes read over get time.
  returned: when a get ran
  type: float
  sample: 416.6
wait_ms:
  description: Time V(get) waited for the key.
  returned: in mode get
  type: float
  sample: 0.8
hold_ms:
  description: Time V(put) held its segment until acknowledged.
  returned: in mode put with hold_s
  type: float
  sample: 3012.5
data_verified:
  description: The bytes read equal the bytes put (SHA-256 of the key-derived payload).
  returned: when a get ran
  type: bool
  sample: true
acknowledged:
  description: A reader acknowledged the object.
  returned: in mode put with hold_s
  type: bool
  sample: true
sha256:
  description: SHA-256 of the payload.
  returned: when setup succeeded
  type: str
  sample: 6c1b0e...
client_seconds:
  description: Wall time of the client process.
  returned: when the client ran
  type: float
  sample: 1.3
log_tail:
  description: Last lines of the client's log (glog), to read when it failed.
  returned: when the client ran
  type: list
  elements: str
would:
  description: In check mode, what the check would do.
  returned: in check mode
  type: str
  sample: put an 8 MiB object with mode roundtrip through 10.0.0.10:50052 over tcp
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.erdma.pd.plugins.module_utils.mooncake_store_runner import store_check

MIB = 1024 * 1024


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type="str", default="roundtrip", choices=["roundtrip", "put", "get"]),
            master_server_address=dict(type="str", required=True),
            metadata_server=dict(type="str", required=True),
            protocol=dict(type="str", default="tcp", choices=["tcp", "rdma"]),
            device_name=dict(type="str", default=""),
            allow_tcp_fallback=dict(type="bool", default=False),
            local_hostname=dict(type="str"),
            venv=dict(type="path", default="/opt/mooncake"),
            environment=dict(type="dict", default={}),
            key=dict(type="str", default="erdma-pd-store-check", no_log=False),
            object_size_mib=dict(type="int", default=8),
            global_segment_size_mib=dict(type="int", default=64),
            local_buffer_size_mib=dict(type="int", default=64),
            connect_timeout_s=dict(type="float", default=3),
            setup_timeout_s=dict(type="float", default=15),
            op_timeout_s=dict(type="float", default=30),
            wait_timeout_s=dict(type="float", default=30),
            hold_s=dict(type="float", default=0),
            require_ack=dict(type="bool", default=True),
            ack_linger_s=dict(type="float", default=1),
            log_lines=dict(type="int", default=25),
        ),
        supports_check_mode=True,
    )
    p = dict(module.params)
    if p["object_size_mib"] < 1 or p["object_size_mib"] > p["local_buffer_size_mib"]:
        module.fail_json(msg="object_size_mib must be between 1 and local_buffer_size_mib (%s), got %s"
                         % (p["local_buffer_size_mib"], p["object_size_mib"]))
    if p["global_segment_size_mib"] < 0:
        module.fail_json(msg="global_segment_size_mib must be 0 or more")
    p["object_size_bytes"] = p["object_size_mib"] * MIB
    p["global_segment_size_bytes"] = p["global_segment_size_mib"] * MIB
    p["local_buffer_size_bytes"] = p["local_buffer_size_mib"] * MIB
    p["python"] = os.path.join(p["venv"], "bin", "python")

    if module.check_mode:
        module.exit_json(changed=False, mode=p["mode"], failure=None, object_size_bytes=p["object_size_bytes"],
                         master_probe_ms=0.0,
                         would="%s an %s MiB object with mode %s through %s over %s%s" % (
                             "read" if p["mode"] == "get" else "put", p["object_size_mib"], p["mode"],
                             p["master_server_address"], p["protocol"],
                             " (%s)" % p["device_name"] if p["device_name"] else ""))

    if not os.access(p["python"], os.X_OK):
        module.fail_json(msg="%s is missing: install Mooncake in the venv %s (role erdma.pd.mooncake) or point "
                             "venv at one" % (p["python"], p["venv"]), failure="client_import_failed",
                         mode=p["mode"])
    ok, data = store_check(p)
    if not ok:
        module.fail_json(changed=False, **data)
    if data.get("warning"):
        module.warn(data["warning"])
    module.exit_json(changed=False, **data)


if __name__ == "__main__":
    main()
