"""Body key schedule and header MAC (docs/FORMAT.md sections 5 and 7)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

BODY_LABEL = b"pqfile/v1/body"
COMMIT_LABEL = b"pqfile/v1/commit"
HEADER_MAC_LABEL = b"pqfile/v1/header-mac"


@dataclass(frozen=True)
class BodyKeys:
    """The three keys derived from the data key and the per-package salt."""

    body_key: bytes = field(repr=False)
    commitment: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)


def _expand(prk: bytes, label: bytes) -> bytes:
    return HKDFExpand(hashes.SHA256(), 32, label).derive(prk)


def derive_body_keys(data_key: bytes, salt: bytes) -> BodyKeys:
    """FORMAT.md §5: prk = HKDF-Extract(salt, DK); three HKDF-Expand outputs."""
    prk = hmac.new(salt, data_key, hashlib.sha256).digest()  # RFC 5869 HKDF-Extract
    return BodyKeys(
        body_key=_expand(prk, BODY_LABEL),
        commitment=_expand(prk, COMMIT_LABEL),
        mac_key=_expand(prk, HEADER_MAC_LABEL),
    )


def header_mac(mac_key: bytes, mac_input: bytes) -> bytes:
    """FORMAT.md §7: HMAC-SHA256 over every header byte before the MAC."""
    return hmac.new(mac_key, mac_input, hashlib.sha256).digest()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
