"""Key records and the key lifecycle (docs/KEYS.md, "Lifecycle").

Which status may follow which is enforced by the database (trigger ``encryption_keys_guard``,
sql/migrations/0002_keys.sql), which raises ``IllegalTransitionError`` through the adapter;
which purposes each status allows (``usable_for``) is decided here.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from pqfile.errors import KeyNotUsableError


class IllegalTransitionError(KeyNotUsableError):
    """A key status change the lifecycle forbids (e.g. revoked -> active)."""


class KeyStatus(enum.Enum):
    ACTIVE = "active"  # encrypts and decrypts
    ROTATION_QUEUED = "rotation_queued"  # decrypts; no new documents; waiting for rewrap
    EXPIRED = "expired"  # decrypt only
    REVOKED = "revoked"  # nothing, ever again
    SHREDDED = "shredded"  # its wrapped seed is destroyed (sql/migrations/0013)

    @classmethod
    def from_name(cls, name: str) -> KeyStatus:
        try:
            return cls(name)
        except ValueError:
            raise ValueError(f"unknown key status {name!r}") from None


class Purpose(enum.Enum):
    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"
    REWRAP = "rewrap"  # decrypt the data key under the old key during rotation


_USABLE_FOR: dict[Purpose, frozenset[KeyStatus]] = {
    Purpose.ENCRYPT: frozenset({KeyStatus.ACTIVE}),
    Purpose.DECRYPT: frozenset({KeyStatus.ACTIVE, KeyStatus.ROTATION_QUEUED, KeyStatus.EXPIRED}),
    Purpose.REWRAP: frozenset({KeyStatus.ACTIVE, KeyStatus.ROTATION_QUEUED, KeyStatus.EXPIRED}),
}


def usable_for(status: KeyStatus, purpose: Purpose) -> bool:
    return status in _USABLE_FOR[purpose]


class RequestKind(enum.Enum):
    """What an operator may request for a key (``key_requests.kind``); only a person starts
    one (the ``pqfile_operator`` role), a workflow may only complete it."""

    REVOKE = "revoke"
    SHRED = "shred"
    COMPROMISE = "compromise"


@dataclass(frozen=True)
class KeyRecord:
    """One row of ``encryption_keys``: public data only (the wrapped seed stays in adapters)."""

    key_id: str
    suite: str
    public_key: bytes = field(repr=False)
    kms_key_arn: str
    status: KeyStatus
    usage_count: int
    bytes_encrypted: int
    created_at: dt.datetime
    activated_at: dt.datetime | None
    rotate_after: dt.datetime
    rotation_queued_at: dt.datetime | None = None
    expired_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    revoke_reason: str | None = None
    last_used_at: dt.datetime | None = None
    #: The MAC made by the maintain function over the key's identity (keys/attestation.py);
    #: None for keys created before migration 0010, which are never selected.
    attestation: bytes | None = field(default=None, repr=False)

    def require(self, purpose: Purpose) -> None:
        """Raise KeyNotUsableError unless this key's status allows ``purpose``."""
        if not usable_for(self.status, purpose):
            raise KeyNotUsableError(
                f"key {self.key_id} is {self.status.value}: not usable to {purpose.value}"
            )

    def age(self, now: dt.datetime) -> dt.timedelta:
        return now - self.created_at


@dataclass(frozen=True)
class SelectedKey:
    """What a selection returns: the key to encrypt to, and its usage after this use."""

    key_id: str
    suite: str
    usage_count: int
    bytes_encrypted: int
    public_key: bytes = field(default=b"", repr=False)
    attestation: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SealedSeed:
    """What custody reads to unwrap a key: its suite, its status now, its KMS-wrapped seed."""

    suite: str
    status: KeyStatus
    wrapped_seed: bytes = field(repr=False)


@dataclass(frozen=True)
class NewKey:
    """A generated key ready to be stored: public key and KMS-wrapped seed, never the seed."""

    key_id: str
    suite: str
    public_key: bytes = field(repr=False)
    wrapped_seed: bytes = field(repr=False)
    kms_key_arn: str
