# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a host tool with a deadline: coreutils `timeout`, then SIGKILL a few seconds later.

AnsibleModule.run_command has no deadline of its own, and RDMA tools can hang for good on a driver
that is stuck (a device in reset, a firmware command that never completes): a fact module that
waits on them would hold the whole play.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

KILL_AFTER_SECONDS = 5
# What `timeout` returns when it stopped the command (124), or when it had to kill it (128 + 9).
TIMED_OUT_RCS = (124, 137)


class BoundedCommandError(Exception):
    """The deadline cannot be enforced on this host."""


def check_timeout(seconds, option="timeout"):
    """Refuse a deadline that is none: `timeout 0 CMD` runs CMD without any limit."""
    if seconds is None or seconds < 1:
        raise BoundedCommandError(
            "%s must be at least 1 second (found %s): 0 would let the command run without a limit" % (option, seconds)
        )


def bounded_argv(timeout_path, argv, seconds):
    return [timeout_path, "--kill-after=%d" % KILL_AFTER_SECONDS, str(seconds)] + list(argv)


def run_bounded(module, argv, seconds):
    """Run argv for at most `seconds`; return (rc, stdout, stderr, timed_out)."""
    check_timeout(seconds)
    timeout_path = module.get_bin_path("timeout")
    if not timeout_path:
        raise BoundedCommandError("timeout (coreutils) was not found: it bounds how long %s may run" % argv[0])
    rc, out, err = module.run_command(bounded_argv(timeout_path, argv, seconds))
    return rc, out or "", err or "", rc in TIMED_OUT_RCS
