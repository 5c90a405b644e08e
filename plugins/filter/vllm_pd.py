# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the vllm_pd role; the logic lives in module_utils/vllm_pd.py (unit-tested there)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.erdma.pd.plugins.module_utils import vllm_pd


def _wrap(func):
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except vllm_pd.SettingsError as exc:
            raise AnsibleFilterError(str(exc))
    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


def connector_config(settings):
    return vllm_pd.connector_config(dict(settings))


def engine_args(settings):
    return vllm_pd.engine_args(dict(settings))


def systemd_command(argv):
    return vllm_pd.systemd_command_line(list(argv))


def consistency(hosts, require_both_stages=True):
    return vllm_pd.consistency_problems(dict((k, dict(v)) for k, v in dict(hosts).items()),
                                        require_both_stages=bool(require_both_stages))


def missing_pins(pins, installed):
    return vllm_pd.missing_pins(list(pins or []), dict(installed or {}))


class FilterModule(object):
    """vllm_pd filters."""

    def filters(self):
        return {
            "vllm_pd_connector_config": _wrap(connector_config),
            "vllm_pd_engine_args": _wrap(engine_args),
            "vllm_pd_systemd_command": _wrap(systemd_command),
            "vllm_pd_consistency": _wrap(consistency),
            "vllm_pd_missing_pins": _wrap(missing_pins),
        }
