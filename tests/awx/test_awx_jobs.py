"""erdma.pd run the way AWX runs it: ansible-runner, process isolation in the EE image, SSH to the lab.

One converge of erdma.pd.site, one re-run that must change nothing, then each AWX job template's
playbook with its survey defaults in --check on the converged lab (nothing would change), then the
release check: the tarball installed into an empty path runs erdma.pd.site in --check on the host.
The job events are what is asserted: which plays ran, that none failed, what changed.
"""
import json
import os
import pathlib
import subprocess
import sys

import ansible_runner
import pytest
import yaml

from conftest import ROOT, awx_vars, lab_nodes, report_vars

TEMPLATES = awx_vars("templates.yml")
LAB_TARGET = awx_vars("lab.yml")
BIN = pathlib.Path(sys.executable).parent


def stage_play_names(playbook):
    """Names of the plays a playbook of the collection runs, following import_playbook."""
    names = []
    for play in yaml.safe_load((ROOT / "playbooks" / playbook).read_text()):
        if "ansible.builtin.import_playbook" in play:
            names += stage_play_names(play["ansible.builtin.import_playbook"])
        else:
            names.append(play["name"])
    return names


def run_in_ee(private_data_dir, image, playbook, cmdline=""):
    """One job: ansible-runner starts the EE with podman on the lab network, as AWX's worker does."""
    result = ansible_runner.run(
        private_data_dir=str(private_data_dir), playbook=playbook, cmdline=cmdline or None,
        process_isolation=True, process_isolation_executable="podman", container_image=image,
        # The EE reaches the nodes by SSH on the lab network. The private data dir belongs to root
        # here (rootful podman), so the job runs as root rather than the image's uid 1000.
        container_options=["--network=erdma-lab", "--user=0"],
        quiet=True, timeout=1800)
    events = list(result.events)
    stdout = (private_data_dir / "artifacts").rglob("stdout")
    return result, events, "\n".join(p.read_text() for p in stdout)[-6000:]


def summary(events):
    stats = [e for e in events if e["event"] == "playbook_on_stats"]
    assert stats, "the job ended without a playbook_on_stats event"
    return stats[-1]["event_data"]


def plays(events):
    return [e["event_data"]["play"] for e in events if e["event"] == "playbook_on_play_start"]


def assert_job_ok(result, events, output):
    failed = [(e["event_data"].get("host"), e["event_data"].get("task")) for e in events
              if e["event"] in ("runner_on_failed", "runner_on_unreachable")
              and not e["event_data"].get("ignore_errors")]
    assert result.status == "successful" and result.rc == 0, f"job {result.status} rc={result.rc}:\n{output}"
    assert not failed, f"failed tasks: {failed}\n{output}"
    stats = summary(events)
    assert not stats["failures"] and not stats["dark"], stats


@pytest.fixture(scope="module")
def converged(lab_over_ssh, ee_image, private_data_dir):
    pdd = private_data_dir()
    return ee_image, run_in_ee(pdd, ee_image, "erdma.pd.site"), pdd


def test_site_converges_in_the_ee(converged):
    _image, (result, events, output), pdd = converged
    assert_job_ok(result, events, output)
    assert plays(events) == stage_play_names("site.yml"), "the plays that ran are not site.yml's"
    assert set(lab_nodes()) <= set(summary(events)["ok"]), "a lab node was not reached"
    # Reports went where the job keeps them, not into the (read-only) collection.
    assert (pdd / "artifacts" / "erdma-pd-reports" / "verify" / "verify.json").is_file()
    # The verify stage's summary reached the job's statistics (AWX keeps set_stats data as artefacts).
    verify_stats = summary(events).get("artifact_data", {}).get("erdma_pd_verify")
    assert verify_stats and verify_stats["report_dir"].startswith("/runner/artifacts/"), summary(events)
    assert not verify_stats["problems"], verify_stats


