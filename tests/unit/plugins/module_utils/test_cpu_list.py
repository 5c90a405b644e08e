"""The one CPU list parser (module_utils/cpu_list.py) behind the input checks, the unit's assert and the
container module's --cpuset-cpus."""
import pathlib

import pytest

from ansible_collections.erdma.pd.plugins.module_utils.cpu_list import expand_cpu_list, is_cpu_list


@pytest.mark.parametrize("text, cpus", [
    ("0", [0]), ("0-3", [0, 1, 2, 3]), ("0,2,4-5", [0, 2, 4, 5]), ("8-9,0", [0, 8, 9]), ("1, 3", [1, 3]),
    ("0-1\n", [0, 1]),  # /sys/devices/system/cpu/online as read, newline included
])
def test_cpu_lists_expand_as_the_kernel_writes_them(text, cpus):
    assert expand_cpu_list(text) == cpus


def test_this_machines_online_cpus_parse():
    online = pathlib.Path("/sys/devices/system/cpu/online").read_text()
    assert len(expand_cpu_list(online)) >= 1


@pytest.mark.parametrize("bad", ["0-", "all", "1,,2", "3-1", "-1", "0 7", "0;7", "0\nExecStartPre=/bin/sh", "0\n"])
def test_what_is_not_a_cpu_list(bad):
    assert not is_cpu_list(bad)


def test_empty_means_no_binding_unless_a_list_is_required():
    assert is_cpu_list("") and is_cpu_list(None)
    assert not is_cpu_list("", empty_ok=False)
