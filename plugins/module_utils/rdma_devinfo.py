# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse `ibv_devinfo` / `ibv_devinfo -v` text into typed device facts.

The parser reads the text line by line and does not rely on indentation: real output indents with
tabs, while copies pasted into documents (our field guide among them) often lose every tab. It works
because the tool always prints a device's own keys before its ports, and every port starts with a
`port:` line.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.erdma.pd.plugins.module_utils.bounded_command import BoundedCommandError, run_bounded

IBV_DEVINFO_PACKAGE = "ibverbs-utils"
NO_DEVICES_MARKER = "No IB devices found"
# What ibv_devinfo says (rc=255) where the kernel has no RDMA core at all, e.g. in a container.
NO_RDMA_KERNEL_MARKER = "Failed to get IB devices list"

# Lane multipliers of the InfiniBand width codes that ibv_devinfo prints.
WIDTH_LANES = {"1X": 1, "2X": 2, "4X": 4, "8X": 8, "12X": 12}

# Keys whose hexadecimal value is followed by one flag name per line.
FLAG_KEYS = ("device_cap_flags", "device_cap_exp_flags", "device_cap_flags_ex")

_KEY_VALUE = re.compile(r"^([^:]+?):\s*(.*)$")
_TEXT_WITH_CODE = re.compile(r"^(.*\S)\s+\((-?\d+)\)$")
_GID = re.compile(r"^GID\[\s*(\d+)\]$")
_SPEED_GBPS = re.compile(r"^([0-9.]+)\s*Gbps$")
_FLAG_LINE = re.compile(r"^[A-Z][A-Z0-9_ ]*$")
# "log atomic arg sizes (mask)\t\t0x8", "ooo_rc_caps  = 0x0": MLNX_OFED prints some values without a colon.
_SPACED_VALUE = re.compile(r"^(.*?\S)(?:\s*=\s*|\t+\s*|\s{2,})(\S+)$")
_NOT_SUPPORTED = re.compile(r"^(.*?)\s+(?:is\s+)?not supported$")


class DevinfoError(Exception):
    """ibv_devinfo could not be run or said something we cannot accept."""


def normalize_key(text):
    """Turn a label such as 'log atomic arg sizes (mask)' into 'log_atomic_arg_sizes_mask'."""
    return re.sub(r"[^0-9a-z]+", "_", text.strip().lower()).strip("_")


def typed_value(text):
    """Return an int for decimal digits; keep everything else (hex included) as the tool printed it."""
    text = text.strip()
    if re.match(r"^-?\d+$", text):
        return int(text)
    return text


def speed_gbps(text):
    """'25.0 Gbps' -> 25.0; None when the speed is not printed in Gbps."""
    match = _SPEED_GBPS.match(text or "")
    return float(match.group(1)) if match else None


def is_erdma(device):
    """eRDMA devices announce themselves by transport, vendor (Alibaba, 0x1ded) or name."""
    return (
        str(device.get("transport", "")).lower() == "erdma"
        or str(device.get("vendor_id", "")).lower() == "0x1ded"
        or str(device.get("hca_id", "")).startswith("erdma")
    )


def link_gbps(device, port):
    """Nominal rate of a port in Gb/s.

    InfiniBand and RoCE NICs print the per-lane speed and the number of lanes, so the port rate is
    lanes x lane speed (4X at 25.0 Gbps = 100 Gb/s). The eRDMA driver prints `4X` and `25.0 Gbps`
    for a port whose rate is 25 Gb/s (the guide measured 3 GB/s = 24 Gb/s on it): for eRDMA the
    printed speed already is the port rate and the width is ignored.
    """
    lane_gbps = port.get("active_speed_gbps")
    if lane_gbps is None:
        return None
    if is_erdma(device):
        return lane_gbps
    lanes = WIDTH_LANES.get(str(port.get("active_width", "")).upper())
    if lanes is None:
        return None
    return round(lanes * lane_gbps, 3)


