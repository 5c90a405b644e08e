"""The role's README table, its argument_specs and its defaults describe the same variables."""
import json
import pathlib
import re

import yaml

ROLE = pathlib.Path(__file__).resolve().parents[3] / "roles" / "pd_proxy"
ROW = re.compile(r"^\| `(pd_proxy_[a-z_]+)` \| [^|]+ \| `([^`]*)` \|")


def spec_options():
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"]


def readme_rows():
    rows = {}
    for line in (ROLE / "README.md").read_text().splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_readme_lists_exactly_the_specified_variables_with_their_defaults():
    options, rows = spec_options(), readme_rows()
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert list(rows) == list(options)
    for name, option in options.items():
        if "default" not in option:
            # Worked out at run time: the README shows the defaults file's expression, or "generated".
            assert rows[name] in ("generated", defaults[name]), name
            continue
        default = option["default"]
        shown = default if isinstance(default, str) else json.dumps(default)
        assert rows[name] == (shown if shown != "" else '""'), name


def test_defaults_file_sets_every_specified_variable_and_no_other():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert set(defaults) == set(spec_options())
    for name, option in spec_options().items():
        if "{{" not in str(defaults[name]):
            assert defaults[name] == option.get("default"), name


def pins(lines):
    return {line.split("==")[0].strip().lower().replace("_", "-"): line.split("==")[1].strip()
            for line in lines if "==" in line and not line.lstrip().startswith("#")}


def test_the_proxy_runs_and_is_tested_on_the_same_pins():
    """The role's venv, the control venv and ansible-test's units install the same versions."""
    role = pins(yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["pd_proxy_packages"])
    root = ROLE.parents[1]
    for requirements in (root / "requirements.txt", root / "tests" / "unit" / "requirements.txt"):
        listed = pins(requirements.read_text().splitlines())
        for name in ("aiohttp", "prometheus-client", "flit-core"):
            assert listed[name] == role[name], (requirements, name)


def test_the_role_installs_what_the_package_needs_to_build_and_run():
    pyproject = (ROLE / "files" / "erdma-pd-proxy" / "pyproject.toml").read_text()
    role = pins(yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["pd_proxy_packages"])
    backend = re.search(r'requires = \["([a-z_]+)', pyproject).group(1).replace("_", "-")
    dependencies = re.findall(r'"([a-z_]+)>=', pyproject.split("dependencies", 1)[1].split("]", 1)[0])
    for name in [backend] + [d.replace("_", "-") for d in dependencies]:
        assert name in role, f"pd_proxy_packages lacks {name}, which the package needs (pip runs with --no-index)"
