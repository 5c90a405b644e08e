# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vllm_pd role's documentation and defaults agree with its argument spec; the lab image agrees
with the lab inventory.

    python3 tests/unit/plugins/module_utils/test_vllm_pd_docs.py --write   regenerates the README table
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
ROLE = os.path.join(ROOT, "roles", "vllm_pd")
BEGIN = re.compile(r"(<!-- BEGIN VARIABLES[^>]*-->\n)(.*?)(\n<!-- END VARIABLES -->)", re.S)


def load(*parts):
    with open(os.path.join(*parts)) as handle:
        return yaml.safe_load(handle)


def options():
    return load(ROLE, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(option):
    if "default" not in option:
        return ""
    text = yaml.safe_dump(option["default"], default_flow_style=True, width=1000).strip()
    if text.endswith("..."):
        text = text[:-3].strip()
    return "`%s`" % text


def render_table(opts):
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, option in opts.items():
        kind = option["type"] + ("/" + option["elements"] if "elements" in option else "")
        if "choices" in option:
            kind += " (" + ", ".join(option["choices"]) + ")"
        text = re.sub(r"[CIOMV]\(([^)]*)\)", r"`\1`", " ".join(option["description"]))
        rows.append("| `%s` | %s | %s | %s |" % (name, kind, _cell(_default(option)), _cell(text)))
    return "\n".join(rows)


def readme_path():
    return os.path.join(ROLE, "README.md")


def test_readme_table_is_generated_from_the_argument_spec():
    with open(readme_path()) as handle:
        match = BEGIN.search(handle.read())
    assert match, "README.md lacks the BEGIN/END VARIABLES markers"
    assert match.group(2) == render_table(options()), (
        "roles/vllm_pd/README.md is out of date: run python3 tests/unit/plugins/module_utils/test_vllm_pd_docs.py --write")


def test_every_default_is_specified_and_every_option_has_a_default():
    defaults = load(ROLE, "defaults", "main.yml")
    opts = options()
    assert sorted(defaults) == sorted(opts)
    for name, option in opts.items():
        assert name.startswith("vllm_pd_")
        assert option.get("description"), name
        if "default" in option:
            assert defaults[name] == option["default"], name


def test_every_variable_the_tasks_use_is_specified():
    used = set()
    for folder in ("tasks", "templates", "vars"):
        for name in os.listdir(os.path.join(ROLE, folder)):
            with open(os.path.join(ROLE, folder, name)) as handle:
                used.update(re.findall(r"\bvllm_pd_[a-z0-9_]+", handle.read()))
    # The published fact, the probe script, the filters and the tags are no variables.
    published = {"vllm_pd_engine_url", "vllm_pd_probe", "vllm_pd_consistency", "vllm_pd_connector_config",
                 "vllm_pd_engine_args", "vllm_pd_missing_pins",
                 "vllm_pd_container_rdma_devices", "vllm_pd_mooncake_transport", "vllm_pd_rdma_device_problems",
                 "vllm_pd_devinfo", "vllm_pd_empty_device_entries", "vllm_pd_uverbs_devices", "vllm_pd_pinned_image",
                 "vllm_pd_gpg_fingerprints", "vllm_pd_fingerprint"}
    published.update("vllm_pd_" + phase for phase in ("preflight", "install", "configure", "run", "verify"))
    assert sorted(used - set(options()) - published) == []


def test_lab_pins_equal_the_lab_image_requirements():
    lab = load(ROOT, "inventories", "lab", "group_vars", "all", "vllm_pd.yml")
    with open(os.path.join(ROOT, "lab", "images", "vllm", "requirements.txt")) as handle:
        image = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    assert lab["vllm_pd_pip_packages"] == image


def test_lab_and_guide_inventories_use_only_specified_variables():
    opts = set(options())
    for inventory in ("lab", "pd"):
        data = load(ROOT, "inventories", inventory, "group_vars", "all", "vllm_pd.yml")
        assert sorted(set(data) - opts) == [], inventory
    for host in ("gpu-4090-01", "gpu-h20-01"):
        data = load(ROOT, "inventories", "pd", "host_vars", host + ".yml")
        assert sorted(k for k in data if k.startswith("vllm_pd_") and k not in opts) == [], host


if __name__ == "__main__" and "--write" in sys.argv:
    with open(readme_path()) as handle:
        text = handle.read()
    text = BEGIN.sub(lambda m: m.group(1) + render_table(options()) + m.group(3), text)
    with open(readme_path(), "w") as handle:
        handle.write(text)
    print("wrote %s" % readme_path())
