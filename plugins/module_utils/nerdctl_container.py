# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manage one container through the nerdctl, docker or podman command line.

The three tools take the same `run` flags and print docker-compatible `container inspect` JSON, but
not all of it: nerdctl before 2.0 has no HostConfig and no Config.Env/Cmd (only Labels, Path/Args,
State, Mounts), podman prints RLIMIT_* ulimit names and a string entrypoint. So the decision to
recreate rests on a hash of the desired configuration, kept in a label on the container; the
inspect output adds a per-field diff (what a person reads) for the fields the tool does print,
and catches changes made behind the module's back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re

from ansible_collections.erdma.pd.plugins.module_utils.cpu_list import is_cpu_list, normalize_cpu_list

HASH_LABEL = "io.erdma-pd.config-hash"
FLAVOURS = ("nerdctl", "docker", "podman")
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")

# The parameters that make up a container's configuration (the hash covers exactly these).
CONFIG_KEYS = ("image", "entrypoint", "command", "env", "volumes", "ulimits", "gpus", "network", "ipc",
               "privileged", "cap_add", "devices", "restart_policy", "labels", "hostname", "user", "workdir",
               "published_ports", "shm_size", "extra_args")

# Keys hashed only when set, so that containers created before they existed keep their hash.
OPTIONAL_CONFIG_KEYS = ("env_file", "env_file_digest", "cpuset_cpus")

# What results show instead of an environment value (values may be secrets).
HIDDEN = "(value hidden)"

_ULIMIT = re.compile(r"^([A-Za-z_]+)=(-?\d+|unlimited)(?::(-?\d+|unlimited))?$")


class ContainerError(Exception):
    """A parameter or a tool answer that the module cannot accept (message for the user)."""


def flavour_of(executable):
    """nerdctl, docker or podman, from the executable's name (a path is fine)."""
    base = os.path.basename(str(executable))
    for flavour in FLAVOURS:
        if base == flavour or base.startswith(flavour + "-") or base.startswith(flavour + "."):
            return flavour
    raise ContainerError("executable %r is none of %s: give the path of one of them" % (executable, ", ".join(FLAVOURS)))


# ---------------------------------------------------------------- normalisation
def _ulimit_value(text):
    return -1 if text in ("unlimited", "-1") else int(text)


def parse_ulimit(spec):
    """'memlock=-1' -> ('memlock', -1, -1); 'nofile=1024:2048' -> ('nofile', 1024, 2048)."""
    match = _ULIMIT.match(str(spec).strip())
    if not match:
        raise ContainerError("ulimit %r is not NAME=SOFT[:HARD] (e.g. memlock=-1, stack=67108864)" % (spec,))
    name = normalize_ulimit_name(match.group(1))
    soft = _ulimit_value(match.group(2))
    hard = _ulimit_value(match.group(3)) if match.group(3) is not None else soft
    return name, soft, hard


def normalize_ulimit_name(name):
    name = str(name).lower()
    return name[len("rlimit_"):] if name.startswith("rlimit_") else name


def normalize_cap(cap):
    cap = str(cap).strip().upper()
    return cap if cap.startswith("CAP_") else "CAP_" + cap


def parse_volume(spec):
    """'SRC:DST[:OPTS]' -> (src, dst, 'ro'|'rw', other options sorted)."""
    parts = str(spec).split(":")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ContainerError("volume %r is not SOURCE:DESTINATION[:OPTIONS]" % (spec,))
    options = parts[2].split(",") if len(parts) > 2 and parts[2] else []
    mode = "ro" if "ro" in options else "rw"
    rest = sorted(o for o in options if o not in ("ro", "rw"))
    return parts[0], parts[1], mode, rest


