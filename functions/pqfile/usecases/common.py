"""What the pipeline's use cases share: their dependencies and small stream helpers."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from pqfile.config import Settings
from pqfile.ports import AuditLog, BlobStore, DocumentRepository, KeyStore

if TYPE_CHECKING:
    from pqfile.crypto.kem import PublicKey, SecretKey

#: Content type of a PQF package in S3.
PACKAGE_CONTENT_TYPE = "application/vnd.pqfile.pqf"
#: The actor the ingest pipeline writes into audit rows.
PIPELINE_ACTOR = "pqfile-ingest"


class Writable(Protocol):
    """What encrypt_stream/decrypt_stream write to (they pass memoryviews of reused buffers)."""

    def write(self, data: Any, /) -> Any: ...


class PackageCipher(Protocol):
    """Streaming PQF encryption (docs/FORMAT.md); the real one is pqfile.crypto's."""

    def encrypt_stream(
        self,
        src: BinaryIO,
        dst: Writable,
        recipient: PublicKey,
        context: Mapping[str, str],
        *,
        segment_size: int,
        document_id: str,
    ) -> object: ...

    def decrypt_stream(
        self, src: BinaryIO, dst: Writable, identity: SecretKey, *, document_id: str | None
    ) -> object:
        """Write the plaintext; raise DecryptionError (opaque) if anything fails to verify."""
        ...

    def package_ids(self, src: BinaryIO) -> tuple[str, str]:
        """(key id, document id) from a package's header; needs no key, reads the header only."""
        ...


@dataclass
class Pipeline:
    """Everything a use case needs, injected (adapters in handlers, fakes in tests)."""

    settings: Settings
    blobs: BlobStore
    documents: DocumentRepository
    keys: KeyStore
    audit: AuditLog
    cipher: PackageCipher


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
