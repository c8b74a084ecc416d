"""The encrypt step's memory does not grow with the document: source stream -> PQF ->
the real S3 MultipartWriter (with an S3 client that only counts the parts)."""

from __future__ import annotations

import io
import tracemalloc

from pqfile.adapters.s3 import MultipartWriter
from pqfile.ports import ObjectInfo
from pqfile.usecases import ingest
from pqfile.usecases.events import SourceRef
from tests.functional.fakes import UPLOADS, make_pipeline

MIB = 1024 * 1024


class _Zeros(io.RawIOBase):
    """`size` bytes produced on demand (never held in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


class _CountingS3:
    def __init__(self) -> None:
        self.parts = 0
        self.bytes = 0
        self.completed = False

    def create_multipart_upload(self, **kw):
        return {"UploadId": "u1"}

    def upload_part(self, *, Body, PartNumber, **kw):
        self.parts += 1
        self.bytes += len(Body)
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, **kw):
        self.completed = True
        return {"ETag": '"x-1"', "VersionId": "v1"}

    def abort_multipart_upload(self, **kw):
        raise AssertionError("not expected")


def test_encrypting_256_mib_stays_under_24_mib() -> None:
    size = 256 * MIB
    p = make_pipeline(segment_size=MIB)
    s3 = _CountingS3()
    p.blobs.open_read = lambda b, k, v=None: io.BufferedReader(_Zeros(size), MIB)  # type: ignore[method-assign]
    p.blobs.open_write = lambda b, k, **kw: MultipartWriter(  # type: ignore[method-assign]
        s3, b, k, content_type=kw["content_type"], part_size=8 * MIB)
    info = p.blobs.put(UPLOADS, "uploads/a/big.bin", b"")
    doc = p.documents.begin(document_id="d" * 32, source_bucket=UPLOADS,
                            source_key="uploads/a/big.bin", source_version_id=info.version_id,
                            source_etag=info.etag, plaintext_size=size, tenant="a")
    choice = ingest.select_key(p, doc.document_id)
    source = SourceRef(UPLOADS, "uploads/a/big.bin", info.version_id, info.etag, size)
    tracemalloc.start()
    try:
        written = ingest.encrypt_document(p, doc.document_id, source, choice.key_id)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(written, ObjectInfo) and s3.completed
    assert written.size == s3.bytes > size  # the whole package went out in parts
    assert s3.parts == -(-s3.bytes // (8 * MIB))
    print(f"encrypt 256 MiB: traced peak {peak / MIB:.1f} MiB")
    assert peak < 24 * MIB, f"peak {peak / MIB:.1f} MiB"
