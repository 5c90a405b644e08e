"""containers.podman.podman with pipelining: one `podman exec -i` per module instead of three podman calls.

The lab reaches its nodes through podman, not SSH. The stock plugin cannot pipeline (it runs
`podman exec` without -i, so the module sent on stdin never arrives) and mounts the container
at every task, so each task costs `podman mount` + `podman exec mkdir` + `podman exec python`:
about 2 s a task on a busy 2-core machine. Here the module goes through the stdin of one
`podman exec -i`, as SSH pipelining does on real hosts (ansible.cfg: pipelining = True), and the
container is mounted only when a file is copied. Lab only: real hosts use SSH.
"""
import shlex

from ansible.module_utils.common.text.converters import to_native
from ansible_collections.containers.podman.plugins.connection.podman import (  # pylint: disable=import-error
    Connection as PodmanConnection,
)

DOCUMENTATION = """
    name: podman_pipelined
    short_description: Run modules in an existing podman container, pipelined
    description:
        - containers.podman.podman with pipelining (C(podman exec -i)); the lab's nodes are reached with it.
    options:
      remote_addr:
        description: The name or ID of the container.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description: User (name or UID) that runs commands inside the container.
        ini:
          - section: defaults
            key: remote_user
        env:
          - name: ANSIBLE_REMOTE_USER
        vars:
          - name: ansible_user
      podman_extra_args:
        description: Extra arguments to pass to the podman command line.
        default: ''
        vars:
          - name: ansible_podman_extra_args
      pipelining:
        description: Send each module on the stdin of one C(podman exec -i) (the point of this plugin).
        type: boolean
        default: true
        env:
          - name: ANSIBLE_PIPELINING
        vars:
          - name: ansible_pipelining
      podman_executable:
        description: Executable for podman command.
        default: podman
        vars:
          - name: ansible_podman_executable
"""


class Connection(PodmanConnection):
    """podman exec -i, so that Ansible pipelines modules; the container is mounted on the first copy."""

    transport = "podman_pipelined"
    has_pipelining = True

    def _connect(self):
        # No `podman mount` here: a pipelined module needs no file in the container.
        self._connected = True

    def _ensure_mounted(self):
        if self._mount_point is None:
            super()._connect()

    def exec_command(self, cmd, in_data=None, sudoable=False):
        """podman exec -i [--user U] ID cmd...: stdin stays open for a pipelined module."""
        if not self._connected:
            self._connect()
        args = ["exec", "-i"] + (["--user", self.user] if self.user else [])
        return self._podman(args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)

    def put_file(self, in_path, out_path):
        self._ensure_mounted()
        return super().put_file(in_path, out_path)

    def fetch_file(self, in_path, out_path):
        self._ensure_mounted()
        return super().fetch_file(in_path, out_path)
