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
it differs, by loading the module when it is absent or reloading it when nothing uses RDMA
(no open uverbs device, no protection domain or cm_id of a process in `rdma resource show`), and
never when the RDMA core in memory is older than the one on disk (a fresh OFED/erdma install),
where the reload would leave the host without erdma.

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
# `rdma resource show` lists that name every process a driver reload would cut off.
RDMA_RESOURCE_KINDS = ("pd", "cm_id")
CONFIG_HEADER = (
    "# Ansible managed: erdma.pd.erdma_compat_mode keeps the eRDMA driver options here.\n"
    "# compat_mode=Y: RDMA_CM and out-of-band (TCP) connection setup, as NCCL and Mooncake need.\n"
)

# Actions of the live decision.
NONE = "none"          # the running module already has the wanted value
LOAD = "load"          # the module is not loaded: modprobe it with the option
RELOAD = "reload"      # loaded with the other value and unused: rmmod + modprobe
REFUSE = "refuse"      # loaded with the other value and in use: stop, say why
DEFER = "defer"        # as refuse, or the RDMA core in memory is stale: leave it to a reboot
SKIP = "skip"          # live changes not requested, or the module is absent and loading not wanted

# `timeout` exits with this code when it had to stop the command.
TIMEOUT_RC = 124

_OPTIONS_LINE = re.compile(r"^(\s*options\s+)(\S+)(\s+.*)?$")
# The kernel's loader prints these (kernel/module/version.c and main.c; kernel/module.c before 5.19)
# when a module was built against other symbol versions than the kernel or modules in memory.
_SYMBOL_VERSION_ERRORS = ("disagrees about version of symbol", "Unknown symbol", "version magic")


class KmodError(Exception):
    """A command failed or the kernel reports something other than what was asked for."""


def parse_bool(text):
    """The value a kernel `bool` parameter takes from `text`, or None when a kernel would reject it.

    The kernel parses bool parameters with kstrtobool(), which looks only at the first character
    (y/Y/1 true, n/N/0 false) or, after o/O, the second (on true, off false); an absent value
    (`compat_mode` alone) means true. 5.19 added t/f ("true"/"false") and 6.x e/d, but Ubuntu
    22.04's 5.15 refuses them and refuses to load the module, so they count as invalid here: a
    file holding them is rewritten. Everything else ("", "maybe", "2") is invalid on every kernel.
    This is the one parser of the collection for `compat_mode` (modprobe.d and sysfs alike).
    """
    if text is None:
        return None
    word = str(text).strip()
    if len(word) >= 2 and word[0] == word[-1] == '"':
        word = word[1:-1]  # modprobe.d allows param="value"; the kernel strips the quotes
    if not word:
        return None
    first = word[0].lower()
    if first in ("y", "1"):
        return True
    if first in ("n", "0"):
        return False
    if first == "o" and len(word) > 1:
        return {"n": True, "f": False}.get(word[1].lower())
    return None


def _same_name(left, right):
    """modprobe and the kernel treat '-' and '_' alike in module and parameter names."""
    return left.replace("-", "_") == right.replace("-", "_")


def option_tokens(text, module=MODULE_NAME):
    """[(line index, name, value or None)] of the parameters on `options <module>` lines, in order."""
    found = []
    for index, line in enumerate((text or "").splitlines()):
        match = _OPTIONS_LINE.match(line.split("#", 1)[0])
        if not match or not _same_name(match.group(2), module):
            continue
        for token in (match.group(3) or "").split():
            name, sep, value = token.partition("=")
            found.append((index, name, value if sep else None))
    return found


def find_param(text, module=MODULE_NAME, param=PARAM_NAME):
    """(set, value, raw) of the last `<param>` on `options <module>` lines: what modprobe passes last.

    set is False when no line sets it; value is parse_bool()'s reading (None for an invalid one);
    raw is the text after '=' (None for a bare `compat_mode`, which the kernel takes as true).
    """
    hit = (False, None, None)
    for _index, name, value in option_tokens(text, module):
        if _same_name(name, param):
            hit = (True, True if value is None else parse_bool(value), value)
    return hit


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
    return find_param(text, module, param)[1]


def render_config(text, want, module=MODULE_NAME, param=PARAM_NAME):
    """The file with `options <module> <param>=Y|N` set, changing as little as possible.

    Existing `<param>` tokens on `options <module>` lines whose value is not `want` (including
    values a kernel would reject) are rewritten in place; other options and comments stay. Without
    any such token, one line is appended. A missing file gets a header.
    """
    word = bool_word(want)
    if text is None or not text.strip():
        return "%soptions %s %s=%s\n" % (CONFIG_HEADER, module, param, word)
    lines = text.splitlines(True)
    wrong_lines = set()
    present = False
    for index, name, value in option_tokens(text, module):
        if _same_name(name, param):
            present = True
            if (True if value is None else parse_bool(value)) is not want:
                wrong_lines.add(index)
    for index in sorted(wrong_lines):
        line = lines[index]
        body, hash_, comment = line.partition("#")
        match = _OPTIONS_LINE.match(body.rstrip("\n"))
        tokens = [("%s=%s" % (param, word)) if _same_name(token.partition("=")[0], param) else token
                  for token in (match.group(3) or "").split()]
        ending = "\n" if line.endswith("\n") else ""
        trailer = (" " + hash_ + comment.rstrip("\n")) if hash_ else ""
        lines[index] = "%s%s %s%s%s" % (match.group(1), match.group(2), " ".join(tokens), trailer, ending)
    result = "".join(lines)
    if not present:
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