class _DevinfoReader:
    """Line-by-line state: the current device, the current port, the key that collects flag lines."""

    def __init__(self):
        self.devices = []
        self.device = None
        self.port = None
        self.flag_target = None

    def target(self):
        return self.port if self.port is not None else self.device

    def read(self, text):
        for raw in text.splitlines():
            line = raw.strip()
            if line:
                self.read_line(line)
        return self.devices

    def read_line(self, line):
        if line.startswith("hca_id:"):
            self.start_device(line.split(":", 1)[1].strip())
            return
        if self.device is None or line == "Device ports:":
            return
        if self.flag_target is not None and self.add_flag(line):
            return
        self.flag_target = None
        self.read_field(line)

    def start_device(self, hca_id):
        self.device = {"hca_id": hca_id, "ports": []}
        self.devices.append(self.device)
        self.port = None
        self.flag_target = None

    def start_port(self, number):
        self.port = {"port": number, "gids": []}
        self.device["ports"].append(self.port)

    def add_flag(self, line):
        """Collect one flag line under the key that announced it; False when the line is not a flag."""
        owner, key = self.flag_target
        if line.startswith("Unknown flags:"):
            base = key[:-len("_list")] if key.endswith("_list") else key
            owner[base + "_unknown"] = line.split(":", 1)[1].strip()
            return True
        if _FLAG_LINE.match(line):
            owner[key].append(line)
            return True
        return False

    def read_field(self, line):
        match = _KEY_VALUE.match(line)
        if match:
            self.store(match.group(1).strip(), match.group(2).strip())
            return
        target = self.target()
        unsupported = _NOT_SUPPORTED.match(line)
        if unsupported:
            target.setdefault("not_supported", []).append(normalize_key(unsupported.group(1)))
            return
        spaced = _SPACED_VALUE.match(line)
        if spaced and not _FLAG_LINE.match(line):
            target[normalize_key(spaced.group(1))] = typed_value(spaced.group(2))
            return
        target.setdefault("other_lines", []).append(line)

    def store(self, label, value):
        gid = _GID.match(label)
        if gid and self.port is not None:
            self.store_gid(int(gid.group(1)), value)
            return
        key = normalize_key(label)
        if key == "port" and re.match(r"^\d+$", value):
            self.start_port(int(value))
            return
        target = self.target()
        if key in FLAG_KEYS:
            target[key] = value
            target[key + "_list"] = []
            self.flag_target = (target, key + "_list")
            return
        if value == "":
            # A heading such as 'rc_odp_caps:' owns the flag lines printed under it.
            target[key] = []
            self.flag_target = (target, key)
            return
        self.store_value(target, key, value)

    def store_gid(self, index, value):
        gid, _sep, gid_type = value.partition(",")
        entry = {"index": index, "gid": gid.strip()}
        if gid_type.strip():
            entry["type"] = gid_type.strip()
        self.port["gids"].append(entry)

    @staticmethod
    def store_value(target, key, value):
        coded = _TEXT_WITH_CODE.match(value)
        if coded:
            target[key] = typed_value(coded.group(1))
            target[key + "_code"] = int(coded.group(2))
        else:
            target[key] = typed_value(value)
        if key == "active_speed":
            target["active_speed_gbps"] = speed_gbps(coded.group(1) if coded else value)


def _is_verbose(device):
    return "max_mr_size" in device


def _port_complete(device, port):
    if "link_layer" not in port:
        return False
    return not _is_verbose(device) or "active_speed" in port


def _selected_port(device, port):
    """The port that `ibv_devinfo -i PORT` printed, or None when the output shows the device's every port.

    With -i the tool prints the device's own keys (phys_port_cnt included) and then only that port.
    Without `port` given, a device whose first printed port is not port 1 was printed that way: the
    tool prints ports in order from 1, so output cut short can never lack port 1.
    """
    numbers = [entry["port"] for entry in device["ports"]]
    if port is not None:
        return port if numbers == [port] else None
    if len(numbers) == 1 and numbers[0] != 1:
        return numbers[0]
    return None


