# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel module parameters: the eRDMA compat-mode decision and how it is carried out.

The field guide switches eRDMA to compat mode with three commands::

    echo 'options erdma compat_mode=Y' >> /etc/modprobe.d/erdma.conf
    rmmod erdma
    modprobe erdma compat_mode=Y

Run as written they append a duplicate line on every run and unload the driver under running
engines. This file turns them into a decision that can be planned (check mode), explained (diff)
and tested: the persistent setting is edited in place, and the live value is changed only when
it differs, by loading the module when it is absent or reloading it when nothing uses RDMA.

Every command goes through ``runner(argv) -> (rc, stdout, stderr)``, which is
``AnsibleModule.run_command`` in the module and a recording fake in the unit tests.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

MODULE_NAME = "erdma"
PARAM_NAME = "compat_mode"
CONFIG_PATH = "/etc/modprobe.d/erdma.conf"
SYSFS_ROOT = "/sys"
PROC_ROOT = "/proc"
UVERBS_PREFIX = "/dev/infiniband/uverbs"
DEFAULT_IN_USE_PROCESSES = ("vllm", "mooncake")
CONFIG_HEADER = (
    "# Ansible managed: erdma.pd.erdma_compat_mode keeps the eRDMA driver options here.\n"
    "# compat_mode=Y: RDMA_CM and out-of-band (TCP) connection setup, as NCCL and Mooncake need.\n"
)

TRUE_WORDS = ("y", "yes", "1", "true", "on")
FALSE_WORDS = ("n", "no", "0", "false", "off")

# Actions of the live decision.
NONE = "none"          # the running module already has the wanted value
LOAD = "load"          # the module is not loaded: modprobe it with the option
RELOAD = "reload"      # loaded with the other value and unused: rmmod + modprobe
REFUSE = "refuse"      # loaded with the other value and in use: stop, say why
DEFER = "defer"        # as refuse, but leave it to a reboot (the persistent file applies then)
SKIP = "skip"          # live changes not requested, or the module is absent and loading not wanted

_OPTIONS_LINE = re.compile(r"^(\s*options\s+)(\S+)(\s+.*)?$")


class KmodError(Exception):
    """A command failed or the kernel reports something other than what was asked for."""


def parse_bool(text):
    """Return True/False for a kernel boolean parameter value ('Y', 'N', '1', ...), None otherwise."""
    if text is None:
        return None
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def bool_word(value):
    """The form the kernel prints and the guide writes: 'Y' or 'N'."""
    return "Y" if value else "N"


def module_dir(sysfs_root=None, module=MODULE_NAME):
    return os.path.join(sysfs_root or SYSFS_ROOT, "module", module)


def param_path(sysfs_root=None, module=MODULE_NAME, param=PARAM_NAME):
    return os.path.join(module_dir(sysfs_root, module), "parameters", param)


def read_live(sysfs_root=None, module=MODULE_NAME, param=PARAM_NAME):
    """What the running kernel says: {'loaded', 'value' (True/False/None), 'raw', 'refcnt'}."""
    state = {"loaded": os.path.isdir(module_dir(sysfs_root, module)), "value": None, "raw": None,
             "refcnt": None}
    if not state["loaded"]:
        return state
    try:
        with open(param_path(sysfs_root, module, param)) as handle:
            state["raw"] = handle.read().strip()
        state["value"] = parse_bool(state["raw"])
    except (IOError, OSError):
        pass
    try:
        with open(os.path.join(module_dir(sysfs_root, module), "refcnt")) as handle:
            state["refcnt"] = int(handle.read().strip())
    except (IOError, OSError, ValueError):
        pass
    return state


def read_text(path):
    """The file's text, or None when it does not exist."""
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        if getattr(exc, "errno", None) == 2:
            return None
        raise


def persistent_value(text, module=MODULE_NAME, param=PARAM_NAME):
    """The value that modprobe would pass from this file (the last one written wins), or None."""
    found = None
    for line in (text or "").splitlines():
        match = _OPTIONS_LINE.match(line.split("#", 1)[0])
        if not match or match.group(2) != module:
            continue
        for token in (match.group(3) or "").split():
            name, sep, value = token.partition("=")
            if name == param and sep:
                found = parse_bool(value)
    return found


def render_config(text, want, module=MODULE_NAME, param=PARAM_NAME):
    """The file with `options <module> <param>=Y|N` set, changing as little as possible.

    Existing `<param>=` tokens on `options <module>` lines are rewritten in place; other options and
    comments stay. Without any such token, one line is appended. A missing file gets a header.
    """
    word = bool_word(want)
    if text is None or not text.strip():
        return "%soptions %s %s=%s\n" % (CONFIG_HEADER, module, param, word)
    lines = text.splitlines(True)
    rewritten = False
    for index, line in enumerate(lines):
        body, hash_, comment = line.partition("#")
        match = _OPTIONS_LINE.match(body.rstrip("\n"))
        if not match or match.group(2) != module:
            continue
        tokens = (match.group(3) or "").split()
        new_tokens = []
        for token in tokens:
            name, sep, value = token.partition("=")
            if name == param and sep:
                rewritten = True
                if parse_bool(value) is not want:
                    token = "%s=%s" % (param, word)
            new_tokens.append(token)
        if new_tokens != tokens:
            ending = "\n" if line.endswith("\n") else ""
            trailer = (" " + hash_ + comment.rstrip("\n")) if hash_ else ""
            lines[index] = "%s%s %s%s%s" % (match.group(1), module, " ".join(new_tokens), trailer, ending)
    result = "".join(lines)
    if not rewritten:
        if not result.endswith("\n"):
            result += "\n"
        result += "options %s %s=%s\n" % (module, param, word)
    return result


