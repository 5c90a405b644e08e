# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the vllm_pd role renders and checks, as plain functions that unit tests call directly.

- the KV-connector configuration of one engine: LMCache's YAML (profile `lmcache_mooncake`) or
  Mooncake's JSON (profile `mooncake_store`), both from the same settings;
- the `vllm serve` command line of one engine (quoted for a systemd unit by plugin_utils/systemd_unit);
- the cross-host consistency guard: what must be identical on every prefill and decode engine, or
  every KV lookup silently misses;
- which pinned packages a venv still lacks.

A *settings* dict is the role's variables of one host without the `vllm_pd_` prefix (the role
builds it in tasks/preflight.yml).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

# Profile -> vLLM's connector class name.
CONNECTORS = {
    "lmcache_mooncake": "LMCacheConnectorV1",
    "mooncake_store": "MooncakeStoreConnector",
}
# Engine stage -> vLLM's kv_role.
KV_ROLES = {"prefill": "kv_producer", "decode": "kv_consumer"}
# Environment variable that points the connector at its configuration file.
CONFIG_ENV = {
    "lmcache_mooncake": "LMCACHE_CONFIG_FILE",
    "mooncake_store": "MOONCAKE_CONFIG_PATH",
}

# What the guard compares: (settings key, how a person sets it, why it matters).
CONSISTENT_KEYS = (
    ("model", "vllm_pd_model", "the model string is part of every KV cache key"),
    ("served_model_name", "vllm_pd_served_model_name", "the proxy sends one model name to both stages"),
    ("tensor_parallel_size", "vllm_pd_tensor_parallel_size", "KV is sharded per tensor-parallel rank"),
    ("chunk_size", "vllm_pd_chunk_size", "LMCache hashes KV in chunks of this many tokens"),
    ("block_size", "vllm_pd_block_size", "vLLM hashes KV per block of this many tokens"),
    ("dtype", "vllm_pd_dtype", "KV computed in one dtype cannot be loaded as another"),
    ("kv_cache_dtype", "vllm_pd_kv_cache_dtype", "the KV cache layout must be the same"),
    ("kv_connector", "vllm_pd_kv_connector", "both stages must speak the same connector"),
    ("protocol", "vllm_pd_mooncake_protocol", "Mooncake transfers need the same protocol on both ends"),
    ("packages", "vllm_pd_pip_packages", "different vLLM/LMCache/Mooncake versions hash and lay out KV "
     "differently"),
    ("image", "vllm_pd_image", "the engine image carries the vLLM/LMCache/Mooncake versions"),
    ("python_hash_seed", "vllm_pd_python_hash_seed", "PYTHONHASHSEED seeds the prefix-cache hash"),
)

# Settings that only some runtimes have: pins (a venv, or an image built by the role) and the image (the
# container runtime). A fleet may mix runtimes (venv prefill, container decode).
_DECLARED_WHERE_USED = ("packages", "image")

_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;,]+)\s*$")
_HASH_SEED = re.compile(r"^(0|[1-9][0-9]{0,9})$")


class SettingsError(ValueError):
    """The settings cannot produce a configuration (a message for the user)."""


def device_names(devices):
    """RDMA device list -> the comma-separated string that LMCache and Mooncake read ('' = none)."""
    if devices is None:
        return ""
    if isinstance(devices, str):
        devices = devices.split(",")
    return ",".join(d.strip() for d in devices if d and d.strip())


def master_server_address(settings):
    return "%s:%s" % (settings["master_address"], settings["master_port"])


def _require(settings, *keys):
    missing = [k for k in keys if settings.get(k) in (None, "")]
    if missing:
        raise SettingsError("missing settings: %s" % ", ".join("vllm_pd_" + k for k in missing))


