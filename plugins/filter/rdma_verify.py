# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the rdma_verify role (logic in plugin_utils/rdma_verify_report.py and link_schedule.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.erdma.pd.plugins.plugin_utils.link_schedule import ScheduleError
from ansible_collections.erdma.pd.plugins.plugin_utils import rdma_verify_report as report


def _published(hostvars, names):
    """name -> the _rdma_verify_host fact that the host published ({} when it never got that far)."""
    return dict((name, dict(hostvars[name].get("_rdma_verify_host") or {})) for name in names)


def _runs(hostvars, names):
    return [dict(run) for name in names for run in hostvars[name].get("_rdma_verify_runs") or []]


def rdma_verify_plan(hostvars, prefill, decode, names, max_rounds=0):
    """Rounds of disjoint prefill -> decode pairs to measure, and the verdict of the pairs that are not."""
    try:
        return report.plan(list(prefill), list(decode), _published(hostvars, names), int(max_rounds))
    except (ScheduleError, report.ReportError) as exc:
        raise AnsibleFilterError(str(exc))


def rdma_verify_report(hostvars, names, the_plan, settings, generated_at):
    """The verify report (hosts, links with bandwidth and latency verdicts, rounds) as a dict."""
    try:
        return report.build_report(_published(hostvars, names), _runs(hostvars, names), the_plan,
                                   dict(settings), generated_at)
    except report.ReportError as exc:
        raise AnsibleFilterError(str(exc))


def rdma_verify_markdown(the_report):
    """The verify report as Markdown."""
    return report.markdown(the_report)


def rdma_verify_part(pairs, host):
    """{'serves': client, 'measures': server} of `host` in one round (empty strings when idle)."""
    try:
        return report.part_in_round([list(pair) for pair in pairs], host)
    except report.ReportError as exc:
        raise AnsibleFilterError(str(exc))


def rdma_verify_device_problems(devices, wanted):
    """Sentences for wanted devices that are missing or have no PORT_ACTIVE port."""
    return report.device_problems(devices, list(wanted))


class FilterModule(object):
    def filters(self):
        return {
            "rdma_verify_plan": rdma_verify_plan,
            "rdma_verify_report": rdma_verify_report,
            "rdma_verify_markdown": rdma_verify_markdown,
            "rdma_verify_part": rdma_verify_part,
            "rdma_verify_device_problems": rdma_verify_device_problems,
        }
