"""What the pipeline's use cases share: their dependencies and small stream helpers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pqfile.config import Settings
from pqfile.ports import (
    AuditLog,
    BlobStore,
    DocumentRepository,
    EventPublisher,
    KeyStore,
    PackageCipher,
    Writable,
)
from pqfile.usecases.notices import NoEvents

#: Content type of a PQF package in S3.
PACKAGE_CONTENT_TYPE = "application/vnd.pqfile.pqf"


@dataclass
class Pipeline:
    """Everything an ingest or retrieve use case needs, injected (adapters by pqfile.wiring,
    fakes in tests)."""

    settings: Settings
    blobs: BlobStore
    documents: DocumentRepository
    keys: KeyStore
    audit: AuditLog
    cipher: PackageCipher
    #: Completion events (docs/CONTRACTS.md, "Completion events"); none unless wired.
    events: EventPublisher = field(default_factory=NoEvents)


class CountingReader:
    """Counts the bytes read from a stream (the plaintext size actually encrypted)."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self.count += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n: int | None = getattr(self._inner, "readinto")(buffer)  # noqa: B009
        self.count += n or 0
        return n or 0

    def readable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class HashingWriter:
    """Passes writes through while hashing and counting them; can enforce a size cap."""

    def __init__(self, inner: Writable, *, limit: int | None = None) -> None:
        self._inner = inner
        self._limit = limit
        self.sha256 = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        self.count += len(data)
        if self._limit is not None and self.count > self._limit:
            raise OverflowError("more plaintext than the document index records")
        self.sha256.update(data)
        self._inner.write(data)
        return len(data)

    def flush(self) -> None:
        return None

    def writable(self) -> bool:
        return True
