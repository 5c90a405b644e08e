# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugin_utils/openpgp.py against real keys, with gpg's own answer as the oracle (fixtures/openpgp)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.erdma.pd.plugins.plugin_utils import openpgp

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "openpgp")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def gpg_fingerprints(name):
    """(primary, subkeys) from `gpg --show-keys --with-colons`: an fpr line follows its pub/sub line."""
    primary, subkeys, last = [], [], None
    for line in fixture(name).splitlines():
        kind = line.split(":", 1)[0]
        if kind in ("pub", "sub"):
            last = kind
        elif kind == "fpr" and last:
            (primary if last == "pub" else subkeys).append(line.split(":")[9])
            last = None
    return primary, subkeys


@pytest.mark.parametrize("name", ["debian-archive-bookworm-automatic", "debian-archive-keyring-all"])
def test_fingerprints_are_the_ones_gpg_prints(name):
    found = openpgp.key_fingerprints(fixture(name + ".asc"))
    primary, subkeys = gpg_fingerprints(name + ".gpg-show-keys.txt")
    assert found == {"primary": primary, "subkeys": subkeys}


def test_the_pinned_key_is_accepted_in_any_spelling():
    key = fixture("debian-archive-bookworm-automatic.asc")
    assert openpgp.pin_problems(key, "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8") == []
    assert openpgp.pin_problems(key, "b8b8 0b5b 623e ab6a d877  5c45 b7c5 d7d6 3509 47f8") == []
    assert openpgp.pin_problems(key, "0xB8B80B5B623EAB6AD8775C45B7C5D7D6350947F8") == []


def test_another_key_is_refused_and_named():
    problems = openpgp.pin_problems(fixture("debian-archive-bookworm-automatic.asc"), "A" * 40)
    assert len(problems) == 1 and "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8" in problems[0]


def test_the_subkey_fingerprint_is_not_a_pin():
    problems = openpgp.pin_problems(fixture("debian-archive-bookworm-automatic.asc"),
                                    "4CB50190207B4758A3F73A796ED0E7B82643E131")
    assert problems


def test_a_block_with_a_second_primary_key_is_refused_even_if_it_holds_the_pinned_one():
    key = fixture("debian-archive-keyring-all.asc")
    primary = openpgp.key_fingerprints(key)["primary"]
    assert len(primary) > 1
    assert openpgp.pin_problems(key, primary[0])


@pytest.mark.parametrize("pinned", ["", "B8B80B5B", "Z" * 40])
def test_a_malformed_pin_is_refused(pinned):
    assert "not 40 (v4) or 64 (v6) hex digits" in openpgp.pin_problems(
        fixture("debian-archive-bookworm-automatic.asc"), pinned)[0]


@pytest.mark.parametrize("text", ["", "<html>404 Not Found</html>",
                                  "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n-----END PGP PUBLIC KEY BLOCK-----\n"])
def test_what_is_not_a_key_is_refused(text):
    assert "not an OpenPGP public key block" in openpgp.pin_problems(text, "A" * 40)[0]


def test_truncated_key_is_refused():
    key = fixture("debian-archive-bookworm-automatic.asc").splitlines()
    cut = "\n".join(key[:6] + key[-1:]) + "\n"
    assert openpgp.pin_problems(cut, "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8")
