"""Object storage (S3) and the package cipher, as the use cases see them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:
    from pqfile.crypto.kem import PublicKey, SecretKey

from pqfile.ports.model import (
    ObjectInfo,
)


class ObjectWriter(Protocol):
    def write(self, data: bytes) -> int: ...

    def complete(self) -> ObjectInfo:
        """Finish the upload and return the new object version."""
        ...

    def abort(self) -> None: ...


class PartedUpload(Protocol):
    """A multipart upload whose parts are numbered by the caller and may be uploaded from
    several threads in any order (the parallel ingest, usecases/ingest_parallel.py)."""

    def upload_part(self, number: int, data: bytes | bytearray | memoryview) -> None: ...

    def complete(self) -> ObjectInfo:
        """Assemble parts 1..n (all must be there) into the new object version."""
        ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    """Object storage (adapters/s3.py). Raises DocumentNotFoundError, TransientError or
    StorageError."""

    def open_read(self, bucket: str, key: str, version_id: str | None = None) -> BinaryIO: ...

    def open_read_range(
        self, bucket: str, key: str, version_id: str | None, start: int, length: int
    ) -> BinaryIO:
        """Bytes ``start .. start + length - 1`` of one version, as a stream (one ranged
        GET; fewer bytes only at the object's end)."""
        ...

    def open_parts(self, bucket: str, key: str, *, content_type: str) -> PartedUpload:
        """A multipart upload for parts numbered by the caller (adapters/s3_stream_write)."""
        ...

    def stat(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo: ...

    def open_write(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str,
        kms_key_id: str | None = None,
        part_size: int | None = None,
    ) -> ObjectWriter:
        """A streaming writer (multipart upload, bounded memory); abort() on failure.
        ``part_size`` overrides the store's default (usecases/parts.py plans it)."""
        ...

    def delete_version(self, bucket: str, key: str, version_id: str | None) -> None: ...

    def presign_get(self, bucket: str, key: str, version_id: str | None, seconds: int) -> str: ...

    def tag_version(
        self, bucket: str, key: str, version_id: str | None, tags: Mapping[str, str]
    ) -> None: ...


class PackageStore(Protocol):
    """Object access rotation needs (adapters/s3_rewrap.py): ranged reads, and a new
    version with a new head."""

    def stat(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo: ...

    def read_range(
        self, bucket: str, key: str, version_id: str | None, start: int, length: int
    ) -> bytes:
        """``length`` bytes from ``start`` of one object version (fewer only at its end)."""
        ...

    def replace_head(
        self,
        bucket: str,
        key: str,
        *,
        source: ObjectInfo,
        body_offset: int,
        new_head: bytes,
        if_match: str,
    ) -> ObjectInfo:
        """Write a new version of ``key``: ``new_head`` then ``source``'s bytes from
        ``body_offset`` on, copied unchanged. Written only if the object's current ETag is
        still ``if_match``; otherwise raise TransientError (a concurrent change)."""
        ...


    def rewrite(
        self,
        bucket: str,
        key: str,
        *,
        source: ObjectInfo,
        transform: Callable[[Any, Any], object],
        if_match: str,
    ) -> ObjectInfo:
        """Write a new version of the object from a stream: ``transform(reader, sink)``
        reads the committed ``source`` version and writes the new content, in bounded
        memory. Written only if the object's current ETag is ``if_match``
        (TransientError otherwise); nothing is committed when ``transform`` raises."""
        ...


class ManifestStore(Protocol):
    """Where the rotation plan writes a batch (adapters/s3_manifest.py): a JSON array of
    items, which the workflow's distributed Map reads with its S3 ItemReader."""

    def write_manifest(
        self, bucket: str, key: str, items: Sequence[Mapping[str, Any]]
    ) -> ObjectInfo: ...


# --- the PQF cipher ----------------------------------------------------------------------------


class Writable(Protocol):
    """What encrypt_stream/decrypt_stream write to (they pass memoryviews of reused buffers)."""

    def write(self, data: Any, /) -> Any: ...


class PackageCipher(Protocol):
    """Streaming PQF encryption (docs/FORMAT.md); adapters/cipher.py is pqfile.crypto's."""

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


# --- custody and audit -------------------------------------------------------------------------
