# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nerdctl_container as Ansible runs it: no environment value in any part of the result.

The container CLI is replaced by recorded answers (nerdctl cannot run here; molecule/nerdctl_container
runs the module against real podman)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible.module_utils import basic
from ansible_collections.erdma.pd.plugins.modules import nerdctl_container as module

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "nerdctl_container")
SECRET = "sk-erdma-test-5f0c2a"
FILE_SECRET = "file-secret-9d41be"


def recorded(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


@pytest.fixture
def env_file(tmp_path):
    path = tmp_path / "engine.env"
    path.write_text("VLLM_API_KEY=%s\n" % FILE_SECRET)
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def fake_cli(monkeypatch):
    """A stand-in for the podman CLI: `inspect` answers from a recording that carries the values."""
    calls = []
    inspected = json.loads(recorded("podman_engine_created.json"))
    inspected[0]["Config"]["Env"] += ["VLLM_API_KEY=" + SECRET, "FROM_FILE=" + FILE_SECRET]

    def run_command(self, args, **kwargs):
        calls.append(args)
        if args[1:3] == ["container", "inspect"]:
            return (0, json.dumps(inspected), "") if len(calls) > 1 else (125, "[]", "no such container")
        return 0, "", ""

    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, required=False: "/usr/bin/podman")
    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    return calls


def args(env_file, **overrides):
    base = dict(name="engine", executable="podman", image="localhost/erdma-lab-debian12", command=["serve"],
                env={"VLLM_API_KEY": SECRET, "PYTHONHASHSEED": "0"}, env_file=[env_file], stop_timeout=5,
                _ansible_diff=True)
    base.update(overrides)
    return base


def test_created_container_result_holds_no_environment_value(run_module, fake_cli, env_file):
    result = run_module(module, args(env_file))
    assert not result.failed, result.result
    text = json.dumps(result.result)
    assert SECRET not in text and FILE_SECRET not in text
    assert "VLLM_API_KEY=(value hidden)" in result.result["command"]
    assert "--env-file" in result.result["command"]
    hidden = "(value hidden)"
    assert result.result["diff"]["after"]["env"] == {"PYTHONHASHSEED": hidden, "VLLM_API_KEY": hidden}
    assert "VLLM_API_KEY=(value hidden)" in result.result["container"]["Config"]["Env"]
    # The real command line did carry the value to the CLI.
    assert "VLLM_API_KEY=" + SECRET in fake_cli[1]
    # The short value "0" is not masked, so the hash and the inspect object stay readable.
    assert "*" not in result.result["config_hash"]


def test_check_mode_result_holds_no_environment_value(run_module, fake_cli, env_file):
    result = run_module(module, args(env_file), check_mode=True)
    assert SECRET not in json.dumps(result.result) and result.result["changed"]


def test_env_is_no_log_in_the_argument_spec():
    assert module.argument_spec()["env"]["no_log"] is True


def test_a_negative_stop_timeout_fails_before_any_command(run_module, fake_cli, env_file):
    result = run_module(module, args(env_file, stop_timeout=-5))
    assert result.failed and "stop_timeout must be 0 or more" in result.result["msg"]
    assert fake_cli == []


def test_unexpected_inspect_json_fails_cleanly(run_module, env_file):
    result = run_module(module, args(env_file, inspect_output='"just a string"'))
    assert result.failed and "not a container object" in result.result["msg"]


def test_a_missing_env_file_is_a_change_in_check_mode_and_an_error_otherwise(run_module, fake_cli, tmp_path):
    missing = str(tmp_path / "later.env")
    assert run_module(module, args(missing), check_mode=True).result["changed"]
    failed = run_module(module, args(missing))
    assert failed.failed and "cannot be read" in failed.result["msg"]
