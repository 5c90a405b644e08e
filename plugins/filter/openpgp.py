# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that read OpenPGP public key blocks (logic in plugin_utils/openpgp.py, unit-tested there)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.erdma.pd.plugins.plugin_utils import openpgp


def openpgp_fingerprints(text):
    """Fingerprints of the primary keys and subkeys in an armoured public key block."""
    try:
        return openpgp.key_fingerprints(to_text(text))
    except openpgp.OpenPGPError as exc:
        raise AnsibleFilterError("openpgp_fingerprints: %s" % exc)


def openpgp_pin_problems(text, fingerprint):
    """Why the key block must not be trusted under the pinned fingerprint; empty when it may be."""
    return openpgp.pin_problems(to_text(text), to_text(fingerprint))


class FilterModule(object):
    """OpenPGP key checks."""

    def filters(self):
        return {
            "openpgp_fingerprints": openpgp_fingerprints,
            "openpgp_pin_problems": openpgp_pin_problems,
        }
