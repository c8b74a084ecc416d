"""Key attestation: proof that a pool key was made by the key-maintenance function.

A key row is only as trustworthy as whoever inserted it: a role that could INSERT into
``encryption_keys`` could plant a key whose secret it holds, and ingest would then encrypt
documents to it. So every new key carries an attestation, a MAC computed in AWS KMS (an
HMAC key only the maintain function may use to generate MACs) over the key's identity, and
key selection verifies it before a key is used to encrypt. A row planted by SQL has no valid
MAC and is never used (docs/KEYS.md, "Attestation").

The message is length-prefixed and labelled, so no two different keys share one:

    "pqfile/key-attestation/v1" || u16(len(suite)) || suite || u16(len(key id)) || key id
    || u32(len(public key)) || public key
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable

from pqfile.errors import CustodyError

LABEL = b"pqfile/key-attestation/v1"


class AttestationError(CustodyError):
    """A key has no attestation, or one that does not verify: it is never used to encrypt.
    (A KMS failure while verifying is not this: it raises CustodyError or TransientError.)"""


def attestation_message(suite: str, key_id: str, public_key: bytes) -> bytes:
    """The bytes the attestation MAC covers (see the module docstring)."""
    s, k = suite.encode("ascii"), key_id.encode("ascii")
    return (
        LABEL
        + struct.pack(">H", len(s))
        + s
        + struct.pack(">H", len(k))
        + k
        + struct.pack(">I", len(public_key))
        + bytes(public_key)
    )


class AttestationVerifier:
    """Verifies key attestations through a MAC port, remembering keys already verified.

    Public keys and attestations never change once a key exists (the database refuses it),
    so one KMS call per key and process is enough; the memory is bounded.
    """

    def __init__(
        self, verify_mac: Callable[[bytes, bytes], bool], *, max_entries: int = 4096
    ) -> None:
        self._verify_mac = verify_mac
        self._verified: set[tuple[str, bytes]] = set()
        self._max = max_entries
        self._lock = threading.Lock()

    def check(self, suite: str, key_id: str, public_key: bytes, mac: bytes | None) -> None:
        """Raise AttestationError unless ``mac`` is this key's attestation."""
        if not mac:
            raise AttestationError(f"key {key_id} has no attestation: not used to encrypt")
        entry = (key_id, bytes(mac))
        with self._lock:
            if entry in self._verified:
                return
        if not self._verify_mac(attestation_message(suite, key_id, public_key), bytes(mac)):
            raise AttestationError(f"key {key_id} has an invalid attestation: not used to encrypt")
        with self._lock:
            if len(self._verified) >= self._max:
                self._verified.clear()
            self._verified.add(entry)
