"""The Prometheus scrape configuration that pd_monitoring renders from the inventory groups.

Renders the role's real template with ansible-playbook (local connection, no host touched) for an
inventory shaped like the guide's fleet and checks the jobs and targets that come out of it.
"""
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_files import ROOT  # noqa: E402  pylint: disable=wrong-import-position

INVENTORY = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    pd_monitoring_node_exporter_port: 9100
  children:
    mooncake_master: {hosts: {gpu-4090-01: }}
    proxy: {hosts: {gpu-4090-01: }}
    prefill: {hosts: {gpu-4090-01: }}
    decode: {hosts: {gpu-h20-01: , gpu-h20-02: }}
  hosts:
    gpu-4090-01:
      ansible_host: 192.0.2.10
      pd_monitoring_bind_address: 10.0.0.10
      pd_proxy_bind_address: 10.0.0.10
      pd_proxy_port: 9000
      vllm_pd_bind_address: 10.0.0.10
      vllm_pd_port: 7100
      mooncake_bind_address: 10.0.0.10
      mooncake_metrics_port: 9004
    gpu-h20-01:
      ansible_host: 192.0.2.11
      pd_monitoring_bind_address: 10.0.0.11
      vllm_pd_bind_address: 0.0.0.0
      vllm_pd_port: 7200
    gpu-h20-02:
      ansible_host: 192.0.2.12
      vllm_pd_bind_address: 10.0.0.12
      vllm_pd_port: 7200
"""

PLAYBOOK = """
- hosts: gpu-4090-01
  gather_facts: false
  vars:
    pd_monitoring_bind_address: 10.0.0.10
    pd_monitoring_prometheus_port: 9090
    pd_monitoring_node_exporter_groups: {exporter_groups}
    pd_monitoring_node_exporter_port: 9100
    pd_monitoring_scrape_interval: 15s
  tasks:
    - ansible.builtin.template:
        src: {template}
        dest: {out}
        mode: "0644"
"""


def ansible_utils_installed():
    done = subprocess.run([sys.executable, "-c", "import ansible_collections.ansible.utils"],
                          capture_output=True, check=False)
    return done.returncode == 0


def render(tmp_path, exporter_groups="[prefill, decode]"):
    if not ansible_utils_installed():
        # ansible-test units runs with ansible-core alone; the units stage (the ansible package) runs this.
        pytest.skip("the template's filters need the ansible.utils collection (the ansible package)")
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    out = tmp_path / "prometheus.yml"
    template = ROOT / "roles" / "pd_monitoring" / "templates" / "prometheus.yml.j2"
    (tmp_path / "render.yml").write_text(PLAYBOOK.format(template=template, out=out, exporter_groups=exporter_groups))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))
    # The venv's ansible-playbook; under ansible-test units, the same CLI through the interpreter.
    script = pathlib.Path(sys.executable).parent / "ansible-playbook"
    playbook = [str(script)] if script.exists() else [sys.executable, "-m", "ansible.cli.playbook"]
    done = subprocess.run(playbook + ["-i", str(tmp_path / "hosts.yml"), str(tmp_path / "render.yml")],
                          capture_output=True, text=True, env=env, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out.read_text()


def test_scrape_configuration_follows_the_inventory_groups(tmp_path):
    text = render(tmp_path)
    assert text.startswith("#") and "Ansible managed" in text
    config = yaml.safe_load(text)
    assert config["global"]["scrape_interval"] == "15s"
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    assert sorted(jobs) == ["mooncake_master", "node", "pd_proxy", "prometheus", "vllm"]
    assert jobs["prometheus"] == [{"targets": ["10.0.0.10:9090"]}]
    assert jobs["pd_proxy"] == [{"targets": ["10.0.0.10:9000"]}]
    assert jobs["mooncake_master"] == [{"targets": ["10.0.0.10:9004"]}]
    # An engine bound to every interface is scraped on the address Ansible reaches it by.
    assert jobs["vllm"] == [
        {"targets": ["10.0.0.10:7100"], "labels": {"role": "prefill", "host": "gpu-4090-01"}},
        {"targets": ["192.0.2.11:7200"], "labels": {"role": "decode", "host": "gpu-h20-01"}},
        {"targets": ["10.0.0.12:7200"], "labels": {"role": "decode", "host": "gpu-h20-02"}},
    ]
    # One node exporter per engine host, each host once; without its own address, the one Ansible uses.
    assert jobs["node"] == [
        {"targets": ["10.0.0.10:9100"], "labels": {"host": "gpu-4090-01"}},
        {"targets": ["10.0.0.11:9100"], "labels": {"host": "gpu-h20-01"}},
        {"targets": ["192.0.2.12:9100"], "labels": {"host": "gpu-h20-02"}},
    ]


def test_node_exporter_targets_do_not_depend_on_the_order_of_the_groups(tmp_path):
    """The same hosts in another group order (as a group made by group_by lists them in the order they
    finished) give the same file: otherwise a run that changed nothing would restart Prometheus."""
    first = render(tmp_path)
    (tmp_path / "prometheus.yml").unlink()
    assert render(tmp_path, exporter_groups="[decode, prefill]").replace("decode, prefill", "prefill, decode") == first
