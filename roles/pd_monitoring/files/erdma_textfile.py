# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write eRDMA counters and port state in node_exporter's textfile-collector format.

    erdma_textfile.py --device erdma_0 --out /var/lib/prometheus/node-exporter/erdma.prom

Runs `eadm stat -d DEV -l` (counters) and `ibv_devinfo -d DEV -v` (port state and rate) for every device and
writes one file atomically (a temporary file in the same directory, then rename), so node_exporter never
reads half a file. The parsers are the collection's own (module_utils erdma_state and rdma_devinfo, copied
next to this script by the role erdma.pd.pd_monitoring). Standard library only; run by a systemd timer.
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

# The parsers import each other by their collection names. Installed, the role copies them into a package
# tree ansible_collections/erdma/pd/plugins/module_utils next to this file (first on the path, so that an
# Ansible installed on the host cannot shadow it); in a checkout, collections/ links back to the checkout.
HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[2] / "collections")]
# pylint: disable-next=wrong-import-position,import-error
from ansible_collections.erdma.pd.plugins.module_utils.erdma_state import parse_eadm_stat  # noqa: E402
# pylint: disable-next=wrong-import-position,import-error
from ansible_collections.erdma.pd.plugins.module_utils.rdma_devinfo import parse_devinfo  # noqa: E402


def run(argv, timeout=20):
    """stdout of a command, or None when it is missing, fails or hangs."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def label(value):
    """A label value escaped as the text format wants it."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def device_lines(device, stat_text, devinfo_text):
    """The samples of one device (without HELP/TYPE lines)."""
    dev = label(device)
    lines = {"up": [f'erdma_eadm_up{{device="{dev}"}} {0 if stat_text is None else 1}'],
             "stat": [], "port_active": [], "port_gbps": []}
    for name, value in sorted(parse_eadm_stat(stat_text).items()):
        lines["stat"].append(f'erdma_stat_total{{device="{dev}",counter="{label(name)}"}} {value}')
    devices, _warnings = parse_devinfo(devinfo_text or "")
    for found in devices:
        for port in found.get("ports", []):
            where = f'device="{label(found["hca_id"])}",port="{label(port.get("port"))}"'
            active = 1 if str(port.get("state", "")).startswith("PORT_ACTIVE") else 0
            lines["port_active"].append(f"erdma_port_active{{{where}}} {active}")
            if port.get("link_gbps"):
                lines["port_gbps"].append(f"erdma_port_link_gbps{{{where}}} {port['link_gbps']}")
    return lines


HELP = {
    "up": ("erdma_eadm_up", "gauge", "1 when eadm stat answered for the device."),
    "stat": ("erdma_stat_total", "counter", "eRDMA driver counters from eadm stat -d DEVICE -l, by counter name."),
    "port_active": ("erdma_port_active", "gauge", "1 when ibv_devinfo shows the port PORT_ACTIVE."),
    "port_gbps": ("erdma_port_link_gbps", "gauge", "Port rate in Gb/s from ibv_devinfo (width x speed)."),
}


def render(per_device, now):
    out = []
    for key, (name, kind, text) in HELP.items():
        samples = [line for lines in per_device for line in lines[key]]
        if samples:
            out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"] + samples
    out += ["# HELP erdma_textfile_last_run_timestamp_seconds When this file was written.",
            "# TYPE erdma_textfile_last_run_timestamp_seconds gauge",
            f"erdma_textfile_last_run_timestamp_seconds {now:.3f}"]
    return "\n".join(out) + "\n"


def write_atomically(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(prefix=".erdma.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", action="append", required=True, help="eRDMA device (repeat)")
    parser.add_argument("--out", required=True, help="the .prom file in node_exporter's textfile directory")
    parser.add_argument("--eadm", default="eadm", help="eadm command")
    parser.add_argument("--ibv-devinfo", default="ibv_devinfo", help="ibv_devinfo command")
    args = parser.parse_args(argv)
    per_device = []
    for device in args.device:
        stat = run([args.eadm, "stat", "-d", device, "-l"])
        if stat is None:
            stat = run([args.eadm, "stat", "-d", device])
        per_device.append(device_lines(device, stat, run([args.ibv_devinfo, "-d", device, "-v"])))
    write_atomically(args.out, render(per_device, time.time()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
