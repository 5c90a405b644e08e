# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plays that change hosts ask for root themselves (`become: true`).

The pd inventory logs in as root, which hid a missing `become`: with `ansible_user: ubuntu` (the
cloud images' user) apt, modprobe and systemd would fail with permission errors half-way through.
"""

import pathlib

import pytest
import yaml

PLAYBOOKS = pathlib.Path(__file__).resolve().parents[3] / "playbooks"
# Playbooks whose plays install packages, write system files or manage services on the hosts.
CHANGING = ["driver.yml", "mooncake.yml", "proxy.yml", "vllm_pd.yml", "monitoring.yml", "bench.yml"]


def plays(name):
    return [play for play in yaml.safe_load((PLAYBOOKS / name).read_text()) if "hosts" in play]


@pytest.mark.parametrize("name", CHANGING)
def test_plays_that_change_hosts_become_root(name):
    found = plays(name)
    assert found, name
    for play in found:
        if play["hosts"] in ("localhost", "127.0.0.1"):
            continue
        assert play.get("become") is True, "%s: play %r lacks become: true" % (name, play.get("name"))


def test_every_playbook_that_site_imports_is_classified():
    imported = {entry["ansible.builtin.import_playbook"] for entry in yaml.safe_load(
        (PLAYBOOKS / "site.yml").read_text())}
    # validate.yml changes nothing (it only checks inputs); verify.yml and acceptance.yml only read and measure.
    assert imported - {"validate.yml", "verify.yml", "acceptance.yml"} <= set(CHANGING), imported
