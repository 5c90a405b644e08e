#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nerdctl_container
short_description: Manage a container with nerdctl, docker or podman, recreating it only when its configuration changed
version_added: 0.1.0
description:
  - Creates, starts, stops, restarts and removes one container through the command line of C(nerdctl) (containerd),
    C(docker) or C(podman); the three take the same C(run) flags.
  - The desired configuration (image, entrypoint, command, environment, volumes, ulimits, GPUs, network, IPC,
    privileges, capabilities, restart policy, labels, ...) is hashed into the label C(io.erdma-pd.config-hash).
    The container is recreated only when that hash differs or when C(container inspect) shows a managed field
    that differs (a change made by hand); otherwise nothing happens.
  - Check mode reports what would happen; diff mode shows the fields that differ.
  - Given O(inspect_output), the module runs nothing and reports what it would do against that recorded
    C(container inspect) output (parse-only mode).
author:
  - erdma.pd maintainers (@erdma-pd)
options:
  name:
    description: Container name.
    type: str
    required: true
  executable:
    description:
      - The container CLI, C(nerdctl), C(docker) or C(podman), or a path to one of them.
      - With C(podman), O(gpus) becomes CDI devices (C(--device nvidia.com/gpu=...)).
    type: str
    default: nerdctl
  state:
    description:
      - V(started) creates the container if needed and makes sure it runs; V(stopped) makes sure it does not run
        (creating it if needed); V(present) creates it without starting it; V(absent) removes it.
    type: str
    choices: [started, stopped, present, absent]
    default: started
  image:
    description: Image reference. Required unless O(state=absent).
    type: str
  pull:
    description: Pull policy passed as C(--pull) when the container is created.
    type: str
    choices: [always, missing, never]
  entrypoint:
    description: Overrides the image's entrypoint (C(--entrypoint)).
    type: str
  command:
    description: Arguments after the image.
    type: list
    elements: str
    default: []
  env:
    description:
      - Environment variables. Their values are C(no_log) and never appear in the results (C(command), C(diff),
        C(differences) and C(container) show the keys only); they do appear in the container's own
        C(inspect) output and, while the container is created, in the host's process list.
      - Put secrets in O(env_file) instead.
    type: dict
    default: {}
  env_file:
    description:
      - Environment files on the managed host (C(--env-file), one C(KEY=value) per line), for secrets. Keep them
        mode 0600, root. A change of their contents recreates the container (a digest of the contents is part
        of the configuration hash; the values are never compared, shown or stored).
    type: list
    elements: path
    default: []
  volumes:
    description: Bind mounts as C(SOURCE:DESTINATION[:OPTIONS]) (for example C(/data/models:/data/models:ro)).
    type: list
    elements: str
    default: []
  ulimits:
    description: Resource limits as C(NAME=SOFT[:HARD]), for example C(memlock=-1) and C(stack=67108864).
    type: list
    elements: str
    default: []
  gpus:
    description: GPUs for the container, as C(--gpus) takes them (V(all), C("device=0,1")).
    type: str
  network:
    description: Network (C(--network)), for example V(host).
    type: str
  ipc:
    description: IPC namespace (C(--ipc)), for example V(host).
    type: str
  privileged:
    description: Run privileged.
    type: bool
    default: false
  cap_add:
    description: Capabilities to add (with or without the C(CAP_) prefix).
    type: list
    elements: str
    default: []
  devices:
    description:
      - Host device nodes to give the container (C(--device)), as C(HOST[:CONTAINER[:PERMISSIONS]]), for
        example C(/dev/infiniband/uverbs0) for one RDMA device without O(privileged).
    type: list
    elements: str
    default: []
  restart_policy:
    description: Restart policy (C(no), C(always), C(unless-stopped), C(on-failure[:N])).
    type: str
    default: "no"
  labels:
    description: Labels. C(io.erdma-pd.config-hash) is the module's own.
    type: dict
    default: {}
  hostname:
    description: Hostname inside the container.
    type: str
  user:
    description: User (and group) the process runs as.
    type: str
  workdir:
    description: Working directory inside the container.
    type: str
  published_ports:
    description: Ports to publish (C(--publish)), as the CLI takes them.
    type: list
    elements: str
    default: []
  shm_size:
    description: Size of C(/dev/shm) (C(--shm-size)).
    type: str
  cpuset_cpus:
    description:
      - CPUs the container may run on (C(--cpuset-cpus)), a CPU list such as C(0-7) or C(0,2,4-5).
      - Part of the configuration hash only when set, so containers created without it keep theirs.
    type: str
  extra_args:
    description: Further C(run) arguments, placed before the image; part of the configuration hash.
    type: list
    elements: str
    default: []
  stop_timeout:
    description: Seconds (0 or more) to wait for a clean stop before the container is killed (stop, restart, remove).
    type: int
    default: 30
  recreate:
    description: Recreate the container even when its configuration did not change.
    type: bool
    default: false
  restart:
    description:
      - Restart the running container when it is not (re)created in this run, for example because a file it
        mounts changed or a service it registered with restarted.
    type: bool
    default: false
  inspect_output:
    description:
      - Recorded output of C(container inspect NAME) (C([]) for a missing container). The module then runs
        nothing and returns the actions it would take and the diff.
    type: str