def env_file_digest(paths, read=None):
    """One digest over the contents of the environment files, so that a changed secret recreates the
    container without the secret itself being compared, shown or stored in a label."""
    read = read or _read_bytes
    digest = hashlib.sha256()
    for path in paths:
        try:
            content = read(path)
        except (IOError, OSError) as exc:
            raise ContainerError("env_file %s cannot be read: %s" % (path, exc))
        digest.update(path.encode("utf-8") + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()[:32]


def _read_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def desired_config(params, read=None):
    """The module parameters as a canonical configuration (the hash input and the diff's 'after')."""
    entrypoint = params.get("entrypoint")
    if entrypoint is not None and not isinstance(entrypoint, list):
        entrypoint = [str(entrypoint)]
    ulimits = {}
    for spec in params.get("ulimits") or []:
        name, soft, hard = parse_ulimit(spec)
        ulimits[name] = "%d:%d" % (soft, hard)
    volumes = []
    for spec in params.get("volumes") or []:
        src, dst, mode, rest = parse_volume(spec)
        volumes.append(":".join([src, dst, ",".join([mode] + rest)]))
    policy = params.get("restart_policy") or "no"
    if policy.split(":")[0] not in RESTART_POLICIES:
        raise ContainerError("restart_policy %r is none of %s" % (policy, ", ".join(RESTART_POLICIES)))
    labels = dict((str(k), str(v)) for k, v in (params.get("labels") or {}).items())
    if HASH_LABEL in labels:
        raise ContainerError("the label %s is the module's own: do not set it" % HASH_LABEL)
    stop_timeout = params.get("stop_timeout")
    if stop_timeout is not None and int(stop_timeout) < 0:
        raise ContainerError("stop_timeout must be 0 or more seconds, got %s" % (stop_timeout,))
    env_files = [str(path) for path in params.get("env_file") or []]
    for path in env_files:
        if not path.startswith("/"):
            raise ContainerError("env_file %r must be an absolute path" % (path,))
    cpuset = normalize_cpu_list(params.get("cpuset_cpus") or "")
    if not is_cpu_list(cpuset):
        raise ContainerError("cpuset_cpus %r is not a CPU list (0-7, 0,2,4-5)" % (params.get("cpuset_cpus"),))
    return {
        "image": params["image"],
        "entrypoint": entrypoint,
        "command": [str(a) for a in params.get("command") or []],
        "env": dict(sorted((str(k), str(v)) for k, v in (params.get("env") or {}).items())),
        "volumes": sorted(volumes),
        "ulimits": dict(sorted(ulimits.items())),
        "gpus": params.get("gpus") or None,
        "network": params.get("network") or None,
        "ipc": params.get("ipc") or None,
        "privileged": bool(params.get("privileged")),
        "cap_add": sorted(set(normalize_cap(c) for c in params.get("cap_add") or [])),
        "devices": sorted(set(str(d) for d in params.get("devices") or [])),
        "restart_policy": policy,
        "labels": dict(sorted(labels.items())),
        "hostname": params.get("hostname") or None,
        "user": params.get("user") or None,
        "workdir": params.get("workdir") or None,
        "published_ports": sorted(str(p) for p in params.get("published_ports") or []),
        "shm_size": params.get("shm_size") or None,
        "extra_args": [str(a) for a in params.get("extra_args") or []],
        "env_file": env_files,
        "env_file_digest": env_file_digest(env_files, read) if env_files else None,
        "cpuset_cpus": cpuset or None,
    }


def config_hash(config):
    """A stable digest of a desired configuration (the label that decides recreation)."""
    hashed = dict((k, config.get(k)) for k in CONFIG_KEYS)
    hashed.update((k, config[k]) for k in OPTIONAL_CONFIG_KEYS if config.get(k))
    canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


# ---------------------------------------------------------------- command lines
def run_args(flavour, name, config, detach=True, pull=None, stop_timeout=None):
    """Arguments after the executable that create (and with detach, start) the container."""
    args = ["run", "--detach"] if detach else ["create"]
    args += ["--name", name]
    if pull:
        args += ["--pull", pull]
    if stop_timeout is not None:
        args += ["--stop-timeout", str(stop_timeout)]
    for path in config.get("env_file") or []:
        args += ["--env-file", path]
    for key, value in config["env"].items():
        args += ["--env", "%s=%s" % (key, value)]
    for volume in config["volumes"]:
        args += ["--volume", volume]
    for ulimit, value in config["ulimits"].items():
        soft, hard = value.split(":")
        args += ["--ulimit", "%s=%s" % (ulimit, soft if soft == hard else value)]
    if config["gpus"]:
        if flavour == "podman":
            # podman takes GPUs as CDI devices (nvidia-ctk cdi generate) rather than --gpus.
            gpus = config["gpus"].strip('"')
            devices = ["all"] if gpus == "all" else gpus.replace("device=", "").split(",")
            for device in devices:
                args += ["--device", "nvidia.com/gpu=%s" % device]
        else:
            args += ["--gpus", config["gpus"]]
    if config["network"]:
        args += ["--network", config["network"]]
    if config["ipc"]:
        args += ["--ipc", config["ipc"]]
    if config["privileged"]:
        args.append("--privileged")
    for cap in config["cap_add"]:
        args += ["--cap-add", cap]
    for device in config.get("devices") or []:
        args += ["--device", device]
    args += ["--restart", config["restart_policy"]]
    for key, value in config["labels"].items():
        args += ["--label", "%s=%s" % (key, value)]
    args += ["--label", "%s=%s" % (HASH_LABEL, config_hash(config))]
    for key, flag in (("hostname", "--hostname"), ("user", "--user"), ("workdir", "--workdir"),
                      ("shm_size", "--shm-size"), ("cpuset_cpus", "--cpuset-cpus")):
        if config.get(key):
            args += [flag, str(config[key])]
    for port in config["published_ports"]:
        args += ["--publish", port]
    if config["entrypoint"] is not None:
        # --entrypoint takes one word; the rest of a longer entrypoint goes before the command.
        args += ["--entrypoint", config["entrypoint"][0] if config["entrypoint"] else ""]
    args += config["extra_args"]
    args.append(config["image"])
    if config["entrypoint"]:
        args += config["entrypoint"][1:]
    args += config["command"]
    return args


def inspect_args(name):
    return ["container", "inspect", name]


def is_missing(rc, stdout, stderr):
    """Whether `container inspect` failed because the container does not exist."""
    if rc == 0:
        return False
    text = ("%s %s" % (stdout, stderr)).lower()
    return "no such container" in text or "no such object" in text or "not found" in text


# ---------------------------------------------------------------- what results may show
def redact_args(args):
    """A command line for results and errors: each --env KEY=VALUE shows its key only."""
    shown = list(args)
    for index in range(1, len(shown)):
        if shown[index - 1] in ("--env", "-e") and "=" in shown[index]:
            shown[index] = "%s=%s" % (shown[index].split("=", 1)[0], HIDDEN)
    return shown


def redact_env(env):
    return dict((key, HIDDEN) for key in env or {})


def redact_config(config):
    """A desired configuration for the diff: env keys without values, no file digest."""
    shown = dict(config)
    shown["env"] = redact_env(config.get("env"))
    shown.pop("env_file_digest", None)
    return shown


def redact_differences(diff):
    """{field: (before, after)} with environment values hidden (the keys say what changed)."""
    shown = dict(diff)
    if "env" in shown:
        before, after = shown["env"]
        shown["env"] = (redact_env(before), redact_env(after))
    return shown


def redact_inspect(data):
    """A container inspect object for results: Config.Env (which also holds env_file values) as keys."""
    if not isinstance(data, dict):
        return data
    shown = dict(data)
    config = shown.get("Config")
    if isinstance(config, dict) and isinstance(config.get("Env"), list):
        config = dict(config)
        config["Env"] = ["%s=%s" % (str(item).split("=", 1)[0], HIDDEN) for item in config["Env"]]
        shown["Config"] = config
    return shown


# ---------------------------------------------------------------- inspect parsing
def parse_inspect(text):
    """`container inspect` JSON (a list with one object, or the object) -> the object, or None."""
    data = json.loads(text) if isinstance(text, str) else text
    if isinstance(data, list):
        if not data:
            return None
        data = data[0]
    if not isinstance(data, dict):
        raise ContainerError("container inspect printed something that is not a container object")
    return data


def _mapping(value):
    return value if isinstance(value, dict) else {}


def _ulimits_of(host):
    """HostConfig.Ulimits -> {name: 'soft:hard'}; None when absent or not in the expected shape."""
    items = host.get("Ulimits")
    if not isinstance(items, list):
        return None
    ulimits = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("Name"), str) \
                or not isinstance(item.get("Soft"), int) or not isinstance(item.get("Hard"), int):
            return None
        ulimits[normalize_ulimit_name(item["Name"])] = "%d:%d" % (item["Soft"], item["Hard"])
    return ulimits


