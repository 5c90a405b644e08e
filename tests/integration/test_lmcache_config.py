# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The LMCache YAML that roles/vllm_pd writes, read by LMCache 0.3.9's own loader.

The role renders the files (tests/integration/render_vllm_pd_configs.yml runs its preflight and its
template for every engine of inventories/pd: the guide's 4090 + H20 pair); LMCache's
`LMCacheEngineConfig.from_file` loads them in a venv made by tests/lmcache_venv.sh. LMCache only
*warns* about a key it does not know ("Unknown configuration key"); here that warning is a failure.

    .venv/bin/pytest -q tests/integration/test_lmcache_config.py      (~1 min the first time: the venv)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GUIDE_MASTER = "192.0.2.10"


@pytest.fixture(scope="module")
def lmcache_python():
    proc = subprocess.run(["bash", os.path.join(ROOT, "tests", "lmcache_venv.sh")], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, "tests/lmcache_venv.sh failed:\n%s" % proc.stderr[-3000:]
    return os.path.join(proc.stdout.strip().splitlines()[-1], "bin", "python")


def render(tmp_path, *extra):
    """Render every engine's connector file of inventories/pd with the role; returns {host: path}."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    cmd = [playbook if os.path.exists(playbook) else "ansible-playbook",
           os.path.join(HERE, "render_vllm_pd_configs.yml"), "-i", os.path.join(ROOT, "inventories", "pd"),
           "-e", "render_dir=%s" % tmp_path] + list(extra)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return dict((name.rsplit(".", 1)[0], str(tmp_path / name)) for name in sorted(os.listdir(str(tmp_path))))


def load_with_lmcache(python, paths):
    proc = subprocess.run([python, os.path.join(HERE, "lmcache_check.py")] + list(paths), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    # A warning LMCache prints on a handler we could not attach to still reaches stderr.
    for item in loaded:
        item["stderr_unknown"] = "Unknown configuration key" in proc.stderr
    return dict((os.path.basename(item["file"]).rsplit(".", 1)[0], item) for item in loaded)


def unknown_keys(item):
    found = [w for w in item["warnings"] if "Unknown configuration key" in w]
    if item["stderr_unknown"] and not found:
        found.append("Unknown configuration key (seen on stderr)")
    return found


def test_guide_configs_load_without_unknown_keys(lmcache_python, tmp_path):
    files = render(tmp_path)
    assert sorted(files) == ["gpu-4090-01", "gpu-h20-01"]
    loaded = load_with_lmcache(lmcache_python, files.values())
    for host, item in loaded.items():
        assert unknown_keys(item) == [], "%s: LMCache does not know %s" % (host, unknown_keys(item))
        assert item["chunk_size"] == 256
        assert item["remote_url"] == "mooncakestore://%s:50052/" % GUIDE_MASTER
        assert item["remote_serde"] == "naive" and item["local_cpu"] is False
        extra = item["extra_config"]
        assert extra["metadata_server"] == "http://%s:8080/metadata" % GUIDE_MASTER
        assert extra["master_server_address"] == "%s:50052" % GUIDE_MASTER
        assert extra["protocol"] == "rdma" and extra["device_name"] == "erdma_0"
        assert extra["global_segment_size"] == 524288000 and extra["transfer_timeout"] == 1
    assert loaded["gpu-4090-01"]["extra_config"]["local_hostname"] == "192.0.2.10"
    assert loaded["gpu-h20-01"]["extra_config"]["local_hostname"] == "192.0.2.20"


def test_a_misspelled_key_is_caught(lmcache_python, tmp_path):
    files = render(tmp_path, "-e", json.dumps({"vllm_pd_lmcache_options": {"chunk_sise": 128}}))
    loaded = load_with_lmcache(lmcache_python, [files["gpu-h20-01"]])
    found = unknown_keys(loaded["gpu-h20-01"])
    assert found and "chunk_sise" in found[0]
