# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that put inventory values into systemd units safely; logic in plugin_utils/systemd_unit.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.erdma.pd.plugins.plugin_utils import systemd_unit


def _wrap(func):
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except systemd_unit.UnitValueError as exc:
            raise AnsibleFilterError(str(exc))
    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


def systemd_exec_start(argv, variable="ExecStart"):
    return systemd_unit.exec_start(list(argv) if not isinstance(argv, str) else argv, variable)


def systemd_value(value, variable="value"):
    return systemd_unit.escape_specifiers(value, variable)


def systemd_path_list(paths, variable="paths"):
    return systemd_unit.path_list(list(paths or []), variable)


def systemd_environment_file(environment, variable="environment"):
    return systemd_unit.environment_file(dict(environment or {}), variable)


def systemd_environment_problems(environment, variable="environment"):
    return systemd_unit.environment_problems(dict(environment or {}), variable)


class FilterModule(object):
    def filters(self):
        return {
            "systemd_exec_start": _wrap(systemd_exec_start),
            "systemd_value": _wrap(systemd_value),
            "systemd_path_list": _wrap(systemd_path_list),
            "systemd_environment_file": _wrap(systemd_environment_file),
            "systemd_environment_problems": _wrap(systemd_environment_problems),
        }
