"""Values that cross the ports: workflow states, object and document records."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


class DocumentStatus(enum.StrEnum):
    """``documents.status`` (sql/migrations/0003_documents.sql)."""

    PENDING = "pending"  # FetchDocument opened the row; not encrypted yet
    STORED = "stored"  # the package is committed; the plaintext is (being) deleted
    FAILED = "failed"  # RecordFailure marked it; the upload is kept for a re-run
    #: Its key was shredded (sql/migrations/0013): every package version is deleted, a
    #: tombstone remains. Never readable again.
    SHREDDED = "shredded"


class RotationStatus(enum.StrEnum):
    """``key_rotations.status`` (sql/migrations/0002_keys.sql)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class AuditOutcome(enum.StrEnum):
    """``access_logs.outcome`` (sql/migrations/0004_audit.sql)."""

    SUCCESS = "success"
    FAILURE = "failure"
    REFUSED = "refused"
    #: retrieve's row committed before any decryption (sql/migrations/0011); the outcome
    #: row follows.
    ATTEMPT = "attempt"


# --- objects (S3) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD (or a completed write) tells about one object version."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None = None
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class DocumentRecord:
    """A row of `documents` (sql/migrations/0003_documents.sql)."""

    document_id: str
    source_bucket: str
    source_key: str
    source_version_id: str | None
    source_etag: str | None
    status: DocumentStatus
    key_id: str | None = None
    suite: str | None = None
    encrypted_bucket: str | None = None
    encrypted_key: str | None = None
    encrypted_version_id: str | None = None
    plaintext_size: int | None = None
    encrypted_size: int | None = None
    error: str | None = None
    #: The first folder under uploads/ (sql/migrations/0011; ``legacy`` for older rows).
    tenant: str | None = None
    #: The upload's content type as S3 reported it at fetch (sql/migrations/0016).
    source_content_type: str | None = None
    #: When the package was committed (``stored``); None before.
    stored_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        # Repositories hand over the column's text; an unknown status fails here, loudly.
        object.__setattr__(self, "status", DocumentStatus(self.status))


@dataclass(frozen=True)
class KeyRequest:
    """A pending operator request on a key (``key_requests``)."""

    request_id: int
    key_id: str
    kind: str  # a keys.model.RequestKind value
    reason: str
    requested_by: str
    #: The key's suite, where the repository reads it (the shred role's requests do, for
    #: the `PQFile Key Revoked` event); None otherwise.
    suite: str | None = None
