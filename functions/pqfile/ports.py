"""Ports: the Protocols that use cases depend on. Adapters implement them (boto3/pg8000);
tests implement them with fakes. Extend a Protocol here when a use case needs more.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from pqfile.crypto.kem import PublicKey, SecretKey, Suite


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Current time, timezone-aware UTC."""
        ...


class SeedProtector(Protocol):
    """Wraps/unwraps secret key seeds (AWS KMS in production)."""

    def wrap(self, seed: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        """Return (wrapped_seed, kms_key_arn). The context must be given again to unwrap."""
        ...

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """Return the seed; raise pqfile.errors.CustodyError on any refusal."""
        ...


class BlobStore(Protocol):
    """Object storage (S3)."""

    def open_read(self, bucket: str, key: str, version_id: str | None = None) -> BinaryIO: ...

    def head(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> Mapping[str, object]: ...

    def delete_version(self, bucket: str, key: str, version_id: str | None) -> None: ...

    # Pipeline additions (adapters/s3.py). stat/open_write raise DocumentNotFoundError,
    # TransientError or StorageError.
    def stat(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo: ...

    def open_write(
        self, bucket: str, key: str, *, content_type: str, kms_key_id: str | None = None
    ) -> ObjectWriter:
        """A streaming writer (multipart upload, bounded memory); abort() on failure."""
        ...

    def put_file(
        self, bucket: str, key: str, path: str, *, content_type: str, kms_key_id: str | None = None
    ) -> ObjectInfo: ...

    def presign_get(self, bucket: str, key: str, version_id: str | None, seconds: int) -> str: ...

    def tag_version(
        self, bucket: str, key: str, version_id: str | None, tags: Mapping[str, str]
    ) -> None: ...


class ObjectWriter(Protocol):
    def write(self, data: bytes) -> int: ...

    def complete(self) -> ObjectInfo:
        """Finish the upload and return the new object version."""
        ...

    def abort(self) -> None: ...


class AuditLog(Protocol):
    """Append-only, hash-chained audit trail."""

    def append(
        self,
        *,
        operation: str,
        outcome: str,
        actor: str,
        document_id: str | None = None,
        key_id: str | None = None,
        request_id: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> int:
        """Append one row; return its sequence number."""
        ...

    def tail(self, limit: int = 20) -> Iterator[Mapping[str, object]]: ...


# --- pipeline (issue 4): documents, keys, object writes --------------------------------
# Proposed by the pipeline; the Postgres adapter implements DocumentRepository/KeyStore.


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
    status: str  # pending | encrypted | stored | failed
    key_id: str | None = None
    suite: str | None = None
    encrypted_bucket: str | None = None
    encrypted_key: str | None = None
    encrypted_version_id: str | None = None
    plaintext_size: int | None = None
    encrypted_size: int | None = None
    error: str | None = None


class DocumentRepository(Protocol):
    """The document index. Every write is idempotent; the first writer wins."""

    def begin(
        self,
        *,
        document_id: str,
        source_bucket: str,
        source_key: str,
        source_version_id: str | None,
        source_etag: str | None,
        plaintext_size: int,
    ) -> DocumentRecord:
        """Insert a `pending` row, or return the existing row for this source identity."""
        ...

    def get(self, document_id: str) -> DocumentRecord | None: ...

    def find_by_encrypted_object(self, bucket: str, key: str) -> DocumentRecord | None: ...

    def assign_key(self, document_id: str, key_id: str, suite: str) -> DocumentRecord:
        """Set key_id/suite if still unset; return the row (with the winning key)."""
        ...

    def mark_stored(
        self,
        document_id: str,
        *,
        encrypted_bucket: str,
        encrypted_key: str,
        encrypted_version_id: str | None,
        encrypted_size: int,
    ) -> tuple[DocumentRecord, bool]:
        """Commit status `stored` unless already stored; return (row, whether we stored it)."""
        ...

    def mark_plaintext_deleted(self, document_id: str) -> None: ...

    def mark_failed(self, document_id: str, error: str) -> None:
        """Record a failure unless the document is already stored."""
        ...


class KeyStore(Protocol):
    """The key pool (PostgreSQL + KMS-wrapped seeds)."""

    def select_encryption_key(self, suite: Suite, plaintext_size: int = 0) -> PublicKey:
        """An active key of `suite`, least used first; raise NoActiveKeyError if none."""
        ...

    def refill(
        self, suite: Suite, *, actor: str | None = None, request_id: str | None = None
    ) -> Sequence[object]:
        """Top the pool up when below its floor (wraps new seeds with KMS)."""
        ...

    def public_key(self, key_id: str) -> PublicKey:
        """The public key of any known key; raise KeyNotFoundError."""
        ...

    def load_decryption_key(self, key_id: str) -> SecretKey:
        """Unwrap a key's seed.

        Raise KeyNotFoundError, KeyNotUsableError (revoked) or CustodyError.
        """
        ...