def device_complete(device, port=None):
    """A device is whole when all its ports (or the one port asked for with -i) were printed to their last field."""
    ports = device["ports"]
    expected = device.get("phys_port_cnt")
    if not ports:
        return False
    if _selected_port(device, port) is None and isinstance(expected, int) and len(ports) < expected:
        return False
    return all(_port_complete(device, entry) for entry in ports)


def _finish(device, port=None):
    selected = _selected_port(device, port)
    for entry in device["ports"]:
        entry["link_gbps"] = link_gbps(device, entry)
        if not entry["gids"]:
            del entry["gids"]
    device["is_erdma"] = is_erdma(device)
    # Which port `ibv_devinfo -i` selected; null when every port of the device was printed.
    device["port_selected"] = selected
    return device


def parse_devinfo(text, port=None):
    """Parse ibv_devinfo output; `port` is the PORT of `ibv_devinfo -i PORT` when it was used.

    Returns (devices, warnings). Output cut off inside the last device (a killed command, a copy
    that stopped short) drops that device and says so in a warning; the devices before it are whole
    because the tool prints one device after the other. A device printed with -i (one port of a
    multi-port HCA) is whole.
    """
    if no_devices_reason(text or "") is not None:
        return [], []
    devices = _DevinfoReader().read(text or "")
    warnings = []
    if devices and not device_complete(devices[-1], port):
        cut = devices.pop()
        warnings.append(
            "ibv_devinfo output ends inside device %s (ports printed: %d of %s); "
            "it was left out of rdma_devices" % (cut["hca_id"], len(cut["ports"]), cut.get("phys_port_cnt", "?"))
        )
    return [_finish(device, port) for device in devices], warnings


def devinfo_command(binary, verbose=False, device=None, port=None):
    argv = [binary]
    if device:
        argv += ["-d", device]
    if port is not None:
        argv += ["-i", str(port)]
    if verbose:
        argv.append("-v")
    return argv


def no_devices_reason(text):
    """None when the tool listed devices; otherwise why there are none (empty for 'No IB devices found')."""
    if NO_DEVICES_MARKER in text:
        return ""
    for line in text.splitlines():
        if line.startswith(NO_RDMA_KERNEL_MARKER):
            return "ibv_devinfo: %s: this kernel offers no RDMA devices (is ib_uverbs loaded?)" % line.strip()
    return None


def run_devinfo(module, verbose=False, device=None, port=None, timeout=30):
    """Run ibv_devinfo through the module, stopped after `timeout` seconds.

    Returns (stdout, argv, reason): `reason` is None when devices were listed, else why the host has
    none. Only stdout is parsed: libibverbs prints its warnings on stderr, between device blocks.
    Raises DevinfoError when the tool is missing or fails for another reason.
    """
    binary = module.get_bin_path("ibv_devinfo")
    if not binary:
        raise DevinfoError(
            "ibv_devinfo was not found on this host: install the package %s "
            "(apt-get install %s, or MLNX_OFED) and run again" % (IBV_DEVINFO_PACKAGE, IBV_DEVINFO_PACKAGE)
        )
    argv = devinfo_command(binary, verbose, device, port)
    try:
        rc, out, err, timed_out = run_bounded(module, argv, timeout)
    except BoundedCommandError as error:
        raise DevinfoError(str(error))
    if timed_out:
        raise DevinfoError(
            "%s did not finish within %d s and was stopped: a hung RDMA driver does that; look at "
            "`dmesg | grep -i -e erdma -e ib_core` and the driver state (eadm stat)" % (" ".join(argv), timeout)
        )
    reason = no_devices_reason("%s\n%s" % (out or "", err or ""))
    if reason is not None:
        return "", argv, reason
    if rc != 0:
        raise DevinfoError("%s failed with rc=%d: %s" % (" ".join(argv), rc, (err or out or "").strip()))
    return out or "", argv, None