def _env_of(config):
    items = config.get("Env")
    if not isinstance(items, list):
        return None
    env = {}
    for item in items:
        key, value = str(item).split("=", 1) if "=" in str(item) else (str(item), "")
        env[key] = value
    return env


def _volumes_of(data):
    mounts = data.get("Mounts")
    if not isinstance(mounts, list):
        return None
    return sorted("%s:%s:%s" % (m.get("Source"), m.get("Destination"), "rw" if m.get("RW", True) else "ro")
                  for m in mounts if isinstance(m, dict) and m.get("Type", "bind") == "bind")


def actual_config(data):
    """What the inspect object says about the keys we compare; None where the tool does not print it.

    Tools and versions print different subsets (and a future one may print other shapes): a field in
    an unexpected shape counts as not printed, so the hash label decides, rather than a crash.
    """
    if not isinstance(data, dict):
        raise ContainerError("container inspect printed %s, not a container object" % type(data).__name__)
    config = _mapping(data.get("Config"))
    host = data.get("HostConfig") if isinstance(data.get("HostConfig"), dict) else None
    state = _mapping(data.get("State"))
    labels = dict((str(k), str(v)) for k, v in _mapping(config.get("Labels")).items())
    image = config.get("Image") or data.get("ImageName") or data.get("Image")
    if not isinstance(image, str) or image.startswith("sha256:"):
        image = None
    argv = None
    if isinstance(data.get("Path"), str) and data["Path"]:
        args = data.get("Args")
        argv = [data["Path"]] + [str(a) for a in (args if isinstance(args, list) else [])]
    ulimits = privileged = network = policy = None
    if host is not None:
        ulimits = _ulimits_of(host)
        privileged = bool(host.get("Privileged"))
        network = host.get("NetworkMode") if isinstance(host.get("NetworkMode"), str) else None
        policy = _mapping(host.get("RestartPolicy")).get("Name") or "no"
    status = state.get("Status")
    return {
        "image": image,
        "argv": argv,
        "env": _env_of(config),
        "volumes": _volumes_of(data),
        "ulimits": ulimits,
        "privileged": privileged,
        "network": network or None,
        "restart_policy": policy,
        "labels": labels,
        "hash": labels.get(HASH_LABEL),
        "status": status if isinstance(status, str) and status else (
            "running" if state.get("Running") is True else "unknown"),
        "running": state.get("Running") is True,
        "id": data.get("Id"),
    }


