"""Fixtures of the AWX stage: the lab (lab.py up) reachable by SSH, the EE image, private data dirs.

Everything here drives podman: run it under the shared lock, e.g.
    flock /tmp/erdma-podman.lock python3 tests/run.py awx
"""
import json
import pathlib
import secrets
import shutil
import subprocess
import sys

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import ee_build  # noqa: E402  pylint: disable=wrong-import-position

LAB_INVENTORY = ROOT / "inventories" / "lab"
AWX_VARS = ROOT / "extensions" / "awx" / "vars"


def lab_nodes():
    """name -> lab_ip of the lab inventory's nodes."""
    hosts = yaml.safe_load((LAB_INVENTORY / "hosts.yml").read_text())["all"]["children"]["lab"]["hosts"]
    return {name: spec["lab_ip"] for name, spec in hosts.items()}


def podman_exec(node, script):
    return subprocess.run(["podman", "exec", node, "sh", "-euc", script], capture_output=True, text=True,
                          check=False)


def lab_is_up():
    for node in lab_nodes():
        res = subprocess.run(["podman", "container", "inspect", "--format", "{{.State.Running}}", node],
                             capture_output=True, text=True, check=False)
        if res.stdout.strip() != "true":
            return False
    return True


@pytest.fixture(scope="session")
def lab():
    """The lab that `make lab` / `lab.py up` creates: reused when it is up already (and left up), else
    brought up for this run and taken down after it (CI runs on a machine that others use next)."""
    was_up = lab_is_up()
    subprocess.run([sys.executable, str(ROOT / "lab" / "lab.py"), "up"], check=True)
    yield lab_nodes()
    if not was_up:
        subprocess.run([sys.executable, str(ROOT / "lab" / "lab.py"), "down"], check=False)


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory):
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "erdma-pd-awx-test", "-f", str(key)],
                   check=True)
    return key


@pytest.fixture(scope="session")
def lab_over_ssh(lab, ssh_key):
    """AWX logs in by SSH: each node gets sshd (at run time: the lab's image recipes stay as they are),
    bound to the node's lab address only, and this run's public key for root."""
    public = ssh_key.with_suffix(".pub").read_text().strip()
    for node, address in lab.items():
        script = f"""
if ! test -x /usr/sbin/sshd; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server >/dev/null
fi
printf 'ListenAddress {address}\\nPasswordAuthentication no\\nPermitRootLogin prohibit-password\\n' \\
  > /etc/ssh/sshd_config.d/erdma-pd-awx-test.conf
install -d -m 0700 /root/.ssh
printf '%s\\n' '{public}' > /root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
systemctl enable -q ssh
systemctl restart ssh
"""
        res = podman_exec(node, script)
        assert res.returncode == 0, f"{node}: sshd setup failed:\n{res.stdout}{res.stderr}"
    return lab


@pytest.fixture(scope="session")
def ee_image():
    return ee_build.build()


def awx_vars(name):
    return yaml.safe_load((AWX_VARS / name).read_text())


def report_vars(tree):
    """The report locations every AWX job template sets (extensions/awx/vars/templates.yml)."""
    base = tree["erdma_pd_awx_report_dir"]
    return {"rdma_verify_report_dir": f"{base}/verify", "pd_bench_results_dir": f"{base}/bench"}


@pytest.fixture(scope="session")
def api_key():
    """The engines' and proxy's API key, as the job templates' "erdma-pd API key" credential holds it."""
    return secrets.token_hex(24)


@pytest.fixture(scope="session")
def private_data_dir(tmp_path_factory, ssh_key, api_key):
    """A runner private data dir laid out as AWX writes one: inventory, env/extravars, env/envvars,
    env/ssh_key. The inventory is the lab's, with the lab target's AWX group variables (SSH)."""
    def make(extravars=None):
        pdd = tmp_path_factory.mktemp("pdd")
        shutil.copytree(LAB_INVENTORY, pdd / "inventory")
        # The target's AWX-only group variables (SSH) as group_vars files: the lab inventory's
        # group_vars/all/connection.yml (podman connection) ranks above any group variable of an
        # inventory file, and below group_vars/<group> files (VARIABLE_PRECEDENCE: groups_inventory <
        # all_plugins_inventory < groups_plugins_inventory).
        for group, values in awx_vars("lab.yml")["erdma_pd_awx_group_vars"].items():
            group_dir = pdd / "inventory" / "group_vars" / group
            group_dir.mkdir(parents=True, exist_ok=True)
            (group_dir / "awx.yml").write_text(yaml.safe_dump(values))
        env = pdd / "env"
        env.mkdir()
        # AWX puts the credential's extra_vars (pd_api_key) among the job's extra variables.
        (env / "extravars").write_text(json.dumps(dict(report_vars(awx_vars("templates.yml")), pd_api_key=api_key,
                                                       **(extravars or {}))))
        # As AWX sets them for every job.
        (env / "envvars").write_text(json.dumps({"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_FORCE_COLOR": "0",
                                                 "ANSIBLE_PIPELINING": "True",
                                                 "ANSIBLE_RETRY_FILES_ENABLED": "False"}))
        (env / "ssh_key").write_text(ssh_key.read_text())
        return pdd
    return make
