"""The AWX job templates (extensions/awx) against the roles they run.

Every survey question sets a role variable: its AWX type, choices and default must say what the role's
meta/argument_specs.yml says, so the two cannot drift. The surveys and the workflow are rendered by
Ansible itself (the same templating the controller playbook uses), for every target file.
The controller playbook's syntax check needs awx.awx: tests/galaxy_smoke.sh runs it in the control venv.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
AWX = ROOT / "extensions" / "awx"
TEMPLATES = yaml.safe_load((AWX / "vars" / "templates.yml").read_text())
QUESTIONS = TEMPLATES["erdma_pd_awx_questions"]
PENDING = set(TEMPLATES["erdma_pd_awx_pending_roles"])
TARGETS = sorted(p.name for p in (AWX / "vars").glob("*.yml") if p.name != "templates.yml")
# AWX survey type -> the argument_specs types it can carry.
AWX_TYPES = {"text": {"str", "path"}, "textarea": {"str"}, "integer": {"int"}, "float": {"float"},
             "multiplechoice": {"str"}}


def role_option(question):
    specs = ROOT / "roles" / question["role"] / "meta" / "argument_specs.yml"
    options = yaml.safe_load(specs.read_text())["argument_specs"]["main"]["options"]
    name = question.get("sets", question["variable"])
    assert name in options, f"{question['role']} has no option {name}"
    return options[name]


def checked_questions():
    return [key for key, q in QUESTIONS.items() if q["role"] not in PENDING]


def ansible_bin(name):
    local = pathlib.Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def plain_config():
    """An ansible.cfg without the checkout's callbacks, whose output would wrap the JSON."""
    path = pathlib.Path(tempfile.gettempdir()) / "erdma-pd-awx-test.cfg"
    path.write_text("[defaults]\n")
    return str(path)


def render(variable, target=None):
    """The value of one variable of vars/templates.yml (+ a target file), templated by Ansible."""
    cmd = [ansible_bin("ansible"), "localhost", "-c", "local", "-m", "ansible.builtin.debug",
           "-a", f"var={variable}", "-e", f"@{AWX / 'vars' / 'templates.yml'}"]
    if target:
        cmd += ["-e", f"@{AWX / 'vars' / target}"]
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_CONFIG=plain_config())
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result[variable]


@pytest.fixture(scope="module", params=[None] + TARGETS)
def survey(request):
    return render("erdma_pd_awx_survey", request.param)


def test_pending_roles_are_really_missing():
    """A role that landed must leave the pending list, so that its questions get checked."""
    for role in PENDING:
        assert not (ROOT / "roles" / role).exists(), (
            f"roles/{role} exists now: remove it from erdma_pd_awx_pending_roles in extensions/awx/vars/templates.yml")
    assert checked_questions(), "no survey question is checked against a role"


@pytest.mark.parametrize("key", checked_questions())
def test_question_type_choices_and_default_match_the_argument_spec(key):
    question = QUESTIONS[key]
    option = role_option(question)
    if option.get("type") == "bool":
        assert question["type"] == "multiplechoice" and question["choices"] == ["false", "true"]
        assert question["default"] == str(option.get("default", False)).lower()
        return
    assert option.get("type", "str") in AWX_TYPES[question["type"]], (key, option.get("type"), question["type"])
    assert question.get("choices") == option.get("choices"), f"{key}: choices differ from the argument spec"
    assert question["default"] == option.get("default"), f"{key}: default differs from the argument spec"


def test_every_rendered_default_is_valid_for_its_question(survey):
    assert set(survey) == set(QUESTIONS)
    for key, question in survey.items():
        default = question["default"]
        assert question["required"] is False and "role" not in question and "sets" not in question
        if question["type"] == "multiplechoice":
            assert default in question["choices"], (key, default)
        elif question["type"] == "integer":
            assert isinstance(default, int) and question["min"] <= default <= question["max"], (key, default)
        else:
            assert isinstance(default, str) and question["min"] <= len(default) <= question["max"], (key, default)


def test_target_defaults_name_only_survey_variables():
    variables = {q["variable"] for q in QUESTIONS.values()}
    for target in TARGETS:
        overrides = yaml.safe_load((AWX / "vars" / target).read_text()).get("erdma_pd_awx_survey_defaults", {})
        assert set(overrides) <= variables, f"{target}: {sorted(set(overrides) - variables)} is no survey variable"


def test_every_template_runs_a_playbook_of_the_collection_and_asks_known_questions():
    for stage, template in TEMPLATES["erdma_pd_awx_job_templates"].items():
        roles = {QUESTIONS[q]["role"] for q in template["questions"]}
        if not roles & PENDING:
            assert (ROOT / template["playbook"]).is_file(), f"{stage}: {template['playbook']} does not exist"
        for key in template["questions"]:
            question = QUESTIONS[key]
            if "sets" in question:
                # The answer is a string: the template's extra_vars turn it into the role's variable.
                assert question["variable"] in template["extra_vars"][question["sets"]]
    used = {q for t in TEMPLATES["erdma_pd_awx_job_templates"].values() for q in t["questions"]}
    assert used == set(QUESTIONS), f"questions no template asks: {sorted(set(QUESTIONS) - used)}"


def test_reboot_answer_becomes_the_roles_boolean():
    template = TEMPLATES["erdma_pd_awx_job_templates"]["driver"]
    expression = template["extra_vars"]["erdma_driver_reboot_allowed"]
    for answer, expected in (("false", False), ("true", True)):
        proc = subprocess.run(
            [ansible_bin("ansible"), "localhost", "-c", "local", "-m", "ansible.builtin.assert",
             "-a", f"that=\"{expression[3:-3]} is {'true' if expected else 'false'}\"",
             "-e", f"erdma_pd_survey_reboot_allowed={answer}"],
            capture_output=True, text=True, check=False, env=dict(os.environ, ANSIBLE_CONFIG=plain_config()))
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_asks_for_approval_before_the_driver_and_chains_every_stage():
    nodes = render("erdma_pd_awx_workflow_nodes", TARGETS[0] if TARGETS else None)
    by_id = {node["identifier"]: node for node in nodes}
    approval = [n for n in nodes if n["unified_job_template"]["type"] == "workflow_approval"]
    assert len(approval) == 1
    assert [n["identifier"] for n in approval[0]["related"]["success_nodes"]] == ["driver"]
    # Nothing but the approval leads to the driver stage (the one that may reboot).
    leads_to_driver = [n["identifier"] for n in nodes
                       if "driver" in [s["identifier"] for s in n["related"]["success_nodes"]]]
    assert leads_to_driver == [approval[0]["identifier"]]
    chain, node = [], by_id["driver"]
    while True:
        chain.append(node["identifier"])
        following = node["related"]["success_nodes"]
        if not following:
            break
        node = by_id[following[0]["identifier"]]
    assert chain == TEMPLATES["erdma_pd_awx_workflow_stages"]
    assert set(chain) == set(TEMPLATES["erdma_pd_awx_job_templates"])