def lmcache_config(settings):
    """LMCache's engine configuration (v1 YAML keys) for one host, in the guide's order."""
    _require(settings, "chunk_size", "master_address", "master_port", "host_address", "metadata_server",
             "protocol")
    extra = {
        "local_hostname": settings["host_address"],
        "metadata_server": settings["metadata_server"],
        "protocol": settings["protocol"],
        "device_name": device_names(settings.get("rdma_devices")),
        "master_server_address": master_server_address(settings),
        "global_segment_size": int(settings.get("global_segment_size", 524288000)),
        "local_buffer_size": int(settings.get("local_buffer_size", 524288000)),
        "transfer_timeout": settings.get("transfer_timeout", 1),
        "save_chunk_meta": bool(settings.get("lmcache_save_chunk_meta", False)),
    }
    extra.update(settings.get("lmcache_extra_config") or {})
    config = {
        "chunk_size": int(settings["chunk_size"]),
        "remote_url": "mooncakestore://%s/" % master_server_address(settings),
        "remote_serde": settings.get("lmcache_remote_serde", "naive"),
        "local_cpu": bool(settings.get("lmcache_local_cpu", False)),
        "max_local_cpu_size": settings.get("lmcache_max_local_cpu_size", 1),
        "extra_config": extra,
    }
    config.update(settings.get("lmcache_options") or {})
    return config


def mooncake_store_config(settings):
    """The JSON that vLLM's MooncakeStoreConnector reads from MOONCAKE_CONFIG_PATH."""
    _require(settings, "master_address", "master_port", "metadata_server", "protocol")
    config = {
        "metadata_server": settings["metadata_server"],
        "master_server_address": master_server_address(settings),
        "protocol": settings["protocol"],
        "device_name": device_names(settings.get("rdma_devices")),
        "global_segment_size": int(settings.get("global_segment_size", 524288000)),
        "local_buffer_size": int(settings.get("local_buffer_size", 524288000)),
    }
    config.update(settings.get("mooncake_options") or {})
    return config


def connector_config(settings):
    """The connector file's content for the host's profile."""
    profile = settings.get("kv_connector")
    if profile == "lmcache_mooncake":
        return lmcache_config(settings)
    if profile == "mooncake_store":
        return mooncake_store_config(settings)
    raise SettingsError("unknown vllm_pd_kv_connector %r: use one of %s" % (profile, ", ".join(sorted(CONNECTORS))))


def kv_transfer_config(settings):
    """vLLM's --kv-transfer-config for the host's profile and stage."""
    profile = settings.get("kv_connector")
    stage = settings.get("stage")
    if profile not in CONNECTORS:
        raise SettingsError("unknown vllm_pd_kv_connector %r" % (profile,))
    if stage not in KV_ROLES:
        raise SettingsError("host is neither in group prefill nor in group decode (stage %r)" % (stage,))
    config = {"kv_connector": CONNECTORS[profile], "kv_role": KV_ROLES[stage]}
    if settings.get("kv_connector_extra_config"):
        config["kv_connector_extra_config"] = settings["kv_connector_extra_config"]
    return config


def engine_args(settings):
    """Arguments of the `vllm` command (starting with `serve`) for one engine."""
    _require(settings, "model", "bind_address", "port")
    args = ["serve", str(settings["model"]),
            "--host", str(settings["bind_address"]),
            "--port", str(settings["port"])]
    optional = (
        ("served_model_name", "--served-model-name"),
        ("tensor_parallel_size", "--tensor-parallel-size"),
        ("dtype", "--dtype"),
        ("kv_cache_dtype", "--kv-cache-dtype"),
        ("max_model_len", "--max-model-len"),
        ("block_size", "--block-size"),
        ("gpu_memory_utilization", "--gpu-memory-utilization"),
        ("max_num_seqs", "--max-num-seqs"),
    )
    for key, flag in optional:
        value = settings.get(key)
        if value not in (None, ""):
            args += [flag, str(value)]
    if settings.get("enforce_eager"):
        args.append("--enforce-eager")
    args += ["--kv-transfer-config", json.dumps(kv_transfer_config(settings), sort_keys=True,
                                                separators=(",", ":"))]
    args += [str(a) for a in settings.get("extra_args") or []]
    return args


