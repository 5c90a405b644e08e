# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/erdma_driver: README variable table, argument_specs and defaults say the same thing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

import yaml

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "erdma_driver")


def load(*parts):
    with open(os.path.join(ROLE, *parts)) as handle:
        return handle.read()


def spec():
    return yaml.safe_load(load("meta", "argument_specs.yml"))["argument_specs"]["main"]["options"]


def readme_rows():
    rows = {}
    for line in load("README.md").splitlines():
        match = re.match(r"^\| `(erdma_driver_\w+)` \| ([^|]+) \| (.+?) \| (.+) \|$", line)
        if match:
            rows[match.group(1)] = {"type": match.group(2).strip(), "default": match.group(3).strip()}
    return rows


def readme_default(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '`""`' if value == "" else "`%s`" % value
    return "`%s`" % json.dumps(value)


def test_every_default_is_specified_with_the_same_value():
    defaults = yaml.safe_load(load("defaults", "main.yml"))
    options = spec()
    assert sorted(defaults) == sorted(options)
    for name, value in defaults.items():
        assert options[name].get("default") == value, name


def test_every_option_is_prefixed_typed_and_described():
    for name, option in spec().items():
        assert name.startswith("erdma_driver_"), name
        assert option.get("type") in ("bool", "int", "str", "path", "list", "dict"), name
        assert option.get("description"), name
        if option["type"] == "list":
            assert option.get("elements"), name


def test_readme_table_matches_argument_specs():
    rows = readme_rows()
    options = spec()
    assert sorted(rows) == sorted(options)
    for name, option in options.items():
        assert rows[name]["type"].startswith(option["type"]), name
        assert rows[name]["default"] == readme_default(option.get("default")), name
