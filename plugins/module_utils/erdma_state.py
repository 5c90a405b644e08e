# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the eRDMA driver looks like on a host: module, version, compat mode, device nodes, counters.

Every reader takes a `root` directory so that the same code reads `/` on a host and a prepared
directory tree in tests.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re

from ansible_collections.erdma.pd.plugins.module_utils.bounded_command import run_bounded
from ansible_collections.erdma.pd.plugins.module_utils import kmod

EADM_PACKAGE = "eadm"
MODULE_NAME = "erdma"
# Seconds that eadm or modinfo may take before they are stopped (they answer in well under one).
DEFAULT_TIMEOUT = 30

_STAT_LINE = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*:\s*(\d+)\s*$")
_EADM_VERSION = re.compile(r"driver version:\s*(\S+)", re.IGNORECASE)


def parse_eadm_stat(text):
    """`eadm stat` prints one counter a line as `name : value`; return {name: int}.

    Lines that are not counters (titles, blank lines, messages) are skipped, not errors: the tool's
    layout differs between releases and the counters are what callers need.
    """
    stats = {}
    for line in (text or "").splitlines():
        match = _STAT_LINE.match(line)
        if match:
            stats[match.group(1)] = int(match.group(2))
    return stats


def parse_eadm_version(text):
    """`eadm ver` says 'Query kernel driver version: 0.2.38'; return '0.2.38' or None."""
    match = _EADM_VERSION.search(text or "")
    return match.group(1) if match else None


def as_bool(text):
    """A kernel bool parameter's value (Y/N from sysfs, Y/N/1/0/on/off in modprobe.d); None if invalid.

    The one parser of the collection, shared with erdma_compat_mode: kmod.parse_bool.
    """
    return kmod.parse_bool(text)


def parse_modprobe_compat_mode(files):
    """Find the persistent compat_mode in modprobe.d files given as [(path, text)] in load order.

    modprobe reads /etc/modprobe.d/*.conf in name order and the last `options erdma compat_mode=`
    wins, so the last match is the one that applies at the next `modprobe erdma`. Returns (value,
    path); value is None when no file sets it, or when the last setting is one the kernel rejects.
    """
    found = (None, None)
    for path, text in files:
        is_set, value, _raw = kmod.find_param(text)
        if is_set:
            found = (value, path)
    return found


def _path(root, absolute):
    return os.path.join(root, absolute.lstrip("/"))


def _read_file(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _read(root, absolute):
    return _read_file(_path(root, absolute))


def module_loaded(root):
    """A loaded module is listed in /proc/modules (what lsmod prints)."""
    modules = _read(root, "/proc/modules") or ""
    return any(line.split(" ", 1)[0] == MODULE_NAME for line in modules.splitlines())


def modprobe_files(root):
    """[(path as the host sees it, text)] of /etc/modprobe.d/*.conf, in the order modprobe reads them."""
    found = sorted(glob.glob(_path(root, "/etc/modprobe.d/*.conf")))
    return [("/etc/modprobe.d/" + os.path.basename(path), _read_file(path) or "") for path in found]


def device_nodes(root):
    """Device nodes that userspace verbs need: rdma_cm for RDMA_CM, uverbsN per device."""
    uverbs = sorted(os.path.basename(p) for p in glob.glob(_path(root, "/dev/infiniband/uverbs*")))
    return os.path.exists(_path(root, "/dev/infiniband/rdma_cm")), uverbs


def read_host_state(root="/"):
    """Everything that can be read from files, without running a command."""
    compat_live = _read(root, "/sys/module/erdma/parameters/compat_mode")
    persistent, persistent_file = parse_modprobe_compat_mode(modprobe_files(root))
    rdma_cm, uverbs = device_nodes(root)
    sys_version = _read(root, "/sys/module/erdma/version")
    return {
        "loaded": module_loaded(root),
        "version": sys_version.strip() if sys_version else None,
        "version_source": "/sys/module/erdma/version" if sys_version else None,
        "compat_mode": as_bool(compat_live),
        "compat_mode_persistent": persistent,
        "compat_mode_persistent_file": persistent_file,
        "rdma_cm_present": rdma_cm,
        "uverbs_devices": uverbs,
    }


def _bounded_output(module, argv, timeout):
    """stdout of argv, or None when it fails or does not finish within `timeout` seconds (warned)."""
    rc, out, _err, timed_out = run_bounded(module, argv, timeout)
    if timed_out:
        module.warn("%s did not finish within %d s and was stopped; its answer is left out. A hung erdma "
                    "driver does that: look at `dmesg | grep -i erdma`" % (" ".join(argv), timeout))
        return None
    return out if rc == 0 else None


def modinfo_version(module, timeout=DEFAULT_TIMEOUT):
    """Version of the erdma module on disk (also when it is not loaded), from modinfo."""
    modinfo = module.get_bin_path("modinfo")
    if not modinfo:
        return None
    version = (_bounded_output(module, [modinfo, "-F", "version", MODULE_NAME], timeout) or "").strip()
    return version or None


def eadm_output(module, args, timeout=DEFAULT_TIMEOUT):
    """Run eadm with args; None when eadm is not installed, fails or hangs past `timeout` seconds."""
    eadm = module.get_bin_path("eadm")
    if not eadm:
        return None
    return _bounded_output(module, [eadm] + list(args), timeout)


def gather(module, root="/", device="erdma_0", stats=True, timeout=DEFAULT_TIMEOUT):
    """Facts of this host's eRDMA driver; commands run only when their tool is installed."""
    facts = read_host_state(root)
    facts["eadm_present"] = bool(module.get_bin_path("eadm"))
    facts["eadm_driver_version"] = parse_eadm_version(eadm_output(module, ["ver"], timeout))
    if not facts["version"]:
        for source, version in (("modinfo", modinfo_version(module, timeout)), ("eadm ver", facts["eadm_driver_version"])):
            if version:
                facts["version"], facts["version_source"] = version, source
                break
    facts["stats_device"] = device
    facts["stats"] = read_stats(module, device, timeout) if stats else {}
    return facts


def read_stats(module, device, timeout=DEFAULT_TIMEOUT):
    """Counters as the guide reads them (`eadm stat -d DEV -l`); eadm releases without -l get a second try."""
    text = eadm_output(module, ["stat", "-d", device, "-l"], timeout)
    if text is None:
        text = eadm_output(module, ["stat", "-d", device], timeout)
    return parse_eadm_stat(text)
