# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input checks of the whole inventory, run on the controller before anything changes.

``host_problems`` checks the values of one host by kind and range (address, port, size, ratio,
duration, device list, path, URL); the argument specs have already checked the types.
``fleet_problems`` checks what must agree or differ across hosts: two services of one host on one
port, the engines' Mooncake master address against the master host, unique engine addresses, one
engine stage per host, and the P/D guard on what prefill and decode must share.

Every message names the host, the variable, the value found and the fix, so that a refused run
says everything at once and nothing has been changed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.erdma.pd.plugins.module_utils import vllm_pd
from ansible_collections.erdma.pd.plugins.module_utils.cpu_list import expand_cpu_list, is_cpu_list

WILDCARDS = ("0.0.0.0", "::")
DAY_S = 86400
_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_URL = re.compile(r"^(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]+))?(/[^\s]*)?$")
_CHECKSUM = re.compile(r"^[a-z0-9]+:[0-9A-Fa-f]+$")


# ---------------------------------------------------------------------------- kinds of value
# Each kind returns None when the value is right, else what is wrong with it (a phrase).
def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool) or (
        isinstance(value, str) and re.match(r"^[0-9]+$", value.strip()) is not None)


def _number(value):
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


def ip_address(value, allow_empty=False, allow_wildcard=True):
    if value in (None, "") and allow_empty:
        return None
    try:
        ipaddress.ip_address(str(value).strip())
    except ValueError:
        return "is not an IP address (a host name or a typo is written into configurations unchecked)"
    if not allow_wildcard and str(value).strip() in WILDCARDS:
        return "is the wildcard address: give one address of the host"
    return None


def port(value):
    if not _is_int(value) or not 1 <= int(value) <= 65535:
        return "is not a TCP port (an integer from 1 to 65535)"
    return None


def count(value, low=1, high=None, allow_empty=False):
    if value in (None, "") and allow_empty:
        return None
    if not _is_int(value) or int(value) < low or (high is not None and int(value) > high):
        return "is not an integer from %s to %s" % (low, high if high is not None else "any")
    return None


def size(value, low=1, unit="bytes", allow_empty=False):
    if value in (None, "") and allow_empty:
        return None
    if not _is_int(value) or int(value) < low:
        return "is not a size in %s of at least %s" % (unit, low)
    return None


def ratio(value, allow_empty=False):
    if value in (None, "") and allow_empty:
        return None
    try:
        number = _number(value)
    except (TypeError, ValueError):
        return "is not a number in (0, 1]"
    if not 0 < number <= 1:
        return "is not in (0, 1]"
    return None


def duration(value, high=DAY_S, unit="s", low=0):
    try:
        number = _number(value)
    except (TypeError, ValueError):
        return "is not a duration in %s" % unit
    if not low < number <= high:
        return "is not a duration in %s above %s and at most %s" % (unit, low, high)
    return None


def amount(value, high, unit):
    try:
        number = _number(value)
    except (TypeError, ValueError):
        return "is not a number of %s" % unit
    if not 0 < number <= high:
        return "is not above 0 and at most %s %s" % (high, unit)
    return None


def systemd_memory(value):
    """A systemd memory limit (MemoryMax=): bytes with an optional K/M/G/T, a percentage, infinity or ""."""
    if value in (None, ""):
        return None
    if not re.match(r"^([0-9]+[KMGT]?|([0-9]{1,2}|100)%|infinity)$", str(value).strip()):
        return "is not a systemd memory size (512M, 1G, 5%, infinity, or empty for no limit)"
    return None


def path(value, allow_empty=False):
    if value in (None, "") and allow_empty:
        return None
    text = str(value)
    if not text.startswith("/") or any(c in text for c in "\n\r\0") or "/../" in text + "/":
        return "is not an absolute path (starting with /, without .. or line breaks)"
    return None


