"""Signed tree heads of the audit log (docs/KEYS.md, "Signed tree heads"): the three ports
the digest-signing function (pqfile.usecases.audit_digest) works through."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # not at import: it loads cryptography (issue 15, cold init)
    from pqfile.keys.audit_digest import SignedDigest


@dataclass(frozen=True)
class AuditLeaves:
    """The audit rows' hashes in ``seq`` order (seq 1 is index 0), from one snapshot, and the
    time range of the rows after ``since_seq`` (None when there are none)."""

    row_hashes: tuple[bytes, ...]
    since_seq: int
    first_at: dt.datetime | None
    last_at: dt.datetime | None


class AuditLeafSource(Protocol):
    """Reads the audit log (read-only: the ``pqfile_auditor`` role)."""

    def leaves(self, since_seq: int) -> AuditLeaves: ...


class DigestSigner(Protocol):
    """An asymmetric signing key (KMS): the ARN and algorithm named inside each digest."""

    @property
    def key_id(self) -> str: ...

    @property
    def algorithm(self) -> str: ...

    def sign(self, message: bytes) -> bytes:
        """The signature over ``message`` as is (KMS MessageType RAW, at most 4,096 bytes)."""
        ...


class DigestStore(Protocol):
    """The write-once digest bucket (S3 Object Lock): ``digests/<tree size>.json``."""

    def latest(self) -> SignedDigest | None:
        """The digest with the largest tree size, or None before the first."""
        ...

    def put_new(self, key: str, body: bytes) -> bool:
        """Write ``body`` at ``key`` unless an object is there; False when one was."""
        ...