def parse_rdma_resource(text):
    """Owners of the objects listed by `rdma resource show pd|cm_id|qp|ctx` (iproute2).

    Each object is one line: `link <dev>/<port> ...` or `dev <dev> ...`, then `pid <n> comm <name>`
    when a process owns it; objects of kernel users (ib_core, ib_srp, rpcrdma) have no pid (or
    `pid 0` in iproute2 before 5.x) and their name in brackets. Returns [{'device', 'pid', 'comm'}]
    of the objects owned by processes, one per object.
    """
    owners = []
    for line in (text or "").splitlines():
        words = line.split()
        if len(words) < 2 or words[0] not in ("link", "dev"):
            continue
        # Keys and values alternate, but a value may be missing (older releases), so look the two
        # keys up wherever they sit.
        fields = {}
        for position in range(2, len(words) - 1):
            if words[position] in ("pid", "comm"):
                fields[words[position]] = words[position + 1]
        pid = fields.get("pid", "0")
        if not pid.isdigit() or int(pid) == 0:
            continue
        owners.append({"device": words[1].split("/", 1)[0], "pid": int(pid), "comm": fields.get("comm", "")})
    return owners


def find_rdma_resource_users(runner, rdma_bin, device_prefix=MODULE_NAME, kinds=RDMA_RESOURCE_KINDS):
    """Processes owning protection domains or connection ids on the eRDMA devices, via `rdma resource`.

    Every verbs user allocates a protection domain and every RDMA_CM user (also a listener that has
    not connected yet) a cm_id, so these two lists name each process that a driver reload would cut
    off, which the collection's own Mooncake master (plain TCP) is not. Returns (owners, notes):
    owners [{'device', 'pid', 'comm', 'kind'}], notes say why a list could not be read.
    """
    owners, notes = [], []
    if not rdma_bin:
        return owners, ["`rdma` (iproute2) is not installed: only open uverbs devices were looked at"]
    seen = set()
    for kind in kinds:
        argv = [rdma_bin, "resource", "show", kind]
        rc, out, err = runner(argv)
        if rc != 0:
            notes.append("%s: %s" % (" ".join(argv), failure_text(rc, out, err)))
            continue
        for owner in parse_rdma_resource(out):
            key = (owner["device"], owner["pid"])
            if owner["device"].startswith(device_prefix) and key not in seen:
                seen.add(key)
                owners.append(dict(owner, kind=kind))
    return owners, notes


def describe_in_use(uverbs_users, resource_owners=()):
    """Human reasons, one per busy thing."""
    reasons = []
    for user in uverbs_users:
        reasons.append("pid %s (%s) has %s open" % (user["pid"], user["comm"] or "?", user["device"]))
    for owner in resource_owners:
        reasons.append("pid %s (%s) holds a %s on %s (rdma resource show %s)" % (
            owner["pid"], owner["comm"] or "?", owner["kind"], owner["device"], owner["kind"]))
    return reasons


def failure_text(rc, out, err):
    """What a failed command said, or that `timeout` stopped it."""
    if rc == TIMEOUT_RC:
        return "timed out (rc=%s)" % rc
    return "rc=%s: %s" % (rc, (err or out or "").strip())


def modinfo_field(runner, field, module=MODULE_NAME):
    """`modinfo -F <field> <module>` of the file modprobe would load; None when modinfo fails."""
    rc, out, _err = runner(["modinfo", "-F", field, module])
    value = (out or "").strip()
    return value if rc == 0 and value else None


def read_sysfs_field(name, field, sysfs_root=None):
    try:
        with open(os.path.join(module_dir(sysfs_root, name), field)) as handle:
            return handle.read().strip() or None
    except (IOError, OSError):
        return None


def find_stale_core(runner, installed_now=False, sysfs_root=None, module=MODULE_NAME):
    """Reasons why loading the module from disk now would meet an RDMA core it was not built for.

    An OFED or erdma install replaces ib_core, ib_uverbs and friends on disk, but the kernel keeps
    the old ones in memory until they are unloaded; the new erdma then fails to load with
    "disagrees about version of symbol ...", and after an `rmmod erdma` the host has no erdma at
    all. A module that erdma depends on and that is loaded from another file than the one on disk
    (its srcversion differs) means exactly that. When the run has just installed the driver and a
    dependency cannot be compared (no srcversion in sysfs or modinfo), it counts as stale too.
    """
    depends = modinfo_field(runner, "depends", module)
    reasons = []
    for dependency in [d for d in (depends or "").split(",") if d]:
        if not os.path.isdir(module_dir(sysfs_root, dependency)):
            continue  # not loaded: modprobe loads the file on disk, which matches
        loaded = read_sysfs_field(dependency, "srcversion", sysfs_root)
        on_disk = modinfo_field(runner, "srcversion", dependency)
        if loaded and on_disk and loaded != on_disk:
            reasons.append("%s in memory (srcversion %s) is not the %s on disk (srcversion %s)"
                           % (dependency, loaded, dependency, on_disk))
        elif installed_now and not (loaded and on_disk):
            reasons.append("%s is loaded and the driver was installed in this run, but its srcversion cannot "
                           "be compared with the file on disk" % dependency)
    if installed_now and depends is None:
        reasons.append("the driver was installed in this run and `modinfo -F depends %s` finds no module "
                       "to compare with the running kernel's RDMA core" % module)
    return reasons