notes:
  - nerdctl before 2.0 prints neither C(HostConfig) nor C(Config.Env) in C(container inspect); the configuration
    hash label still detects every change made through this module.
seealso:
  - name: nerdctl command reference
    description: The C(run), C(container inspect) and lifecycle commands that this module drives.
    link: https://github.com/containerd/nerdctl/blob/main/docs/command-reference.md
attributes:
  check_mode:
    support: full
    description: Inspects the container and reports the actions it would take and their diff; changes nothing.
  diff_mode:
    support: full
    description: Shows the managed fields whose actual value differs from the desired one (or the whole configuration
      when the container is created).
"""

EXAMPLES = r"""
- name: Run the guide's prefill engine with nerdctl
  erdma.pd.nerdctl_container:
    name: vllm-pd-prefill
    image: localhost/erdma-pd-vllm:3f2a9c1b7d4e
    entrypoint: vllm
    command: [serve, /data/models/Qwen2.5-7B-Instruct, --port, "7100",
              --kv-transfer-config, '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_producer"}']
    env:
      LMCACHE_CONFIG_FILE: /etc/vllm-pd/vllm-pd-prefill.yaml
      PYTHONHASHSEED: "0"
    volumes: [/data/models:/data/models:ro, /etc/vllm-pd:/etc/vllm-pd:ro]
    gpus: all
    ipc: host
    network: host
    privileged: true
    cap_add: [SYS_ADMIN]
    ulimits: [memlock=-1, stack=67108864]
    cpuset_cpus: "0-15"  # the cores of the GPU's NUMA node
    restart_policy: unless-stopped

- name: The same container through podman, stopped
  erdma.pd.nerdctl_container:
    name: demo
    executable: podman
    image: docker.io/library/alpine:3.20
    command: [sleep, infinity]
    state: stopped

- name: What would change, against an inspect output recorded on a host
  erdma.pd.nerdctl_container:
    name: vllm-pd-decode
    image: localhost/erdma-pd-vllm:3f2a9c1b7d4e
    inspect_output: "{{ lookup('ansible.builtin.file', 'inspect-vllm-pd-decode.json') }}"
  register: plan
"""

RETURN = r"""
actions:
  description: What was (or, in check mode and parse-only mode, would be) done, in order.
  returned: always
  type: list
  elements: str
  sample: [remove, create]
config_hash:
  description: The hash of the desired configuration (value of the label C(io.erdma-pd.config-hash)).
  returned: unless state is absent
  type: str
  sample: 0f3c5e7a9b1d2f4e6a8c0e2d4f6b8a1c
differences:
  description: Managed fields whose actual value differs from the desired one, as C(before) and C(after).
  returned: always
  type: dict
  sample: {env: {before: {PYTHONHASHSEED: "(value hidden)"}, after: {PYTHONHASHSEED: "(value hidden)"}}}
command:
  description:
    - The command line that created the container (when it was created in this run), with each
      C(--env KEY=VALUE) shown as C(KEY=(value hidden)).
  returned: when the container was (or would be) created
  type: list
  elements: str
container:
  description:
    - The C(container inspect) object after the change (empty when absent or in check mode), with the values of
      C(Config.Env) replaced by C((value hidden)).
  returned: always
  type: dict
status:
  description: The container's state before the run (C(absent), C(running), C(exited), C(created), ...).
  returned: always
  type: str
  sample: running
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.erdma.pd.plugins.module_utils import nerdctl_container as nc


def argument_spec():
    return dict(
        name=dict(type="str", required=True),
        executable=dict(type="str", default="nerdctl"),
        state=dict(type="str", default="started", choices=["started", "stopped", "present", "absent"]),
        image=dict(type="str"),
        pull=dict(type="str", choices=["always", "missing", "never"]),
        entrypoint=dict(type="str"),
        command=dict(type="list", elements="str", default=[]),
        env=dict(type="dict", default={}, no_log=True),
        env_file=dict(type="list", elements="path", default=[]),
        volumes=dict(type="list", elements="str", default=[]),
        ulimits=dict(type="list", elements="str", default=[]),
        gpus=dict(type="str"),
        network=dict(type="str"),
        ipc=dict(type="str"),
        privileged=dict(type="bool", default=False),
        cap_add=dict(type="list", elements="str", default=[]),
        devices=dict(type="list", elements="str", default=[]),
        restart_policy=dict(type="str", default="no"),
        labels=dict(type="dict", default={}),
        hostname=dict(type="str"),
        user=dict(type="str"),
        workdir=dict(type="str"),
        published_ports=dict(type="list", elements="str", default=[]),
        shm_size=dict(type="str"),
        cpuset_cpus=dict(type="str"),
        extra_args=dict(type="list", elements="str", default=[]),
        stop_timeout=dict(type="int", default=30),
        recreate=dict(type="bool", default=False),
        restart=dict(type="bool", default=False),
        inspect_output=dict(type="str"),
    )