def _short_image(name):
    """docker.io/library/alpine:latest and alpine compare equal."""
    name = str(name)
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def differences(desired, actual):
    """Fields whose actual value differs from the desired one: {field: (before, after)}.

    Only what the tool printed is compared, and only the part we manage (env keys, labels, ulimits and
    volumes that we set: the image and the runtime add their own). The hash label covers the rest.
    """
    diff = {}
    if actual["image"] is not None and _short_image(actual["image"]) != _short_image(desired["image"]):
        diff["image"] = (actual["image"], desired["image"])
    if actual["argv"] is not None:
        wanted = (desired["entrypoint"] or []) + desired["command"]
        if desired["entrypoint"] is not None:
            if actual["argv"] != wanted:
                diff["command"] = (actual["argv"], wanted)
        elif desired["command"] and actual["argv"][-len(desired["command"]):] != desired["command"]:
            diff["command"] = (actual["argv"], desired["command"])
    if actual["env"] is not None:
        changed = dict((k, v) for k, v in desired["env"].items() if actual["env"].get(k) != v)
        if changed:
            diff["env"] = (dict((k, actual["env"].get(k)) for k in changed), changed)
    if actual["volumes"] is not None:
        have = set(v for v in actual["volumes"])
        wanted = set(":".join(v.split(":")[:2] + [v.split(":")[2].split(",")[0]]) for v in desired["volumes"])
        if not wanted <= have:
            diff["volumes"] = (sorted(have), sorted(wanted))
    if actual["ulimits"] is not None:
        changed = dict((k, v) for k, v in desired["ulimits"].items() if actual["ulimits"].get(k) != v)
        if changed:
            diff["ulimits"] = (dict((k, actual["ulimits"].get(k)) for k in changed), changed)
    if actual["privileged"] is not None and actual["privileged"] != desired["privileged"]:
        diff["privileged"] = (actual["privileged"], desired["privileged"])
    if actual["network"] is not None and desired["network"] in ("host", "none") \
            and actual["network"] != desired["network"]:
        diff["network"] = (actual["network"], desired["network"])
    if actual["restart_policy"] is not None and \
            actual["restart_policy"] != desired["restart_policy"].split(":")[0]:
        diff["restart_policy"] = (actual["restart_policy"], desired["restart_policy"])
    labels = dict((k, v) for k, v in desired["labels"].items() if actual["labels"].get(k) != v)
    if labels:
        diff["labels"] = (dict((k, actual["labels"].get(k)) for k in labels), labels)
    wanted_hash = config_hash(desired)
    if actual["hash"] != wanted_hash:
        diff["config_hash"] = (actual["hash"], wanted_hash)
    return diff


# ---------------------------------------------------------------- the decision
def plan(state, desired, actual, recreate=False, restart=False):
    """The actions that bring the container from `actual` (None: absent) to `state`.

    Returns (actions, diff): actions among remove, create, start, stop, restart (in order); create
    starts the container when state is started.
    """
    if state == "absent":
        return (["remove"] if actual is not None else []), {}
    diff = differences(desired, actual) if actual is not None else {}
    actions = []
    if actual is None:
        actions.append("create")
    elif diff or recreate:
        actions += ["remove", "create"]
    if "create" in actions:
        return actions, diff
    if state == "started":
        if not actual["running"]:
            actions.append("start")
        elif restart:
            actions.append("restart")
    elif state == "stopped" and actual["running"]:
        actions.append("stop")
    return actions, diff