def find_uverbs_users(proc_root=None, prefix=UVERBS_PREFIX):
    """Processes holding a uverbs device open: [{'pid', 'comm', 'device'}], sorted by pid."""
    proc_root = proc_root or PROC_ROOT
    users = []
    try:
        pids = [entry for entry in os.listdir(proc_root) if entry.isdigit()]
    except OSError:
        return users
    for pid in sorted(pids, key=int):
        fd_dir = os.path.join(proc_root, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or not ours to read
        devices = set()
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith(prefix):
                devices.add(target)
        if not devices:
            continue
        comm = ""
        try:
            with open(os.path.join(proc_root, pid, "comm")) as handle:
                comm = handle.read().strip()
        except (IOError, OSError):
            pass
        for device in sorted(devices):
            users.append({"pid": int(pid), "comm": comm, "device": device})
    return users


def find_processes(runner, patterns):
    """Running processes whose command line matches one of the patterns, via `pgrep -a -f`."""
    patterns = [p for p in (patterns or []) if p]
    if not patterns:
        return []
    regex = "|".join(patterns)
    rc, out, err = runner(["pgrep", "-a", "-f", regex])
    if rc == 1:
        return []  # pgrep: nothing matched
    if rc != 0:
        raise KmodError("pgrep -a -f '%s' failed (rc=%s): %s" % (regex, rc, (err or out).strip()))
    found = []
    for line in out.splitlines():
        pid, dummy, cmdline = line.strip().partition(" ")
        if pid.isdigit():
            found.append({"pid": int(pid), "cmdline": cmdline})
    return found


def decide(live, want, in_use, apply_live=True, load_if_absent=True, allow_reload_in_use=False,
           on_in_use="fail"):
    """The live action and a sentence saying why.

    live: read_live()'s dict; in_use: a list of reasons the driver is busy (empty when idle).
    """
    word = bool_word(want)
    if not apply_live:
        return SKIP, "live changes not requested (live=false): only the persistent setting is managed"
    if not live["loaded"]:
        if load_if_absent:
            return LOAD, "module %s is not loaded: load it with %s=%s" % (MODULE_NAME, PARAM_NAME, word)
        return SKIP, "module %s is not loaded and load=false: the persistent setting applies at the next load" % (
            MODULE_NAME)
    if live["value"] is want:
        return NONE, "module %s is loaded with %s=%s already" % (MODULE_NAME, PARAM_NAME, live["raw"])
    current = live["raw"] if live["raw"] is not None else "unreadable"
    if in_use and not allow_reload_in_use:
        why = "module %s is loaded with %s=%s but RDMA is in use (%s)" % (
            MODULE_NAME, PARAM_NAME, current, "; ".join(in_use))
        return (DEFER if on_in_use == "defer" else REFUSE), why
    why = "module %s is loaded with %s=%s: reload it with %s=%s" % (
        MODULE_NAME, PARAM_NAME, current, PARAM_NAME, word)
    if in_use:
        why += " although RDMA is in use (%s), as allow_reload_in_use=true asks" % "; ".join(in_use)
    return RELOAD, why


def describe_in_use(uverbs_users, processes):
    """Human reasons, one per busy thing."""
    reasons = []
    for user in uverbs_users:
        reasons.append("pid %s (%s) has %s open" % (user["pid"], user["comm"] or "?", user["device"]))
    for proc in processes:
        reasons.append("pid %s runs '%s'" % (proc["pid"], proc["cmdline"][:120]))
    return reasons


def load(runner, want, module=MODULE_NAME, param=PARAM_NAME):
    argv = ["modprobe", module, "%s=%s" % (param, bool_word(want))]
    rc, out, err = runner(argv)
    if rc != 0:
        raise KmodError("%s failed (rc=%s): %s" % (" ".join(argv), rc, (err or out).strip()))
    return [argv]


def reload(runner, want, module=MODULE_NAME, param=PARAM_NAME):
    argv = ["rmmod", module]
    rc, out, err = runner(argv)
    if rc != 0:
        raise KmodError("rmmod %s failed (rc=%s): %s. Something still holds the module: stop it (see "
                        "`lsmod | grep %s`, `ls -l /proc/*/fd | grep uverbs`) or reboot; the persistent "
                        "setting applies at boot." % (module, rc, (err or out).strip(), module))
    return [argv] + load(runner, want, module, param)
