# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mooncake role's README variable table, argument_specs and defaults say the same thing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

import yaml

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles", "mooncake")


def load(*parts):
    with open(os.path.join(ROLE, *parts)) as handle:
        return handle.read()


SPEC = yaml.safe_load(load("meta", "argument_specs.yml"))["argument_specs"]["main"]["options"]
DEFAULTS = yaml.safe_load(load("defaults", "main.yml"))


def readme_table():
    rows = {}
    for line in load("README.md").splitlines():
        match = re.match(r"^\| `(mooncake_[a-z0-9_]+)` \| ([^|]+) \| ([^|]*) \|", line)
        if match:
            rows[match.group(1)] = (match.group(2).strip(), match.group(3).strip())
    return rows


def test_every_default_is_specified_and_every_spec_has_a_default():
    assert sorted(DEFAULTS) == sorted(SPEC)


def test_spec_defaults_equal_role_defaults():
    for name, option in SPEC.items():
        assert option.get("default") == DEFAULTS[name], name


def test_readme_lists_every_variable_with_its_type_and_default():
    rows = readme_table()
    assert sorted(rows) == sorted(SPEC)
    for name, option in SPEC.items():
        kind, default = rows[name]
        assert kind.startswith(option["type"]), name
        value = option.get("default")
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, (list, dict)):
            value = yaml.safe_dump(value, default_flow_style=True).strip()
        elif value == "":
            value = '""'
        assert default == "`%s`" % value, name


def test_every_variable_carries_the_role_prefix():
    assert all(name.startswith("mooncake_") for name in SPEC)
