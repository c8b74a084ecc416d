"""Who may read what: the access rules of sql/migrations/0011 (docs/OPERATIONS.md,
"Tenants and access"). Deny by default."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Protocol


class AccessOperation(enum.StrEnum):
    """``access_rules.operation``."""

    RETRIEVE = "retrieve"
    OPERATE = "operate"


@dataclass(frozen=True)
class AccessRule:
    """A row of ``access_rules``: ``principal`` (an ARN or a ``*`` pattern) may do
    ``operation`` on ``tenant`` or on ``document_id`` (exactly one of them)."""

    rule_id: int
    principal: str
    tenant: str | None
    document_id: str | None
    operation: str
    created_by: str
    created_at: dt.datetime


class AccessPolicy(Protocol):
    def allows(self, principal: str, document_id: str, operation: AccessOperation) -> bool:
        """Deny by default: True only when a rule for ``operation`` names the document or
        its tenant and its principal (pattern) matches ``principal``."""
        ...


@dataclass(frozen=True)
class RecipientKey:
    """A reader's registered public key (``recipient_keys``, sql/migrations/0020): sealed
    retrieval re-wraps a document's data key to it. ``suite`` is a crypto.kem.Suite value;
    ``public_key`` the raw encoded key (FORMAT.md §1 "Suites"); ``fingerprint`` the
    SHA-256 hex of ``public_key``, the recipient key id the audit records."""

    recipient_id: int
    suite: str
    public_key: bytes
    fingerprint: str
    #: The operator allowed re-wrapping documents of a stronger suite to this key.
    allow_weaker: bool


class RecipientDirectory(Protocol):
    def recipient_for(self, principal: str, document_id: str) -> RecipientKey | None:
        """The caller's active recipient key, only when an access rule lets this exact
        principal retrieve this document; None otherwise (no key, revoked, or not allowed)."""
        ...
