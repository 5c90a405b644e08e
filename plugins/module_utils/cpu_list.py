# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CPU list syntax of the kernel and of systemd ('0-3,8'), in one place.

The same text becomes CPUAffinity= in a unit, --cpuset-cpus of a container, and is compared with
/sys/devices/system/cpu/online; the controller's input checks (plugin_utils), the Jinja test that
guards the unit template and the container module (module_utils) all read it here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

_SYNTAX = re.compile(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*\Z")
# A value that passes is written into a unit file as it is: no line breaks or other control characters.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalize_cpu_list(text):
    """'1, 3' -> '1,3': spaces after commas go; any other space stays and fails the syntax ('0 7' is not
    the list 07, and systemd would read it as 0 and 7)."""
    return re.sub(r",[ \t]+", ",", str(text).strip())


def expand_cpu_list(text):
    """'0-3,8' -> [0, 1, 2, 3, 8]; ValueError when it is not a CPU list or a range runs backwards."""
    text = normalize_cpu_list(text)
    if not _SYNTAX.match(text):
        raise ValueError(text)
    cpus = set()
    for part in text.split(","):
        first, _sep, last = part.partition("-")
        low, high = int(first), int(last or first)
        if high < low:
            raise ValueError(part)
        cpus.update(range(low, high + 1))
    return sorted(cpus)


def is_cpu_list(value, empty_ok=True):
    """Whether VALUE is a CPU list (empty or None counts as one when it means 'no binding')."""
    if value in (None, ""):
        return empty_ok
    if _CONTROL.search(str(value)):
        return False
    try:
        expand_cpu_list(value)
    except ValueError:
        return False
    return True
