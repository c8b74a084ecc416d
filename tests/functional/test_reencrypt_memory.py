"""The re-encryption's memory does not grow with the document: a 200 MiB package streamed
from GetObject through envelope.reencrypt_stream into the real StreamingUpload (an S3 client
that only counts the parts), measured with tracemalloc; and the small-object path."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from pqfile.adapters.s3_rewrap import S3PackageStore
from pqfile.adapters.s3_stream_write import PART_SIZE, StreamingUpload
from pqfile.crypto import envelope, kem
from pqfile.errors import TransientError, WrongKeyError
from pqfile.ports import ObjectInfo

MIB = 1024 * 1024


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


class _CountingS3:
    """GetObject from a file; multipart parts and single puts counted, never kept."""

    def __init__(self, source: Path | bytes, etag: str = "e1") -> None:
        self.source, self.etag = source, etag
        self.parts: list[int] = []
        self.puts: list[bytes] = []
        self.completed = self.aborted = False
        self.sink = bytearray() if isinstance(source, bytes) else None

    def get_object(self, **kw: Any) -> dict[str, Any]:
        body = self.source.open("rb") if isinstance(self.source, Path) else io.BytesIO(self.source)
        return {"Body": body}

    def head_object(self, **kw: Any) -> dict[str, Any]:
        return {"ETag": f'"{self.etag}"'}

    def create_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        return {"UploadId": "u1"}

    def upload_part(self, *, Body: bytes, PartNumber: int, **kw: Any) -> dict[str, Any]:
        self.parts.append(len(Body))
        if self.sink is not None:
            self.sink += Body
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, *, IfMatch: str, **kw: Any) -> dict[str, Any]:
        assert IfMatch == f'"{self.etag}"'
        self.completed = True
        return {"ETag": '"x-1"', "VersionId": "v2"}

    def put_object(self, *, Body: bytes, IfMatch: str, **kw: Any) -> dict[str, Any]:
        assert IfMatch == f'"{self.etag}"'
        self.puts.append(Body)
        return {"ETag": '"p"', "VersionId": "v2"}

    def abort_multipart_upload(self, **kw: Any) -> None:
        self.aborted = True


def _source(size: int) -> ObjectInfo:
    return ObjectInfo("b", "encrypted/a.pqf", size, "e1", "v1", "application/vnd.pqfile.pqf")


def test_reencrypting_200_mib_stays_under_24_mib(tmp_path: Path) -> None:
    size = 200 * MIB
    old, new = kem.generate(), kem.generate()
    package = tmp_path / "a.pqf"
    with package.open("wb") as f:
        envelope.encrypt_stream(io.BufferedReader(_Zeros(size), MIB), f, old.public_key(),
                                document_id="d1", segment_size=MIB)  # fmt: skip
    s3 = _CountingS3(package)
    store = S3PackageStore(s3)  # type: ignore[arg-type]
    results: list[envelope.EncryptResult] = []

    def transform(src: Any, dst: Any) -> None:
        results.append(envelope.reencrypt_stream(src, dst, old, new.public_key(),
                                                 expected_document_id="d1"))  # fmt: skip

    tracemalloc.start()
    try:
        written = store.rewrite("b", "encrypted/a.pqf", source=_source(package.stat().st_size),
                                transform=transform, if_match="e1")  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert s3.completed and not s3.aborted
    (result,) = results
    assert result.plaintext_size == size and written.size == result.package_size
    assert sum(s3.parts) == result.package_size
    assert all(p == PART_SIZE for p in s3.parts[:-1])
    assert store.last_peak_buffer <= PART_SIZE
    assert peak < 24 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_a_small_package_is_one_conditional_put_and_opens_only_with_the_new_key() -> None:
    old, new = kem.generate(), kem.generate()
    data = b"x" * 70_000
    package = envelope.encrypt_bytes(data, old.public_key(), document_id="d1")
    s3 = _CountingS3(package)
    store = S3PackageStore(s3)  # type: ignore[arg-type]
    written = store.rewrite(
        "b", "encrypted/a.pqf", source=_source(len(package)), if_match="e1",
        transform=lambda src, dst: envelope.reencrypt_stream(src, dst, old, new.public_key()),
    )  # fmt: skip
    (put,) = s3.puts
    assert written.size == len(put) and written.version_id == "v2" and not s3.parts
    assert envelope.decrypt_bytes(put, new) == data
    with pytest.raises(WrongKeyError):
        envelope.decrypt_bytes(put, old)


def test_a_failed_transform_or_a_changed_object_commits_nothing(tmp_path: Path) -> None:
    old, new = kem.generate(), kem.generate()
    package = tmp_path / "a.pqf"
    with package.open("wb") as f:
        envelope.encrypt_stream(io.BufferedReader(_Zeros(20 * MIB), MIB), f, old.public_key())
    wrong = kem.generate()
    s3 = _CountingS3(package)
    store = S3PackageStore(s3)  # type: ignore[arg-type]
    with pytest.raises(WrongKeyError):  # the wrong secret: nothing is written
        store.rewrite("b", "k", source=_source(0), if_match="e1",
                      transform=lambda src, dst: envelope.reencrypt_stream(
                          src, dst, wrong, new.public_key()))  # fmt: skip
    assert not s3.completed and not s3.puts
    s3 = _CountingS3(package, etag="changed")
    store = S3PackageStore(s3)  # type: ignore[arg-type]
    with pytest.raises(TransientError, match="changed concurrently"):
        store.rewrite("b", "k", source=_source(0), if_match="e1",
                      transform=lambda src, dst: envelope.reencrypt_stream(
                          src, dst, old, new.public_key()))  # fmt: skip
    assert not s3.completed and s3.aborted


def test_streaming_upload_refuses_parts_below_the_s3_minimum() -> None:
    with pytest.raises(ValueError, match="at least"):
        StreamingUpload(_CountingS3(b""), "b", "k", if_match="e", part_size=MIB)  # type: ignore[arg-type]