def url(value, allow_empty=False, schemes=("http", "https")):
    if value in (None, "") and allow_empty:
        return None
    text = str(value)
    if text.startswith("file:///") and "file" in schemes:
        return None
    match = _URL.match(text)
    if not match or match.group(1) not in schemes or (match.group(3) and port(match.group(3))):
        return "is not a URL (%s://HOST[:PORT][/PATH])" % "|".join(schemes)
    return None


def devices(value, pattern=None, required=False):
    if not isinstance(value, (list, tuple)):
        return "is not a list of RDMA device names (e.g. [erdma_0])"
    names = [str(v) for v in value]
    regex = re.compile(pattern) if pattern else _DEVICE
    bad = [n for n in names if not regex.search(n)]
    if bad:
        return "has names that are not RDMA device names (%s)%s" % (
            ", ".join(bad), " matching %s" % pattern if pattern else "")
    if len(set(names)) != len(names):
        return "names a device twice"
    if required and not names:
        return "is empty, but this host must have RDMA devices"
    return None


def cpu_list(value):
    """A CPU list for CPUAffinity= / --cpuset-cpus ('0-7', '0,2,4-5'), or empty for no binding."""
    if is_cpu_list(value):
        return None
    return "is not a CPU list (numbers and ranges such as 0-7 or 0,2,4-5; empty: no binding)"


def offline_cpus(wanted, online_text):
    """The CPUs of the list WANTED that the host does not have online (its /sys/devices/system/cpu/online)."""
    if wanted in (None, ""):
        return []
    online = set(expand_cpu_list(online_text))
    return [cpu for cpu in expand_cpu_list(wanted) if cpu not in online]


def metadata_server(value):
    text = str(value).strip()
    if text == "P2PHANDSHAKE" or text.startswith("etcd://"):
        return None
    match = _URL.match(text)
    if not match:
        return "is not P2PHANDSHAKE, etcd://... or http://MASTER_IP:PORT/metadata"
    host = match.group(2).strip("[]")
    if ip_address(host):
        return "names the host %r, not an IP address" % host
    return url(text)


def checksums(value):
    if not isinstance(value, dict):
        return "is not a mapping of file name to ALGORITHM:HEX"
    bad = sorted(k for k, v in value.items() if not _CHECKSUM.match(str(v)))
    if bad:
        return "has values that are not ALGORITHM:HEX (for %s)" % ", ".join(bad)
    return None