def test_site_rerun_changes_nothing(converged, private_data_dir):
    image, (first, _events, _output), _pdd = converged
    assert first.status == "successful", "the converge failed: nothing to re-run"
    result, events, output = run_in_ee(private_data_dir(), image, "erdma.pd.site")
    assert_job_ok(result, events, output)
    changed = {host: n for host, n in summary(events)["changed"].items() if n}
    assert not changed, f"the re-run changed something: {changed}\n{output}"


def template_extravars(stage):
    """What AWX sends for a launch with the survey's defaults: the template's extra_vars + the answers."""
    template = TEMPLATES["erdma_pd_awx_job_templates"][stage]
    answers = {}
    for key in template["questions"]:
        question = TEMPLATES["erdma_pd_awx_questions"][key]
        answers[question["variable"]] = LAB_TARGET["erdma_pd_awx_survey_defaults"].get(
            question["variable"], question["default"])
    return dict(template["extra_vars"], **report_vars(TEMPLATES), **answers)


def runnable_templates():
    stages = []
    for stage, template in TEMPLATES["erdma_pd_awx_job_templates"].items():
        if (ROOT / template["playbook"]).is_file():
            stages.append(stage)
        else:
            # Only a template defined ahead of its role may lack its playbook.
            roles = {TEMPLATES["erdma_pd_awx_questions"][q]["role"] for q in template["questions"]}
            assert roles & set(TEMPLATES["erdma_pd_awx_pending_roles"]), f"{stage}: {template['playbook']} missing"
    return stages


@pytest.mark.parametrize("stage", runnable_templates())
def test_job_template_playbook_with_survey_defaults(stage, converged, private_data_dir):
    """A launch of the template with its survey's defaults (the lab target's, vars/lab.yml) on the converged
    lab, in --check: its stage's plays run, nothing fails and nothing would change."""
    image, (first, _events, _output), _pdd = converged
    assert first.status == "successful", "the converge failed"
    playbook = "erdma.pd." + pathlib.Path(TEMPLATES["erdma_pd_awx_job_templates"][stage]["playbook"]).stem
    result, events, output = run_in_ee(private_data_dir(template_extravars(stage)), image, playbook, "--check")
    assert_job_ok(result, events, output)
    assert plays(events) == stage_play_names(pathlib.Path(playbook.split(".")[-1] + ".yml").name)
    changed = {host: n for host, n in summary(events)["changed"].items() if n}
    assert not changed, f"the {stage} job with its survey defaults would change the converged lab: {changed}\n{output}"


def test_release_tarball_runs_site_in_check_mode(converged, tmp_path, api_key):
    """The release check: the built tarball, installed into an empty path, runs erdma.pd.site on the lab."""
    image, (first, _events, _output), _pdd = converged
    assert first.status == "successful", "the converge failed"
    subprocess.run([BIN / "ansible-galaxy", "collection", "build", "--output-path", tmp_path, ROOT], check=True,
                   stdout=subprocess.DEVNULL)
    tarball = next(tmp_path.glob("erdma-pd-*.tar.gz"))
    (tmp_path / "empty.cfg").write_text("[defaults]\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(tmp_path / "empty.cfg"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "installed"))
    subprocess.run([BIN / "ansible-galaxy", "collection", "install", "--no-deps", "-p", tmp_path / "installed",
                    tarball], check=True, env=env, cwd=tmp_path)
    # The lab's key, given: without it, the check would generate one into the checkout's inventory.
    (tmp_path / "key.json").write_text(json.dumps({"pd_api_key": api_key}))
    # The lab's pipelined connection is a lab tool of the checkout (lab/connection_plugins), not part of the
    # release: it is named here, as the checkout's ansible.cfg names it, for the lab inventory's nodes.
    env["ANSIBLE_CONNECTION_PLUGINS"] = str(ROOT / "lab" / "connection_plugins")
    proc = subprocess.run([BIN / "ansible-playbook", "erdma.pd.site", "--check", "-i", ROOT / "inventories" / "lab",
                           "-e", f"@{tmp_path / 'key.json'}"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "failed=0" in proc.stdout and "unreachable=0" in proc.stdout
