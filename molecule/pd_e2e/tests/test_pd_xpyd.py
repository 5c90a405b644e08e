"""xPyD on the lab: one prefill and two decodes, the second decode on the container runtime for real.

The second decode engine host (E2E_PREFIX-decode2) runs roles/vllm_pd's container tasks through the
erdma.pd.nerdctl_container module with podman as the executable: a real vLLM CPU engine in a container,
doing PD with the venv prefill engine through the Mooncake store (its KV loads and the proxy's balance are
proven in test_pd_e2e.py; one decode taken away, then both, in test_pd_faults.py). These tests prove the
container itself, the P/D guard over all three engines, and (from the side effect's summaries) the rolling
change that restarted the decodes one host at a time under load.
"""
import json
import os
import pathlib
import re
import subprocess
import sys

from fault_kit import CONTAINER_ENGINE, on_node
from lab_names import DECODE, DECODE2, MASTER, PREFILL

ROOT = pathlib.Path(__file__).resolve().parents[3]
EPHEMERAL = pathlib.Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"))

testinfra_hosts = [f"podman://{MASTER}"]


def test_the_second_decode_runs_as_a_container_that_the_role_made_with_podman():
    inspect = json.loads(on_node(DECODE2, f"podman container inspect {CONTAINER_ENGINE}"))[0]
    assert inspect["State"]["Running"], inspect["State"]
    # The role's image pin (by digest), its labels, and the settings it gives every engine container.
    assert inspect["ImageName"].startswith("localhost/erdma-lab-vllm@sha256:"), inspect["ImageName"]
    labels = inspect["Config"]["Labels"]
    assert labels["io.erdma-pd.role"] == "vllm_pd" and labels["io.erdma-pd.vllm-pd.stage"] == "decode"
    assert "io.erdma-pd.config-hash" in labels
    host_config = inspect["HostConfig"]
    assert host_config["NetworkMode"] == "host" and not host_config["Privileged"]
    assert "CAP_IPC_LOCK" in host_config["CapAdd"]
    # The ulimits of group_vars/podman_engines.yml (this machine's caps; the role's default on a real host).
    assert {(u["Name"], u["Soft"], u["Hard"]) for u in host_config["Ulimits"]} >= {
        ("RLIMIT_NOFILE", 20000, 20000), ("RLIMIT_NPROC", 20000, 20000),
        ("RLIMIT_STACK", 67108864, 67108864)}, host_config["Ulimits"]
    args = inspect["Config"]["Cmd"] or inspect["Args"]
    assert "--kv-transfer-config" in args and "kv_consumer" in " ".join(args)
    # The API key came through the root-only --env-file, never the command line.
    key_file = on_node(DECODE2, "stat -c '%a %U' /etc/erdma-pd/vllm-pd-decode.env").split()
    assert key_file == ["600", "root"]
    assert "VLLM_API_KEY" not in " ".join(args)
    # A container host without systemd: the engine is the container, not a unit.
    assert on_node(DECODE2, "cat /proc/1/comm") != "systemd"
    # It listens on the node's own lab address, as Mooncake announces it (host network).
    listening = on_node(DECODE2, "cat /proc/net/tcp")
    assert f":{7200:04X} " in listening


def test_the_guard_compared_all_three_engines_including_the_image_versions():
    log = (EPHEMERAL / "ansible.log").read_text()
    assert re.search(r"3 engines agree on model, parallelism", log), "the guard did not compare three engines"
    # Negative: decode2's image read with a Python that has no vLLM -> refused before any change.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
               ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_LOG_PATH="/dev/null")
    run = subprocess.run([str(pathlib.Path(sys.executable).parent / "ansible-playbook"),
                          f"--inventory={EPHEMERAL / 'inventory'}", "--check", "--tags", "vllm_pd_preflight",
                          "-e", "vllm_pd_container_python=/usr/bin/python3",
                          str(ROOT / "molecule/pd_e2e/rolling_run.yml")],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert run.returncode != 0, run.stdout[-2000:]
    # Failed results go to stderr where the config says so (display_failed_stderr): read both.
    output = run.stdout + run.stderr
    assert re.search(rf"/usr/bin/python3 in localhost/erdma-lab-vllm@sha256:[0-9a-f]+ on {DECODE2} has no vLLM",
                     output), output[-3000:]
    assert re.search(rf"{DECODE}\s*:.*changed=0", run.stdout) and "RUNNING HANDLER" not in run.stdout


def test_the_rolling_change_restarted_the_decodes_one_at_a_time_and_no_request_failed():
    """Summaries of the side effect's rolling run (rolling_restart.yml: -e vllm_pd_serial=1, under load)."""
    directory = EPHEMERAL / "rolling"
    load = json.loads((directory / "load.json").read_text())
    run_log = (directory / "run.log").read_text()
    print(f"rolling run: {load['requests']} requests in {load['seconds']}s, {len(load['failures'])} failed, "
          f"fewest healthy decodes {load['fewest_healthy_decodes']}, decode split {load['decode_split']}")
    assert load["failures"] == [] and load["requests"] >= 10
    assert load["fewest_healthy_decodes"] == 1, "the decodes were never down one at a time, or both were down"
    # One batch per engine host; each decode changed and restarted in a batch of its own, the prefill
    # (whose settings did not change) in none.
    chunks = run_log.split("PLAY [Run the prefill and decode engines]")[1:]
    assert len(chunks) == 3, run_log[-3000:]
    batches = [set(re.findall(r"^(?:ok|changed|skipping): \[([^\]\s]+)", chunk, re.M)) - {MASTER}
               for chunk in chunks]
    assert sorted(map(sorted, batches)) == sorted([[PREFILL], [DECODE], [DECODE2]]), batches
    for (host,), chunk in zip(map(sorted, batches), chunks):
        # The venv engine restarts through its handler (its unit changed); the container engine is recreated
        # by the run task (its arguments changed). Either is a change of that host in its batch.
        changed = re.search(rf"^changed: \[{host}\]", chunk, re.M) is not None
        assert changed == (host != PREFILL), f"{host}: changed={changed}"
        assert ("RUNNING HANDLER [erdma.pd.vllm_pd : Restart the vLLM engine" in chunk) == (host == DECODE)
    assert len(load["decode_split"]) == 2 and all(n > 0 for n in load["decode_split"].values())
