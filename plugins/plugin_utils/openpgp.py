# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fingerprints of the keys in an OpenPGP public key block (RFC 4880 / RFC 9580), without gpg.

The eRDMA driver role pins the vendor's apt signing key by fingerprint: it fetches the key, reads
the fingerprints here on the control node and trusts the key only when they are exactly the pinned
one. Doing it in Python keeps the check independent of whether gnupg is installed on the host and
lets it run in check mode.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import re

PUBLIC_KEY = 6
PUBLIC_SUBKEY = 14
_ARMOR = re.compile(r"-----BEGIN PGP PUBLIC KEY BLOCK-----(.*?)-----END PGP PUBLIC KEY BLOCK-----", re.S)


class OpenPGPError(ValueError):
    """The text is not a public key block this parser can read."""


def dearmor(text):
    """The binary packets of an ASCII-armoured public key block (the first block in `text`)."""
    match = _ARMOR.search(text or "")
    if not match:
        raise OpenPGPError("no '-----BEGIN PGP PUBLIC KEY BLOCK-----' block found")
    body = match.group(1).strip().splitlines()
    # Armour headers ("Version: ...", "Comment: ...") end at the first blank line.
    if any(not line.strip() for line in body):
        body = body[[not line.strip() for line in body].index(True) + 1:]
    data = "".join(line.strip() for line in body if line.strip() and not line.startswith("="))
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise OpenPGPError("the armoured block is not base64: %s" % exc)


def packets(data):
    """Yield (tag, body) of each packet, old and new header formats."""
    pos = 0
    while pos < len(data):
        header = data[pos]
        if not header & 0x80:
            raise OpenPGPError("byte %d is not a packet header" % pos)
        if header & 0x40:  # new format
            tag = header & 0x3F
            length, pos = _new_length(data, pos + 1)
        else:  # old format
            tag = (header >> 2) & 0x0F
            size = {0: 1, 1: 2, 2: 4}.get(header & 0x03)
            if size is None:
                raise OpenPGPError("indeterminate packet length is not used in keys")
            length = int.from_bytes(data[pos + 1:pos + 1 + size], "big")
            pos += 1 + size
        if pos + length > len(data):
            raise OpenPGPError("packet at byte %d runs past the end" % pos)
        yield tag, data[pos:pos + length]
        pos += length


def _new_length(data, pos):
    first = data[pos]
    if first < 192:
        return first, pos + 1
    if first < 224:
        return ((first - 192) << 8) + data[pos + 1] + 192, pos + 2
    if first == 255:
        return int.from_bytes(data[pos + 1:pos + 5], "big"), pos + 5
    raise OpenPGPError("partial body lengths are not used in keys")


def fingerprint(body):
    """Fingerprint of a public (sub)key packet body: v4 SHA-1, v5/v6 SHA-256, upper-case hex."""
    version = body[0]
    if version == 4:
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
    if version in (5, 6):
        prefix = b"\x9a" if version == 5 else b"\x9b"
        return hashlib.sha256(prefix + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    raise OpenPGPError("key version %d is not supported" % version)


def key_fingerprints(text):
    """{'primary': [fingerprints of the primary keys], 'subkeys': [...]} of an armoured key block."""
    found = {"primary": [], "subkeys": []}
    for tag, body in packets(dearmor(text)):
        if tag == PUBLIC_KEY:
            found["primary"].append(fingerprint(body))
        elif tag == PUBLIC_SUBKEY:
            found["subkeys"].append(fingerprint(body))
    if not found["primary"]:
        raise OpenPGPError("the block holds no public key")
    return found


def normalize(fpr):
    """'ABCD 1234 ...' or '0xabcd1234...' -> 'ABCD1234...' (how people write fingerprints)."""
    text = re.sub(r"\s+", "", str(fpr or "")).upper()
    return text[2:] if text.startswith("0X") else text


def pin_problems(text, pinned):
    """Why the key block must not be trusted under the pinned fingerprint; empty when it may be."""
    want = normalize(pinned)
    if not re.match(r"^([0-9A-F]{40}|[0-9A-F]{64})$", want):
        return ["the pinned fingerprint %r is not 40 (v4) or 64 (v6) hex digits" % pinned]
    try:
        found = key_fingerprints(text)
    except OpenPGPError as exc:
        return ["the downloaded key is not an OpenPGP public key block (%s)" % exc]
    if found["primary"] != [want]:
        return ["the downloaded key block holds %s, not exactly the pinned %s"
                % (", ".join(found["primary"]), want)]
    return []