class Cli(object):
    def __init__(self, module):
        self.module = module
        self.flavour = nc.flavour_of(module.params["executable"])
        self.path = module.get_bin_path(module.params["executable"], required=module.params["inspect_output"] is None)

    def run(self, args, check=True):
        rc, out, err = self.module.run_command([self.path] + args)
        if check and rc != 0:
            msg = "%s %s failed (rc=%d): %s" % (self.flavour, " ".join(args[:2]), rc, (err or out).strip())
            self.module.fail_json(msg=msg, rc=rc, stdout=out, stderr=err, cmd=nc.redact_args([self.path] + args))
        return rc, out, err

    def inspect(self, name):
        rc, out, err = self.run(nc.inspect_args(name), check=False)
        if nc.is_missing(rc, out, err) or (rc == 0 and out.strip() in ("", "[]")):
            return None
        if rc != 0:
            msg = "%s container inspect %s failed (rc=%d): %s" % (self.flavour, name, rc, (err or out).strip())
            self.module.fail_json(msg=msg)
        return nc.parse_inspect(out)


# Ansible masks every no_log value wherever it appears in the result, as a substring: an env value
# such as "0" or "1" would turn every digit of the config hash and of the inspect object into stars.
# The module never returns env values (see the redact_* helpers); masking stays as a second guard
# for values long enough to be a secret.
_SHORTEST_MASKED_VALUE = 4


def _mask_only_values_worth_masking(module):
    module.no_log_values.difference_update(
        [value for value in module.no_log_values if len(value) < _SHORTEST_MASKED_VALUE])


def _env_file_reader(module):
    """Reads env files; in check mode a file that the same run would write first counts as changed."""
    def read(path):
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except (IOError, OSError):
            if module.check_mode:
                return b"\0missing in check mode"
            raise
    return read


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[("state", "started", ["image"]), ("state", "stopped", ["image"]),
                                        ("state", "present", ["image"])])
    p = module.params
    _mask_only_values_worth_masking(module)
    try:
        flavour = nc.flavour_of(p["executable"])
        desired = nc.desired_config(p, read=_env_file_reader(module)) if p["state"] != "absent" else None
    except nc.ContainerError as exc:
        module.fail_json(msg=str(exc))

    parse_only = p["inspect_output"] is not None
    cli = None if parse_only else Cli(module)
    try:
        data = nc.parse_inspect(p["inspect_output"]) if parse_only else cli.inspect(p["name"])
        actual = nc.actual_config(data) if data is not None else None
    except (ValueError, nc.ContainerError) as exc:
        module.fail_json(msg="cannot read the container inspect output: %s" % exc)
    actions, diff = nc.plan(p["state"], desired, actual, recreate=p["recreate"], restart=p["restart"])

    result = dict(changed=bool(actions) and not parse_only, actions=actions,
                  status=actual["status"] if actual else "absent",
                  differences=dict((k, dict(before=v[0], after=v[1]))
                                   for k, v in nc.redact_differences(diff).items()),
                  container={})
    if desired is not None:
        result["config_hash"] = nc.config_hash(desired)
        create_args = nc.run_args(flavour, p["name"], desired, detach=p["state"] == "started", pull=p["pull"],
                                  stop_timeout=p["stop_timeout"])
        if "create" in actions:
            result["command"] = nc.redact_args([p["executable"]] + create_args)
    if module._diff:
        shown = nc.redact_differences(diff)
        before = dict((k, v[0]) for k, v in shown.items())
        after = dict((k, v[1]) for k, v in shown.items())
        if actual is None and desired is not None:
            before, after = {"state": "absent"}, dict(nc.redact_config(desired), state=p["state"])
        elif p["state"] == "absent" and actual is not None:
            before, after = {"state": actual["status"]}, {"state": "absent"}
        elif "start" in actions or "stop" in actions:
            before["state"] = actual["status"]
            after["state"] = "running" if "start" in actions else "stopped"
        result["diff"] = dict(before=before, after=after)

    if parse_only or module.check_mode or not actions:
        if not parse_only and not module.check_mode and data is not None:
            result["container"] = nc.redact_inspect(data)
        module.exit_json(**result)

    timeout = str(p["stop_timeout"])
    for action in actions:
        if action == "remove":
            # A clean stop first (rm has no stop timeout in nerdctl and docker), then the removal.
            if actual is not None and actual["running"]:
                cli.run(["stop", "--time", timeout, p["name"]])
            cli.run(["rm", "--force", p["name"]])
        elif action == "create":
            cli.run(create_args)
        elif action == "start":
            cli.run(["start", p["name"]])
        elif action == "stop":
            cli.run(["stop", "--time", timeout, p["name"]])
        elif action == "restart":
            cli.run(["restart", "--time", timeout, p["name"]])
    if p["state"] != "absent":
        result["container"] = nc.redact_inspect(cli.inspect(p["name"]) or {})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
