# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of playbooks/acceptance.yml (logic in plugin_utils/acceptance_report.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.erdma.pd.plugins.plugin_utils import acceptance_report as acceptance


def _fact(hostvars, names, fact):
    return [dict(hostvars[name].get(fact) or {"host": name, "reached": False}) for name in names]


def acceptance_report_filter(hostvars, verify, engines, masters, proxies, generated_at):
    """The acceptance report from the verify report and what the engines, the master and the proxy published."""
    stores = [dict(hostvars[name].get("_acceptance_store") or {}) for name in masters]
    completions = [dict(hostvars[name].get("_acceptance_completion") or {}) for name in proxies]
    return acceptance.build(dict(verify or {}), _fact(hostvars, engines, "_acceptance_engine"),
                            stores[0] if masters else None, completions[0] if proxies else None, generated_at)


def acceptance_completion(status, body, msg, metrics_before, metrics_after):
    """Status, text and decode's external KV hits of the acceptance completion."""
    return acceptance.completion_entry(status, body, msg, metrics_before, metrics_after)


def acceptance_markdown(report):
    """The acceptance report as Markdown (the verify report included)."""
    return acceptance.markdown(report)


class FilterModule(object):
    def filters(self):
        return {
            "acceptance_report": acceptance_report_filter,
            "acceptance_completion": acceptance_completion,
            "acceptance_markdown": acceptance_markdown,
        }
