"""lab/connection_plugins/podman_pipelined.py through real ansible commands, podman replaced by a STAND-IN.

The stand-in podman (written below) logs its arguments and runs `exec` commands on this machine
with their stdin, and answers `mount` with a directory. It shows what the plugin asks of podman:
one `podman exec -i` per module (the module arrives on stdin: pipelining), no `podman mount`
unless a file is copied. The lab's site.yml runs show the same against real podman.
"""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]

STANDIN_PODMAN = """#!/bin/sh
# STAND-IN for podman: log the call, then `exec [-i] NAME CMD...` runs CMD here; `mount NAME` answers
# "/": the "container" is this machine, so files put through the mount land where the module looks.
echo "$*" >> "{log}"
case "$1" in
  mount) echo / ;;
  exec) shift; [ "$1" = "-i" ] && shift; shift; exec "$@" ;;
  *) exit 125 ;;
esac
"""


def run_module(tmp_path, module, args):
    log = tmp_path / "podman.log"
    podman = tmp_path / "podman"
    podman.write_text(STANDIN_PODMAN.format(log=log))
    podman.chmod(0o755)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_REMOTE_TMP=str(tmp_path / "remote-tmp"))
    result = subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "ansible"), "node", "-i", "node,", "-m", module, "-a", args,
         "-e", json.dumps({"ansible_connection": "podman_pipelined", "ansible_podman_executable": str(podman),
                           "ansible_python_interpreter": sys.executable})],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False)
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def test_a_module_is_one_podman_exec_with_stdin(tmp_path):
    result, calls = run_module(tmp_path, "ansible.builtin.command", "echo hello")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hello" in result.stdout
    assert len(calls) == 1, calls
    assert calls[0].startswith("exec -i node /bin/sh -c"), calls
    assert not any(call.startswith("mount") for call in calls)


def test_a_copied_file_goes_through_the_mounted_container(tmp_path):
    dest = tmp_path / "copied"
    result, calls = run_module(tmp_path, "ansible.builtin.copy", "content=x dest=%s mode=0600" % dest)
    assert result.returncode == 0, result.stdout + result.stderr
    assert dest.read_text() == "x"
    assert [call.split()[0] for call in calls].count("mount") == 1, calls
    assert all(call.startswith(("exec -i node ", "mount node")) for call in calls), calls