def kernel_load_errors(dmesg_text, module=MODULE_NAME, limit=6):
    """The kernel log's last lines about `module` failing to link (symbol versions, vermagic)."""
    pattern = re.compile(r"(^|\]\s*)%s: " % re.escape(module))
    lines = [line.strip() for line in (dmesg_text or "").splitlines()
             if pattern.search(line) and any(marker in line for marker in _SYMBOL_VERSION_ERRORS)]
    return lines[-limit:]


def decide(live, want, in_use, apply_live=True, load_if_absent=True, allow_reload_in_use=False,
           on_in_use="fail", stale_core=()):
    """The live action and a sentence saying why.

    live: read_live()'s dict; in_use: reasons the driver is busy (empty when idle); stale_core:
    find_stale_core()'s reasons (empty when the module on disk can be loaded now).
    """
    word = bool_word(want)
    if not apply_live:
        return SKIP, "live changes not requested (live=false): only the persistent setting is managed"
    stale = ("; ".join(stale_core) + ": %s is not loaded from disk now (a module built against another RDMA "
             "core fails with \"disagrees about version of symbol\"), %s=%s applies at the reboot"
             % (MODULE_NAME, PARAM_NAME, word)) if stale_core else ""
    if not live["loaded"]:
        if not load_if_absent:
            return SKIP, "module %s is not loaded and load=false: the persistent setting applies at the next load" % (
                MODULE_NAME)
        if stale:
            return DEFER, "module %s is not loaded and %s" % (MODULE_NAME, stale)
        return LOAD, "module %s is not loaded: load it with %s=%s" % (MODULE_NAME, PARAM_NAME, word)
    if live["value"] is want:
        return NONE, "module %s is loaded with %s=%s already" % (MODULE_NAME, PARAM_NAME, live["raw"])
    current = live["raw"] if live["raw"] is not None else "unreadable"
    if stale:
        return DEFER, "module %s is loaded with %s=%s and is left loaded: %s" % (
            MODULE_NAME, PARAM_NAME, current, stale)
    if in_use and not allow_reload_in_use:
        why = "module %s is loaded with %s=%s but RDMA is in use (%s)" % (
            MODULE_NAME, PARAM_NAME, current, "; ".join(in_use))
        return (DEFER if on_in_use == "defer" else REFUSE), why
    why = "module %s is loaded with %s=%s: reload it with %s=%s" % (
        MODULE_NAME, PARAM_NAME, current, PARAM_NAME, word)
    if in_use:
        why += " although RDMA is in use (%s), as allow_reload_in_use=true asks" % "; ".join(in_use)
    return RELOAD, why


def modprobe_argv(want, module=MODULE_NAME, param=PARAM_NAME):
    return ["modprobe", module, "%s=%s" % (param, bool_word(want))]


def load(runner, want, module=MODULE_NAME, param=PARAM_NAME):
    argv = modprobe_argv(want, module, param)
    rc, out, err = runner(argv)
    if rc != 0:
        raise KmodError("%s failed (%s)" % (" ".join(argv), failure_text(rc, out, err)))
    return [argv]


def reload(runner, want, previous, module=MODULE_NAME, param=PARAM_NAME):
    """rmmod, then modprobe with `want`; when that fails, modprobe with `previous` so that the host
    keeps a driver. Raises KmodError saying which of the two states the host is left in."""
    argv = ["rmmod", module]
    rc, out, err = runner(argv)
    if rc != 0:
        raise KmodError("rmmod %s failed (%s). Something still holds the module: stop it (see "
                        "`lsmod | grep %s`, `ls -l /proc/*/fd | grep uverbs`) or reboot; the persistent "
                        "setting applies at boot." % (module, failure_text(rc, out, err), module))
    try:
        return [argv] + load(runner, want, module, param)
    except KmodError as first:
        restore = modprobe_argv(previous, module, param)
        rc, out, err = runner(restore)
        if rc == 0:
            raise KmodError("%s; %s is loaded again with %s=%s as before (%s)"
                            % (first, module, param, bool_word(previous), " ".join(restore)))
        raise KmodError("%s, and loading it back with %s=%s failed too (%s): %s is NOT loaded now"
                        % (first, param, bool_word(previous), failure_text(rc, out, err), module))