def endpoints(value):
    if not isinstance(value, (list, tuple)):
        return "is not a list of HOST:PORT"
    bad = [e for e in value if not re.match(r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$", str(e))]
    if bad:
        return "has entries that are not HOST:PORT (%s)" % ", ".join(str(b) for b in bad)
    return None


def backend_urls(value):
    if not isinstance(value, (list, tuple)):
        return "is not a list of http://IP:PORT URLs"
    for item in value:
        problem = url(item, schemes=("http",))
        if problem:
            return "has %r, which %s" % (item, problem)
    return None


# ---------------------------------------------------------------------------- the table
# Variable -> (check, fix). A check takes (value, values of the host) and returns a phrase or None.
def _always(check, *args, **kwargs):
    return lambda value, _values: check(value, *args, **kwargs)


CHECKS = {
    # erdma_driver
    "erdma_driver_expected_devices": (
        lambda v, vals: devices(v, vals.get("erdma_driver_device_name_pattern"),
                                required=bool(vals.get("erdma_driver_rdma_nic_expected", True))),
        "list the devices `ibv_devices` shows (e.g. [erdma_0]), or set erdma_driver_rdma_nic_expected: false"),
    "erdma_driver_work_dir": (_always(path), "use an absolute directory"),
    "erdma_driver_state_file": (_always(path), "use an absolute file name"),
    "erdma_driver_modprobe_conf": (_always(path), "use an absolute file name under /etc/modprobe.d"),
    "erdma_driver_artifacts_dir": (_always(path, allow_empty=True), "use an absolute directory on the control "
                                   "node, or leave it empty"),
    "erdma_driver_mirror_url": (_always(url, schemes=("http", "https", "file")), "give the mirror's URL"),
    "erdma_driver_checksums": (_always(checksums), "write sha256:<hex digest> per file"),
    "erdma_driver_download_timeout": (_always(duration), "give seconds (1..86400)"),
    "erdma_driver_install_timeout": (_always(duration), "give seconds (1..86400)"),
    "erdma_driver_reboot_timeout": (_always(duration), "give seconds (1..86400)"),
    "erdma_driver_device_wait_timeout": (_always(duration), "give seconds (1..86400)"),
    "erdma_driver_min_free_mb": (_always(size, low=0, unit="MB"), "give megabytes"),
    # mooncake
    "mooncake_bind_address": (
        lambda v, vals: ip_address(v, allow_empty=True, allow_wildcard=bool(
            vals.get("mooncake_bind_all_interfaces_allowed"))),
        "set it to this host's address on the RDMA/private network (empty: the default route's address); "
        "0.0.0.0 needs mooncake_bind_all_interfaces_allowed: true"),
    "mooncake_rpc_port": (_always(port), "pick a free port (the guide: 50052)"),
    "mooncake_metrics_port": (_always(port), "pick a free port (the guide: 9004)"),
    "mooncake_http_metadata_server_port": (_always(port), "pick a free port (the guide: 8080)"),
    "mooncake_rpc_thread_num": (_always(count, 1, 4096), "give a thread count"),
    "mooncake_default_kv_lease_ttl_ms": (_always(duration, 3600000, "ms"), "give milliseconds (the guide: 10000)"),
    "mooncake_client_ttl_s": (_always(duration), "give seconds"),
    "mooncake_ready_timeout_s": (_always(duration), "give seconds"),
    "mooncake_eviction_high_watermark_ratio": (_always(ratio), "give a fraction such as 0.9"),
    "mooncake_eviction_ratio": (_always(ratio), "give a fraction such as 0.05"),
    "mooncake_etcd_endpoints": (_always(endpoints), "list etcd endpoints as HOST:PORT"),
    "mooncake_venv": (_always(path), "use an absolute directory"),
    "mooncake_cuda_library_path": (_always(path), "use an absolute directory"),
    "mooncake_prometheus_scrape_file": (_always(path, allow_empty=True), "use an absolute file name or empty"),
    "mooncake_pip_index_url": (_always(url, allow_empty=True), "give the index URL or leave it empty"),
    "mooncake_verify_object_size_mib": (_always(size, 1, "MiB"), "give MiB (at least 1)"),
    # vllm_pd
    "vllm_pd_host_address": (_always(ip_address, allow_wildcard=False),
                             "set it to this host's IP address on the RDMA/private network"),
    "vllm_pd_bind_address": (_always(ip_address), "set it to an IP address of this host"),
    "vllm_pd_port": (_always(port), "pick a free port (the guide: 7100 prefill, 7200 decode)"),
    "vllm_pd_mooncake_master_address": (
        _always(ip_address, allow_wildcard=False),
        "set mooncake_bind_address on the master host (or vllm_pd_mooncake_master_address) to the master's "
        "IP address"),
    "vllm_pd_mooncake_master_port": (_always(port), "use the master's mooncake_rpc_port"),
    "vllm_pd_mooncake_metadata_server": (_always(metadata_server), "leave it to the mooncake role, or give "
                                         "http://MASTER_IP:8080/metadata or P2PHANDSHAKE"),
    "vllm_pd_rdma_devices": (
        lambda v, vals: devices(v, required=vals.get("vllm_pd_mooncake_protocol") == "rdma"),
        "list the devices `ibv_devices` shows (e.g. [erdma_0]); [] only with vllm_pd_mooncake_protocol: tcp"),
    "vllm_pd_mooncake_global_segment_size": (_always(size, 1048576), "give bytes (at least 1 MiB)"),
    "vllm_pd_mooncake_local_buffer_size": (_always(size, 1048576), "give bytes (at least 1 MiB)"),
    "vllm_pd_mooncake_transfer_timeout": (_always(duration, 3600), "give seconds"),
    "vllm_pd_gpu_memory_utilization": (_always(ratio, allow_empty=True), "give a fraction such as 0.9, or leave "
                                       "it empty"),
    "vllm_pd_tensor_parallel_size": (_always(count, 1, 1024), "give the number of GPUs per engine"),
    "vllm_pd_chunk_size": (_always(count, 1, 1048576), "give tokens (the guide: 256)"),
    "vllm_pd_block_size": (_always(count, 1, 1048576, allow_empty=True), "give tokens, or leave it empty"),
    "vllm_pd_max_model_len": (_always(count, 1, 100000000, allow_empty=True), "give tokens, or leave it empty"),
    "vllm_pd_max_num_seqs": (_always(count, 1, 1000000, allow_empty=True), "give a count, or leave it empty"),
    "vllm_pd_lmcache_max_local_cpu_size": (_always(amount, 1048576, "GB"), "give GB above 0"),
    "vllm_pd_ready_timeout": (_always(duration), "give seconds"),
    "vllm_pd_service_stop_timeout": (_always(duration), "give seconds"),
    "vllm_pd_log_lines": (_always(count, 0, 100000), "give a line count"),
    "vllm_pd_cpu_affinity": (_always(cpu_list), "give the CPUs the engine may run on (0-7, 0,2,4-5), or leave "
                             "it empty"),
    "vllm_pd_venv_path": (_always(path), "use an absolute directory"),
    "vllm_pd_config_dir": (_always(path), "use an absolute directory"),
    "vllm_pd_cache_dir": (_always(path), "use an absolute directory"),
    "vllm_pd_models_dir": (_always(path), "use an absolute directory"),
    # pd_proxy
    "pd_proxy_bind_address": (_always(ip_address), "set it to an IP address of the proxy host (or 127.0.0.1)"),
    "pd_proxy_port": (_always(port), "pick a free port (the guide: 9000)"),
    "pd_proxy_prefill_urls": (_always(backend_urls), "list http://IP:PORT of each prefill engine, or []"),
    "pd_proxy_decode_urls": (_always(backend_urls), "list http://IP:PORT of each decode engine, or []"),
    "pd_proxy_health_interval": (_always(duration, 3600), "give seconds"),
    "pd_proxy_health_timeout": (_always(duration, 3600), "give seconds"),
    "pd_proxy_connect_timeout": (_always(duration, 3600), "give seconds"),
    "pd_proxy_prefill_timeout": (_always(duration), "give seconds"),
    "pd_proxy_decode_timeout": (_always(duration), "give seconds"),
    "pd_proxy_decode_idle_timeout": (_always(duration), "give seconds"),
    "pd_proxy_verify_timeout": (_always(duration), "give seconds"),
    "pd_proxy_prefill_attempts": (_always(count, 1, 100), "give a count"),
    "pd_proxy_max_body_bytes": (_always(size, 1024), "give bytes (at least 1024)"),
    "pd_proxy_client_timeout": (_always(duration, 3600), "give seconds"),
    "pd_proxy_max_concurrent_requests": (_always(count, 1, 1000000), "give a count of requests"),
    "pd_proxy_memory_max": (_always(systemd_memory), "give a systemd size such as 1G, or \"\" for no limit"),
    "pd_proxy_install_dir": (_always(path), "use an absolute directory"),
    "pd_proxy_venv_path": (_always(path), "use an absolute directory"),
    "pd_proxy_config_dir": (_always(path), "use an absolute directory"),
    # verify stage (role rdma_verify)
    "rdma_verify_bw_fraction": (_always(ratio), "give a fraction such as 0.8"),
    "rdma_verify_lat_max_us": (_always(duration, 1000000, "us", -1), "give microseconds, or 0 for no threshold"),
    "rdma_verify_bw_port": (_always(port), "pick a free port (perftest's default: 18515)"),
    "rdma_verify_lat_port": (_always(port), "pick a free port other than rdma_verify_bw_port (e.g. 18516)"),
    "rdma_verify_bw_qps": (_always(count, 1, 1024), "give a queue-pair count"),
    "rdma_verify_bw_duration": (_always(duration, 3600), "give seconds"),
    "rdma_verify_lat_iterations": (_always(count, 1, 1000000), "give iterations per message size"),
    "rdma_verify_perftest_timeout": (_always(duration, 3600), "give seconds"),
    "rdma_verify_server_start_delay": (_always(count, 0, 60), "give seconds"),
    "rdma_verify_max_rounds": (_always(count, 0), "give 0 (every round) or the number of rounds to sample"),
    "rdma_verify_devices": (
        lambda v, vals: devices(v, required=bool(vals.get("rdma_verify_nic_expected", True))),
        "list the devices `ibv_devices` shows (e.g. [erdma_0]) in rdma_device_names, or set rdma_nic_expected: false"),
}


def _show(value):
    return repr(value) if isinstance(value, str) else str(value)


def host_problems(host, values):
    """Problems of one host's values (variable name -> value); [] when every checked value is right."""
    problems = []
    for name in sorted(values):
        if name not in CHECKS:
            continue
        check, fix = CHECKS[name]
        found = check(values[name], values)
        if found:
            problems.append("%s: %s = %s %s. Fix: %s." % (host, name, _show(values[name]), found, fix))
    return problems


# ---------------------------------------------------------------------------- across hosts
# Services that listen on a host: (group whose hosts run it, port variable, bind address variable or
# None when it listens on every interface).
LISTENERS = (
    ("mooncake_master", "mooncake_rpc_port", "mooncake_bind_address"),
    ("mooncake_master", "mooncake_metrics_port", "mooncake_bind_address"),
    ("mooncake_master", "mooncake_http_metadata_server_port", None),
    ("prefill", "vllm_pd_port", "vllm_pd_bind_address"),
    ("decode", "vllm_pd_port", "vllm_pd_bind_address"),
    ("proxy", "pd_proxy_port", "pd_proxy_bind_address"),
    ("decode", "rdma_verify_bw_port", None),
    ("decode", "rdma_verify_lat_port", None),
)


def _overlap(first, second):
    return first in (None, "") or second in (None, "") or first in WILDCARDS or second in WILDCARDS or \
        str(first) == str(second)


def port_clashes(hosts, groups):
    """Two services of one host on one port (and overlapping addresses)."""
    problems = []
    for host in sorted(hosts):
        values = hosts[host]
        seen = []
        for group, port_var, address_var in LISTENERS:
            if host not in groups.get(group, []) or port_var not in values or port(values[port_var]):
                continue
            entry = (port_var, int(values[port_var]), values.get(address_var) if address_var else None)
            if entry[0] in [s[0] for s in seen]:
                continue
            for other in seen:
                if other[1] == entry[1] and _overlap(other[2], entry[2]):
                    problems.append(
                        "%s: %s and %s are both %s, on overlapping addresses (%s, %s): two services cannot "
                        "listen on one port. Fix: give one of them another port in the inventory."
                        % (host, other[0], entry[0], entry[1], other[2] or "every interface",
                           entry[2] or "every interface"))
            seen.append(entry)
    return problems


def master_problems(hosts, groups, addresses):
    """The engines must reach the Mooncake master on an address and port it serves."""
    problems = []
    engines = sorted(h for h in hosts if h in groups.get("prefill", []) or h in groups.get("decode", []))
    masters = groups.get("mooncake_master", [])
    if len(masters) > 1:
        problems.append("the group mooncake_master has %d hosts (%s): the engines use one Mooncake master. Fix: "
                        "keep one host in the group mooncake_master." % (len(masters), ", ".join(masters)))
        return problems
    if not engines or not masters:
        return problems  # no master in the inventory: the engines' own address checks apply
    master = masters[0]
    master_values = hosts.get(master, {})
    known = addresses.get(master) or []
    for engine in engines:
        values = hosts[engine]
        wanted = values.get("vllm_pd_mooncake_master_address")
        if wanted is None or ip_address(wanted):
            continue  # reported by host_problems
        bound = master_values.get("mooncake_bind_address")
        if bound not in (None, "") and bound not in WILDCARDS and str(bound) != str(wanted):
            problems.append("%s: vllm_pd_mooncake_master_address = %r, but the master %s binds to "
                            "mooncake_bind_address = %r. Fix: leave vllm_pd_mooncake_master_address unset "
                            "(it follows the master) or make both the same." % (engine, wanted, master, bound))
        elif known and str(wanted) not in known:
            problems.append("%s: vllm_pd_mooncake_master_address = %r is not an address of the master %s (%s). "
                            "Fix: set mooncake_bind_address on %s to its RDMA/private address."
                            % (engine, wanted, master, ", ".join(known), master))
        rpc = master_values.get("mooncake_rpc_port")
        if rpc is not None and values.get("vllm_pd_mooncake_master_port") is not None and \
                str(values["vllm_pd_mooncake_master_port"]) != str(rpc):
            problems.append("%s: vllm_pd_mooncake_master_port = %s, but the master %s serves RPC on "
                            "mooncake_rpc_port = %s. Fix: leave vllm_pd_mooncake_master_port unset or make both "
                            "the same." % (engine, values["vllm_pd_mooncake_master_port"], master, rpc))
    return problems


def engine_problems(hosts, groups):
    """One stage per engine host, distinct engine addresses, and the P/D guard."""
    problems = []
    prefill, decode = groups.get("prefill", []), groups.get("decode", [])
    engines = sorted(h for h in hosts if h in prefill or h in decode)
    for host in engines:
        if host in prefill and host in decode:
            problems.append("%s is in both groups prefill and decode. Fix: one engine per host; remove it from "
                            "one group." % host)
    by_address = {}
    for host in engines:
        address = hosts[host].get("vllm_pd_host_address")
        if address not in (None, ""):
            by_address.setdefault(str(address), []).append(host)
    for address, names in sorted(by_address.items()):
        if len(names) > 1:
            problems.append("%s: vllm_pd_host_address = %r on each of them; Mooncake names each engine's segment "
                            "by this address, so it must differ. Fix: set each host's own address."
                            % (", ".join(names), address))
    settings = {}
    for host in engines:
        if host in prefill and host in decode:
            continue
        settings[host] = guard_settings(hosts[host], "prefill" if host in prefill else "decode")
    # Without every engine of the inventory in this run (--limit), a missing stage is not a problem here.
    every_engine = set(prefill) | set(decode) <= set(hosts)
    if settings:
        for problem in vllm_pd.consistency_problems(settings, require_both_stages=every_engine):
            problems.append("P/D guard: %s" % problem)
    return problems


def guard_settings(values, stage):
    """What the P/D guard compares, from a host's vllm_pd_* values (the venv's content is not known yet)."""
    environment = values.get("vllm_pd_environment") or {}
    runtime = values.get("vllm_pd_runtime")
    build = bool(values.get("vllm_pd_image_build"))
    return {
        "stage": stage,
        "model": values.get("vllm_pd_model"),
        "served_model_name": values.get("vllm_pd_served_model_name"),
        "tensor_parallel_size": values.get("vllm_pd_tensor_parallel_size"),
        "chunk_size": values.get("vllm_pd_chunk_size"),
        "block_size": values.get("vllm_pd_block_size"),
        "dtype": values.get("vllm_pd_dtype"),
        "kv_cache_dtype": values.get("vllm_pd_kv_cache_dtype"),
        "kv_connector": values.get("vllm_pd_kv_connector"),
        "protocol": values.get("vllm_pd_mooncake_protocol"),
        "packages": values.get("vllm_pd_pip_packages") if runtime == "venv" or build else [],
        "image": (values.get("vllm_pd_image_base") if build else values.get("vllm_pd_image"))
        if runtime == "nerdctl" else "",
        "python_hash_seed": environment.get("PYTHONHASHSEED", values.get("vllm_pd_python_hash_seed")),
    }


# The verify stage applies these once to the whole fleet (the report's thresholds, the plan) or
# needs them equal on both ends of a link (the perftest ports and options).
FLEET_WIDE_VERIFY_SETTINGS = (
    "rdma_verify_bw_fraction", "rdma_verify_lat_metric", "rdma_verify_lat_max_us", "rdma_verify_measure",
    "rdma_verify_max_rounds", "rdma_verify_bw_port", "rdma_verify_lat_port", "rdma_verify_bw_qps",
    "rdma_verify_bw_duration", "rdma_verify_lat_iterations", "rdma_verify_bw_rdma_cm", "rdma_verify_lat_rdma_cm",
)


def agreement_problems(hosts, groups):
    """Settings read from one host for the whole fleet must be the same on every host."""
    problems = []
    measured = groups.get("rdma", []) + groups.get("prefill", []) + groups.get("decode", [])
    for name in FLEET_WIDE_VERIFY_SETTINGS:
        values = dict((h, hosts[h][name]) for h in sorted(hosts) if h in measured and name in hosts[h])
        if len(set(str(v) for v in values.values())) > 1:
            problems.append("%s differs between the rdma hosts (%s): the verify stage applies one value to every "
                            "link. Fix: set it once in group_vars/all."
                            % (name, ", ".join("%s on %s" % (v, h) for h, v in sorted(values.items()))))
    return problems


def fleet_problems(hosts, groups, addresses=None):
    """Every cross-host problem; ``hosts`` maps host -> values, ``addresses`` host -> its IP addresses."""
    groups = dict((k, list(v)) for k, v in (groups or {}).items())
    return (port_clashes(hosts, groups) + master_problems(hosts, groups, addresses or {})
            + engine_problems(hosts, groups) + agreement_problems(hosts, groups))


def address_problems(host, values, addresses):
    """Bind addresses that are not addresses of the host (with the host's facts)."""
    problems = []
    if not addresses:
        return problems
    local = set(addresses) | set(WILDCARDS) | {"127.0.0.1", "::1"}
    for name in ("mooncake_bind_address", "vllm_pd_bind_address", "pd_proxy_bind_address"):
        value = values.get(name)
        if value in (None, "") or ip_address(value) or str(value) in local:
            continue
        problems.append("%s: %s = %r is not an address of this host (%s). Fix: use one of them; the service "
                        "could not bind to it." % (host, name, value, ", ".join(sorted(addresses))))
    return problems


# ---------------------------------------------------------------------------- the hosts themselves
# What every stage needs of a host, read from its facts before any stage starts: the roles run
# systemd services and install with apt; the driver has recipes for these systems only.
DRIVER_SYSTEMS = (("Ubuntu", "22"), ("Ubuntu", "24"))


def fact_problems(host, facts, values=None, rdma=False):
    """Problems of a host's system (facts of the min subset) that would stop a stage after others changed."""
    problems = []
    facts = facts or {}
    values = values or {}
    manager = facts.get("service_mgr")
    if manager is not None and manager != "systemd":
        problems.append("%s: the service manager is %s; every stage runs systemd services. Fix: use a host that "
                        "boots with systemd (a container: podman run --systemd=always ... /sbin/init)."
                        % (host, manager))
    family = facts.get("os_family")
    if family is not None and family != "Debian":
        problems.append("%s: the system is %s (%s); the stages install with apt. Fix: use Ubuntu 22.04/24.04 "
                        "(or Debian 12 for the services)." % (host, facts.get("distribution", "?"), family))
    system = (facts.get("distribution"), str(facts.get("distribution_major_version")))
    if rdma and facts.get("distribution") is not None and system not in DRIVER_SYSTEMS and \
            not values.get("erdma_driver_allow_unsupported_os"):
        problems.append("%s: %s %s is not a system the eRDMA driver stage has a recipe for (Ubuntu 22.04, 24.04). "
                        "Fix: run on one of them, or set erdma_driver_allow_unsupported_os: true (then "
                        "erdma_driver_install_method or erdma_driver_install_kernel_driver: false)."
                        % (host, facts.get("distribution"), facts.get("distribution_version", "")))
    return problems