# ---------------------------------------------------------------- packages
def normalize_name(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pin(pin):
    """'vllm==0.11.0' -> ('vllm', '0.11.0'); anything not pinned exactly raises SettingsError."""
    match = _PIN.match(str(pin))
    if not match:
        raise SettingsError("%r is not pinned: write name==version" % (pin,))
    return normalize_name(match.group(1)), match.group(2)


def version_matches(wanted, installed):
    """PEP 440 equality without a local label in the pin: '2.13.0' matches '2.13.0+cpu'."""
    if installed is None:
        return False
    if "+" in wanted:
        return installed == wanted
    return installed == wanted or installed.split("+", 1)[0] == wanted


def missing_pins(pins, installed):
    """Pins whose exact version is not installed. `installed` maps distribution name -> version."""
    have = dict((normalize_name(k), v) for k, v in (installed or {}).items())
    missing = []
    for pin in pins or []:
        name, version = parse_pin(pin)
        if not version_matches(version, have.get(name)):
            missing.append(pin)
    return missing


def normalized_pins(pins):
    """A comparable form of a pin list (order and name spelling do not matter)."""
    return sorted("%s==%s" % parse_pin(p) for p in pins or [])


# ---------------------------------------------------------------- consistency guard
def _show(value):
    if isinstance(value, (list, tuple)):
        return "[%s]" % ", ".join(str(v) for v in value)
    if value is None or value == "":
        return "(unset)"
    return repr(value) if isinstance(value, str) else str(value)


def _comparable(key, value):
    if key == "packages":
        try:
            return tuple(normalized_pins(value))
        except SettingsError:
            return tuple(sorted(str(v) for v in value or []))
    if key in ("tensor_parallel_size", "chunk_size", "block_size") and value not in (None, ""):
        try:
            return int(value)
        except (TypeError, ValueError):
            return value
    if value in (None, ""):
        return None
    return str(value) if not isinstance(value, (list, tuple)) else tuple(value)


def _describe_split(hosts, key):
    by_value = {}
    for name in sorted(hosts):
        value = _comparable(key, hosts[name].get(key))
        by_value.setdefault(value, []).append(name)
    parts = []
    for value, names in sorted(by_value.items(), key=lambda kv: kv[1][0]):
        shown = _show(hosts[names[0]].get(key))
        parts.append("%s on %s" % (shown, ", ".join("%s (%s)" % (n, hosts[n].get("stage", "?")) for n in names)))
    return len(by_value), "; ".join(parts)


def consistency_problems(hosts, require_both_stages=True):
    """Every way the engines disagree on what must be identical; [] when they agree.

    `hosts` maps host name -> settings (with `stage` and, optionally, `installed`: the distribution
    versions found in the host's venv). Each problem is one message naming the variable, the hosts
    and their values, why it matters and how to fix it. Without `require_both_stages` (a run limited
    to some hosts), a stage without hosts among those given is not a problem.
    """
    problems = []
    if not hosts:
        return ["no engine hosts: put hosts in the groups prefill and decode"]
    stages = set(h.get("stage") for h in hosts.values())
    for stage in ("prefill", "decode") if require_both_stages else ():
        if stage not in stages:
            problems.append("no %s host: the group %s is empty, PD needs at least one host in each of "
                            "prefill and decode" % (stage, stage))
    for name in sorted(hosts):
        seed = hosts[name].get("python_hash_seed")
        if seed in (None, "") or not _HASH_SEED.match(str(seed)) or int(str(seed)) > 4294967295:
            problems.append("PYTHONHASHSEED on %s is %s: it must be a fixed number (0..4294967295), the same "
                            "on every engine, or prefix-cache hashes differ between prefill and decode; set "
                            "vllm_pd_python_hash_seed in group_vars/all" % (name, _show(seed)))
    for key, variable, why in CONSISTENT_KEYS:
        compared = hosts
        if key in _DECLARED_WHERE_USED:
            # A venv engine has no image and an engine on a ready-made image no pins: each is compared
            # with the engines that declare the same thing; the versions themselves are compared across
            # all of them below (what each venv or image holds).
            compared = dict((name, s) for name, s in hosts.items() if s.get(key))
        count, split = _describe_split(compared, key)
        if count > 1:
            problems.append("%s differs between the engines: %s. It must be identical on every prefill and "
                            "decode host (%s): set %s once in group_vars/all, not per host."
                            % (variable, split, why, variable))
    problems.extend(_installed_problems(hosts))
    return problems


def _installed_problems(hosts):
    """Installed versions that differ between hosts that both have the distribution."""
    problems = []
    names = set()
    for settings in hosts.values():
        names.update(normalize_name(n) for n in (settings.get("installed") or {}))
    watched = set()
    for settings in hosts.values():
        for pin in settings.get("packages") or []:
            try:
                watched.add(parse_pin(pin)[0])
            except SettingsError:
                continue
    for dist in sorted(names & watched):
        seen = {}
        for host in sorted(hosts):
            installed = dict((normalize_name(k), v) for k, v in (hosts[host].get("installed") or {}).items())
            if dist in installed:
                seen.setdefault(installed[dist], []).append(host)
        if len(seen) > 1:
            split = "; ".join("%s on %s" % (v, ", ".join(h)) for v, h in sorted(seen.items()))
            problems.append("installed %s differs between the engines: %s. Re-run the role's install phase "
                            "(tag vllm_pd_install) so that every venv holds vllm_pd_pip_packages." % (dist, split))
    return problems


# ---------------------------------------------------------------- RDMA devices of an engine
def device_list(devices):
    """The RDMA device list as given (a list or a comma-separated string), entries stripped."""
    if devices is None:
        return []
    if isinstance(devices, str):
        devices = devices.split(",")
    return [str(d).strip() if d is not None else "" for d in devices]


def empty_device_entries(devices):
    """Positions (1-based) of empty entries: Mooncake skips them, or with none left falls back to TCP.

    An empty list (or an empty string) has no entries: whether protocol rdma needs some is checked apart.
    """
    if isinstance(devices, str) and not devices.strip():
        return []
    return [i + 1 for i, name in enumerate(device_list(devices)) if not name]


def active_ports(device):
    return [p.get("port") for p in device.get("ports") or [] if p.get("state") == "PORT_ACTIVE"]


def rdma_device_problems(wanted, devices, where="this host"):
    """Why the listed RDMA devices cannot carry Mooncake's transfers; [] when each exists with an active port.

    `wanted` is vllm_pd_rdma_devices, `devices` what ibv_devinfo listed (parsed by module_utils/rdma_devinfo).
    """
    found = dict((d.get("hca_id"), d) for d in devices or [])
    problems = []
    for position in empty_device_entries(wanted):
        problems.append("entry %d of vllm_pd_rdma_devices is empty: remove it (Mooncake skips empty names)"
                        % position)
    for name in [n for n in device_list(wanted) if n]:
        device = found.get(name)
        if device is None:
            problems.append("%s has no RDMA device %s (ibv_devinfo lists: %s)"
                            % (where, name, ", ".join(sorted(found)) or "none"))
        elif not active_ports(device):
            states = ", ".join("port %s %s" % (p.get("port"), p.get("state")) for p in device.get("ports") or [])
            problems.append("%s: %s has no PORT_ACTIVE port (%s)" % (where, name, states or "no ports"))
    return problems


def device_summary(devices):
    """The parts of parsed ibv_devinfo devices that a report shows: name, transport, ports and their states."""
    return [{"hca_id": d.get("hca_id"), "transport": d.get("transport"), "is_erdma": d.get("is_erdma"),
             "ports": [{"port": p.get("port"), "state": p.get("state"), "link_layer": p.get("link_layer")}
                       for p in d.get("ports") or []],
             "active": bool(active_ports(d))}
            for d in devices or []]


_UVERBS_IBDEV = re.compile(r"^(?:.*/)?(uverbs\d+)/ibdev:(\S+)\s*$")


def uverbs_devices(ibdev_lines, wanted):
    """Device nodes a container needs for the listed RDMA devices.

    `ibdev_lines` is `grep -H . /sys/class/infiniband_verbs/uverbs*/ibdev` ('.../uverbs0/ibdev:erdma_0');
    returns /dev/infiniband/uverbsN of each listed device, in the order of the list, and raises
    SettingsError for a device without a verbs node (the kernel's ib_uverbs is not loaded for it).
    """
    nodes = {}
    for line in (ibdev_lines or "").splitlines():
        match = _UVERBS_IBDEV.match(line.strip())
        if match:
            nodes[match.group(2)] = "/dev/infiniband/" + match.group(1)
    result = []
    for name in [n for n in device_list(wanted) if n]:
        if name not in nodes:
            raise SettingsError("RDMA device %s has no /dev/infiniband/uverbs* node (seen: %s): load ib_uverbs "
                                "(modprobe ib_uverbs) and check ls /sys/class/infiniband_verbs"
                                % (name, ", ".join("%s=%s" % kv for kv in sorted(nodes.items())) or "none"))
        result.append(nodes[name])
    return result


# ---------------------------------------------------------------- the engine image
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def pinned_image(image, digest):
    """'repo:tag' + 'sha256:...' -> 'repo:tag@sha256:...'; the image unchanged without a digest."""
    image = str(image or "").strip()
    digest = str(digest or "").strip()
    if not digest:
        return image
    if not _DIGEST.match(digest):
        raise SettingsError("image digest %r is not sha256:<64 hex digits>" % digest)
    if "@" in image:
        if image.split("@", 1)[1] != digest:
            raise SettingsError("image %s already names another digest than %s" % (image, digest))
        return image
    return "%s@%s" % (image, digest)


def gpg_fingerprints(colons_text):
    """Fingerprints of the primary keys in `gpg --show-keys --with-colons` output (upper-case hex)."""
    fingerprints = []
    expect_primary = False
    for line in (colons_text or "").splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            expect_primary = True
        elif fields[0] == "sub":
            expect_primary = False
        elif fields[0] == "fpr" and expect_primary and len(fields) > 9:
            fingerprints.append(fields[9].upper())
            expect_primary = False
    return fingerprints


def normalize_fingerprint(text):
    """'A1B2 C3D4 ...' or '0xa1b2...' -> 'A1B2C3D4...'."""
    text = re.sub(r"\s+", "", str(text or "")).upper()
    return text[2:] if text.startswith("0X") else text


# ---------------------------------------------------------------- Mooncake's transport, from the engine log
_RDMA_SETUP_FAILURES = (
    r"Failed to install RDMA transport",
    r"RdmaTransport: No available RNIC",
    r"RdmaTransport: cannot initialize RDMA resources",
    r"No RDMA devices found",
    r"Failed to initialize transfer engine",
)


def mooncake_transport_report(log_text, protocol):
    """What Mooncake's transfer engine did in an engine's log, and why that is wrong for `protocol`.

    The silent fallback: with protocol rdma but no usable device name, Mooncake auto-discovers, finds
    0 HCAs and installs its TCP transport (setup succeeds, nothing is logged as an error). Returns
    {'transport', 'fallback', 'errors', 'reason'}; reason is None when the log shows nothing wrong.
    """
    text = log_text or ""
    tcp = bool(re.search(r"TcpTransport: listen on port", text))
    rdma = bool(re.search(r"Using specified RDMA devices|Found [1-9]\d* HCAs", text))
    errors = []
    for line in text.splitlines():
        if any(re.search(p, line) for p in _RDMA_SETUP_FAILURES) and line.strip() not in errors:
            errors.append(line.strip())
    fell_back = protocol == "rdma" and tcp and bool(re.search(r"Found 0 HCAs", text))
    report = {"transport": "tcp" if tcp else ("rdma" if rdma else None), "fallback": bool(fell_back),
              "errors": errors[:10], "reason": None}
    if protocol != "rdma":
        return report
    if fell_back:
        report["reason"] = ("Mooncake found no RDMA device and runs over TCP (the log says: %s): name the devices "
                            "in vllm_pd_rdma_devices and make them visible in the engine (/dev/infiniband)"
                            % "; ".join(errors[:3] or ["Found 0 HCAs"]))
    elif errors:
        report["reason"] = ("Mooncake could not set up RDMA: %s. Check the devices with ibv_devinfo on the host "
                            "and inside the engine" % "; ".join(errors[:3]))
    return report
