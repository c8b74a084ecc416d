"""Ports: the Protocols that use cases depend on. Adapters implement them (boto3/pg8000);
tests implement them with fakes. Extend a Protocol here when a use case needs more.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import BinaryIO, Protocol


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

    def head(self, bucket: str, key: str, version_id: str | None = None) -> Mapping[str, object]: ...

    def delete_version(self, bucket: str, key: str, version_id: str | None) -> None: ...


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
