"""Release hygiene: the version in galaxy.yml, the changelog and the execution environment agree.

antsibull-changelog's own lint and the freshness of CHANGELOG.md are checked by tests/galaxy_smoke.sh
(it needs the tool); these checks need only the files.
"""
import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load(*parts):
    return yaml.safe_load((ROOT.joinpath(*parts)).read_text())


def version_key(version):
    return tuple(int(part) for part in re.findall(r"\d+", version))


def galaxy_version():
    return load("galaxy.yml")["version"]


def test_galaxy_version_is_the_latest_release_in_the_changelog():
    releases = load("changelogs", "changelog.yaml")["releases"]
    latest = max(releases, key=version_key)
    assert galaxy_version() == latest, (
        f"galaxy.yml says {galaxy_version()} but changelogs/changelog.yaml's latest release is {latest}: "
        "run `antsibull-changelog release --version VERSION` when bumping the version")


def test_generated_changelog_has_a_section_for_the_version():
    escaped = galaxy_version().replace(".", r"\.")
    assert f"## v{escaped}" in (ROOT / "CHANGELOG.md").read_text()


def test_unreleased_fragments_use_only_configured_sections():
    config = load("changelogs", "config.yaml")
    known = {section for section, _title in config["sections"]}
    known |= {config["prelude_section_name"], config["trivial_section_name"]}
    for fragment in sorted((ROOT / "changelogs" / "fragments").glob("*.y*ml")):
        sections = set(yaml.safe_load(fragment.read_text()) or {})
        assert sections <= known, f"{fragment.name}: unknown sections {sorted(sections - known)}"


def test_execution_environment_installs_this_version():
    wanted = f"erdma-pd-{galaxy_version()}.tar.gz"
    sources = [c.get("source", "") for c in load("ee", "requirements.yml")["collections"]]
    assert any(source.endswith(wanted) for source in sources), f"ee/requirements.yml does not install {wanted}"


def test_claimed_ansible_core_is_the_tested_one():
    """meta/runtime.yml claims no ansible-core older than the one every test runs on."""
    import importlib.metadata  # pylint: disable=import-outside-toplevel

    claim = load("meta", "runtime.yml")["requires_ansible"]
    lowest = re.fullmatch(r">=(\d+\.\d+)\.0", claim)
    assert lowest, f"meta/runtime.yml: expected '>=X.Y.0', found {claim!r}"
    tested = ".".join(importlib.metadata.version("ansible-core").split(".")[:2])
    assert lowest.group(1) == tested, f"meta/runtime.yml claims {claim} but the tests run ansible-core {tested}"
    definition = load("execution-environment.yml")
    assert definition["dependencies"]["ansible_core"]["package_pip"].startswith(f"ansible-core=={tested}.")
