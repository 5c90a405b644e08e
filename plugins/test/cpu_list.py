# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja test: is a value a CPU list (module_utils/cpu_list.py)? Guards CPUAffinity= in the unit template."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.erdma.pd.plugins.module_utils.cpu_list import is_cpu_list


def cpu_list(value, empty_ok=True):
    return is_cpu_list(value, empty_ok=bool(empty_ok))


class TestModule(object):
    """CPU list test."""

    def tests(self):
        return {"cpu_list": cpu_list}
