#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rdma_perftest
short_description: Run one perftest tool (ib_write_bw, ib_write_lat, ...) and return its results
version_added: "0.1.0"
description:
  - Runs one perftest tool as the O(role=server) or the O(role=client) side, bounded by O(timeout),
    and returns the result table as typed rows plus a one-line summary.
  - Or parses the text given in O(output) and runs nothing.
  - Bandwidth tools return C(bytes), C(iterations), C(bw_peak_gbps), C(bw_avg_gbps), C(msg_rate_mpps);
    MB/sec results (no C(--report_gbits)) are converted to Gb/s (perftest's MB is 2^20 bytes).
  - Latency tools return C(t_min_us), C(t_max_us), C(t_typical_us), C(t_avg_us), C(t_stdev_us),
    C(p99_us), C(p999_us).
  - Warnings that perftest prints inside the table (CPU frequency) are returned, not parsed as rows;
    the repeated rows of C(--run_infinitely) are kept and summarised.
  - With O(min_bw_gbps) or O(max_lat_us) the module fails with a message that states the measured and
    the expected value.
author:
  - erdma.pd maintainers (@erdma-pd)
options:
  tool:
    description: The perftest program.
    type: str
    default: ib_write_bw
    choices: [ib_write_bw, ib_read_bw, ib_send_bw, ib_atomic_bw, ib_write_lat, ib_read_lat, ib_send_lat, ib_atomic_lat]
  role:
    description:
      - C(server) waits for one client, C(client) connects to O(server). Start the server first (in the
        background, for example with C(async)), then the client.
    type: str
    default: client
    choices: [server, client]
  server:
    description:
      - Address or host name of the server side; required for O(role=client). A value that starts
        with C(-) or holds spaces is refused (perftest would read it as options).
    type: str
  device:
    description: RDMA device (C(-d)), for example C(erdma_0).
    type: str
  ib_port:
    description: Port of the device (C(-i)).
    type: int
  port:
    description: TCP port (1-65535) where the server listens for the connection setup (C(-p)).
    type: int
    default: 18515
  qps:
    description:
      - Number of queue pairs (C(-q)); the guide uses 16.
      - "Bandwidth tools only: latency tools measure one queue pair and refuse C(-q) with
        C(Multiple QPs only available on bw tests)."
    type: int
  size:
    description: Message size in bytes (C(-s)).
    type: int
  all_sizes:
    description: Measure every size from 2 bytes to 8 MiB (C(-a)).
    type: bool
    default: false
  duration:
    description: Run for this many seconds (C(-D)) instead of a number of iterations.
    type: int
  iterations:
    description: Number of iterations (C(-n)).
    type: int
  run_infinitely:
    description:
      - Print a row per interval until stopped (C(--run_infinitely)); O(timeout) stops it and the rows
        printed until then are the result.
    type: bool
    default: false
  rdma_cm:
    description: Set up the connection with RDMA_CM (C(-R)).
    type: bool
    default: false
  gid_index:
    description: GID index (C(-x)); eRDMA's differs per device.
    type: int
  report_gbits:
    description: Report bandwidth in Gb/s (C(--report_gbits), bandwidth tools only).
    type: bool
    default: true
  ignore_cpufreq:
    description: Do not stop on a cpufreq governor warning (C(-F)).
    type: bool
    default: true
  extra_args:
    description: More arguments, passed as given before the server address.
    type: list
    elements: str
    default: []
  timeout:
    description:
      - Seconds after which the tool is stopped (coreutils C(timeout), then killed 5 s later). At
        least 1 (coreutils reads 0 as no limit).
    type: int
    default: 60
  min_bw_gbps:
    description: Fail when the summary's C(bw_avg_gbps) is below this.
    type: float
  max_lat_us:
    description: Fail when the summary's C(t_avg_us) is above this.
    type: float
  output:
    description: Text of a previous perftest run to parse instead of running a tool.
    type: str
notes:
  - Needs the C(perftest) package and coreutils' C(timeout) unless O(output) is given.
  - The summary is the row of the largest message size for bandwidth tools (averaged over the repeated
    rows of C(--run_infinitely)) and the row of the smallest size for latency tools.
  - A server side of a latency tool prints no result rows; it then returns C(rows=[]) without failing.
attributes:
  check_mode:
    support: full
    description: In check mode nothing runs; O(output) is still parsed.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
seealso:
  - module: erdma.pd.ibv_devinfo_facts
"""

EXAMPLES = r"""
- name: Start the bandwidth server on the decode host in the background
  erdma.pd.rdma_perftest:
    tool: ib_write_bw
    role: server
    device: erdma_0
    qps: 16
    timeout: 90
  async: 120
  poll: 0
  register: _server_job
  delegate_to: decode-01

- name: Measure from the prefill host, at least 80% of a 25 Gb/s link
  erdma.pd.rdma_perftest:
    tool: ib_write_bw
    role: client
    server: 10.0.0.12
    device: erdma_0
    qps: 16
    min_bw_gbps: 20.0
  register: _bw

- name: Measure the latency of every message size over RDMA_CM
  erdma.pd.rdma_perftest:
    tool: ib_write_lat
    role: client
    server: 10.0.0.12
    rdma_cm: true
    all_sizes: true

- name: Parse a saved run
  erdma.pd.rdma_perftest:
    output: "{{ lookup('ansible.builtin.file', 'saved/ib_write_bw.txt') }}"
"""

RETURN = r"""
kind:
  description: C(bandwidth) or C(latency); null when there was no table.
  returned: always
  type: str
  sample: bandwidth
unit_reported:
  description: Unit that perftest printed (C(Gb/sec), C(MB/sec) or C(usec)); rows are always in Gb/s and us.
  returned: always
  type: str
  sample: Gb/sec
rows:
  description: One dict per result line, in order.
  returned: always
  type: list
  elements: dict
  sample:
    - {bytes: 65536, iterations: 5000, bw_peak_gbps: 51.05, bw_avg_gbps: 51.04, msg_rate_mpps: 0.097356}
summary:
  description: The row that the verdict uses (see notes), with C(samples), the number of rows of that size.
  returned: when rows were found
  type: dict
  sample: {bytes: 65536, iterations: 5000, bw_peak_gbps: 51.05, bw_avg_gbps: 51.04, bw_min_sample_gbps: 51.04,
           msg_rate_mpps: 0.097356, samples: 1}
warnings_in_output:
  description: Warning lines that perftest printed (CPU frequency, peak not measured).
  returned: always
  type: list
  elements: str
passed:
  description: Whether the thresholds held (true when none was given).
  returned: when rows were found
  type: bool
cmd:
  description: The command line that ran; empty in parse-only and check mode.
  returned: always
  type: list
  elements: str
rc:
  description: Exit code of the command (124 when O(timeout) stopped it).
  returned: when a command ran
  type: int
timed_out:
  description: Whether O(timeout) stopped the tool.
  returned: when a command ran
  type: bool
stdout:
  description: What the tool printed.
  returned: when a command ran
  type: str
stderr:
  description: What the tool printed on stderr.
  returned: when a command ran
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.erdma.pd.plugins.module_utils import rdma_perftest as perftest

ARGUMENT_SPEC = dict(
    tool=dict(type="str", default="ib_write_bw", choices=list(perftest.TOOLS)),
    role=dict(type="str", default="client", choices=["server", "client"]),
    server=dict(type="str"),
    device=dict(type="str"),
    ib_port=dict(type="int"),
    port=dict(type="int", default=18515),
    qps=dict(type="int"),
    size=dict(type="int"),
    all_sizes=dict(type="bool", default=False),
    duration=dict(type="int"),
    iterations=dict(type="int"),
    run_infinitely=dict(type="bool", default=False),
    rdma_cm=dict(type="bool", default=False),
    gid_index=dict(type="int"),
    report_gbits=dict(type="bool", default=True),
    ignore_cpufreq=dict(type="bool", default=True),
    extra_args=dict(type="list", elements="str", default=[]),
    timeout=dict(type="int", default=60),
    min_bw_gbps=dict(type="float"),
    max_lat_us=dict(type="float"),
    output=dict(type="str"),
)


def verdict(module, params, text, extra):
    """Parse the text, apply the thresholds and exit."""
    try:
        result = perftest.parse_output(text)
    except perftest.PerftestError as error:
        if params["role"] == "server" and extra.get("rc", 0) == 0:
            # A latency server prints its header but no rows: the client holds the numbers.
            module.exit_json(changed=False, kind=None, unit_reported=None, rows=[], warnings_in_output=[], **extra)
        module.fail_json(msg=str(error), **extra)
    failures = perftest.check_thresholds(result, params["min_bw_gbps"], params["max_lat_us"])
    warnings_in_output = result.pop("warnings")
    outcome = dict(result, warnings_in_output=warnings_in_output, passed=not failures, **extra)
    if failures:
        module.fail_json(msg="; ".join(failures), **outcome)
    module.exit_json(changed=False, **outcome)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("role", "client", ("server", "output"), True)],
        mutually_exclusive=[("duration", "iterations")],
        supports_check_mode=True,
    )
    params = module.params
    if params["output"] is not None:
        verdict(module, params, params["output"], {"cmd": []})
    try:
        args = perftest.perftest_args(params)  # argument mistakes fail here, in check mode too
    except perftest.PerftestError as error:
        module.fail_json(msg=str(error), cmd=[])
    if module.check_mode:
        module.exit_json(changed=False, skipped=True, msg="check mode: %s was not run" % params["tool"],
                         cmd=[params["tool"]] + args, kind=None, unit_reported=None, rows=[],
                         warnings_in_output=[])
    try:
        argv, rc, out, err, timed_out = perftest.run(module, params)
    except perftest.PerftestError as error:
        module.fail_json(msg=str(error), cmd=[])
    extra = dict(cmd=argv, rc=rc, stdout=out, stderr=err, timed_out=timed_out)
    # A run stopped by the timeout still counts when it printed rows (run_infinitely does that).
    if rc != 0 and not (timed_out and perftest.parse_table(out)[2]):
        module.fail_json(msg=perftest.failure_message(params, rc, out, err, timed_out), **extra)
    verdict(module, params, out + "\n" + err, extra)


if __name__ == "__main__":
    main()
