"""S3: big objects stay on disk; CompleteMultipartUpload and full GetObject stream.

moto 5.2.5 keeps every object of more than about 5 MiB in a spooled temporary file on disk
(`FakeKey._value_buffer`), but two paths the pipeline uses bring whole objects into memory:

- `FakeMultipart.complete` joins the parts in a `bytearray`, copies every part into the
  checksum builder too (a CRC64NVME or CRC32 of the whole object by default), and returns
  `bytes(...)` copies of both: about four times the object in memory (16 GiB for a 4 GiB
  upload, which is what killed the emulator), before `FakeKey` writes it to its file;
- `S3Response.get_object` answers with `FakeKey.value`, the whole object read into memory.

With this patch:

- completion copies each part's file into the new object's file in 1 MiB chunks, computing
  the same ETag (MD5 of the parts' MD5s, `-N`) and the same checksum (moto's algorithm and
  type choices and fallbacks, `moto.s3.utils.compute_checksum`, incrementally), then hands
  the file itself to the new `FakeKey` (no copy); the errors (InvalidPart, EntityTooSmall,
  MalformedXML) are moto's, raised at the same points;
- a GetObject without a Range header of an object on disk streams it in 1 MiB chunks with
  `os.pread` on its own duplicate of the file descriptor (a concurrent read or a deletion of
  the object does not disturb it); the status and headers are moto's. Ranged reads are
  `s3_ranged_get`'s; objects still in memory (under 5 MiB) take moto's path unchanged.

Not covered (not on the pipeline's paths; each still holds one object in memory while it
runs): a single PutObject's request body, CopyObject and UploadPartCopy (`FakeKey.value`
of the source), SelectObjectContent, and ListObjectVersions (it deep-copies every version
through `FakeKey.__getstate__`, which reads `value`).

Upstream-worthy: yes. A memory gap only; answers, ETags and checksums are the same.
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import inspect
import os
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

from devstack.moto_patches._internals import Runtime, checking, parameters

CHUNK = 1024 * 1024
_local = threading.local()


def check() -> None:
    with checking(__name__) as expect:
        from moto.s3.models import FakeKey, FakeMultipart, MultipartChecksumBuilder, S3Backend
        from moto.s3.responses import S3Response
        from moto.s3.utils import compute_checksum

        value = FakeKey.__dict__.get("value")
        expect(
            isinstance(value, property)
            and value.fset is not None
            and "self._value_buffer.write(new_value)" in inspect.getsource(value.fset)
            and "self.contentsize = len(new_value)" in inspect.getsource(value.fset),
            "moto.s3 FakeKey.value's setter no longer writes into self._value_buffer and "
            "sets self.contentsize",
        )
        complete = inspect.getsource(FakeMultipart.complete)
        expect(
            parameters(FakeMultipart.complete) == ["self", "body"]
            and "total.extend(part.value)" in complete
            and "MultipartChecksumBuilder(checksum_algo, checksum_type)" in complete
            and "S3_UPLOAD_PART_MIN_SIZE" in complete
            and 'f"{full_etag.hexdigest()}-{count}"' in complete,
            "moto.s3 FakeMultipart.complete(self, body) no longer joins part.value with "
            "MultipartChecksumBuilder and an MD5-of-MD5s ETag",
        )
        builder = inspect.getsource(MultipartChecksumBuilder)
        expect(
            '"CRC64NVME"' in builder
            and '"FULL_OBJECT" if self.checksum_algorithm == "CRC64NVME" else "COMPOSITE"'
            in builder
            and "compute_checksum(part, self.checksum_algorithm, encode_base64=False)" in builder,
            "moto.s3 MultipartChecksumBuilder's defaults or composite rule changed",
        )
        expect(
            "value, etag, checksum_details = multipart.complete(body)"
            in inspect.getsource(S3Backend.complete_multipart_upload),
            "moto.s3 S3Backend.complete_multipart_upload no longer takes its value from "
            "multipart.complete(body)",
        )
        utils = inspect.getsource(compute_checksum)
        expect(
            all(a in utils for a in ('"SHA1"', '"CRC32C"', '"CRC32"', '"CRC64NVME"', "HAS_CRT")),
            "moto.s3.utils.compute_checksum's algorithms changed",
        )
        expect(
            "return 200, response_headers, key.value" in inspect.getsource(S3Response.get_object),
            "moto.s3 S3Response.get_object no longer answers with key.value",
        )


class _Spooled:
    """A finished object's file, handed to `FakeKey`'s value setter instead of bytes."""

    def __init__(self, file: Any, size: int) -> None:
        self.file = file
        self.size = size

    def __len__(self) -> int:
        return self.size


class _Digest:
    """`moto.s3.utils.compute_checksum(body, algorithm, encode_base64=False)`, fed in chunks."""

    def __init__(self, algorithm: str) -> None:
        from moto.s3.utils import HAS_CRT

        self._hash: Any = None
        self._crc = 0
        self._width = 4
        self._update: Any = binascii.crc32
        if algorithm == "SHA1":
            self._hash = hashlib.sha1(usedforsecurity=False)
        elif algorithm == "CRC32C":
            try:
                import crc32c  # type: ignore[import-not-found]

                self._update = lambda data, crc: crc32c.crc32c(data, crc)
            except ImportError:  # moto falls back to CRC32 too
                pass
        elif algorithm == "CRC32":
            pass
        elif algorithm == "CRC64NVME":
            if HAS_CRT:
                from awscrt import checksums  # type: ignore[import-not-found]

                self._update, self._width = checksums.crc64nvme, 8
        else:
            self._hash = hashlib.sha256(usedforsecurity=False)

    def update(self, data: bytes) -> None:
        if self._hash is not None:
            self._hash.update(data)
        else:
            self._crc = self._update(data, self._crc)

    def digest(self) -> bytes:
        if self._hash is not None:
            return bytes(self._hash.digest())
        return int(self._crc).to_bytes(self._width, "big")


def _chunks(key: Any) -> Iterator[bytes]:
    """A part's bytes, 1 MiB at a time, under its lock."""
    with key.lock:
        buffer = key._value_buffer
        buffer.seek(0)
        while block := buffer.read(CHUNK):
            yield block


def _complete(self: Any, body: Any) -> tuple[_Spooled, str, tuple[str, str, int] | None]:
    """`FakeMultipart.complete` with the parts joined in a temporary file, not in memory."""
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML
    from moto.s3.models import S3_UPLOAD_PART_MIN_SIZE
    from moto.s3.utils import compute_checksum
    from moto.settings import get_s3_default_key_buffer_size

    algorithm = self.metadata.get("x-amz-checksum-algorithm") or "CRC64NVME"
    kind = self.metadata.get("x-amz-checksum-type") or (
        "FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE"
    )
    decode_hex = codecs.getdecoder("hex_codec")
    md5s = bytearray()
    composite = bytearray()
    whole = _Digest(algorithm)
    out = tempfile.SpooledTemporaryFile(get_s3_default_key_buffer_size())
    size = 0
    try:
        last = None
        count = 0
        for pn, etag in body:
            part = self.parts.get(pn)
            part_etag = None
            if part is not None:
                part_etag = part.etag.replace('"', "")
                etag = etag.replace('"', "")
            if part is None or part_etag != etag:
                raise InvalidPart()
            if last is not None and last.contentsize < S3_UPLOAD_PART_MIN_SIZE:
                raise EntityTooSmall()
            md5s.extend(decode_hex(part_etag)[0])  # type: ignore[arg-type]
            digest = _Digest(algorithm) if kind == "COMPOSITE" else whole
            for block in _chunks(part):
                out.write(block)
                digest.update(block)
                size += len(block)
            if kind == "COMPOSITE":
                composite.extend(digest.digest())
            last = part
            count += 1
        if count == 0:
            raise MalformedXML
    except BaseException:
        out.close()
        raise
    full_etag = hashlib.md5(bytes(md5s), usedforsecurity=False)
    if kind == "COMPOSITE":
        checksum = (kind, compute_checksum(bytes(composite), algorithm).decode(), count)
    else:
        checksum = (kind, binascii.b2a_base64(whole.digest(), newline=False).decode(), 1)
    return _Spooled(out, size), f"{full_etag.hexdigest()}-{count}", checksum


class _FileBody:
    """An object's bytes streamed from its own duplicate of the key file's descriptor."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd: int | None = fd
        self._size = size

    def __iter__(self) -> Iterator[bytes]:
        offset = 0
        try:
            while offset < self._size and self._fd is not None:
                block = os.pread(self._fd, min(CHUNK, self._size - offset), offset)
                if not block:
                    break
                offset += len(block)
                yield block
        finally:
            self.close()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


def apply(runtime: Runtime) -> None:
    from moto.s3.models import FakeKey, FakeMultipart
    from moto.s3.responses import S3Response

    value = FakeKey.__dict__["value"]
    inner_get = S3Response.get_object

    def get_value(self: Any) -> Any:
        if getattr(_local, "stream", False):
            _local.stream = False
            with self.lock:
                buffer = self._value_buffer
                if getattr(buffer, "_rolled", False) and not buffer.closed:
                    buffer.flush()
                    return _FileBody(os.dup(buffer.fileno()), int(self.size))
        return value.fget(self)

    def set_value(self: Any, new_value: Any) -> None:
        if isinstance(new_value, _Spooled):
            self._value_buffer.close()
            self._value_buffer = new_value.file
            self.contentsize = new_value.size
            return
        value.fset(self, new_value)

    def get_object(self: Any) -> Any:
        if self.headers.get("range"):
            return inner_get(self)
        _local.stream = True
        try:
            return inner_get(self)
        finally:
            _local.stream = False

    FakeKey.value = property(get_value, set_value)  # type: ignore[assignment,method-assign]
    FakeMultipart.complete = _complete  # type: ignore[assignment,method-assign]
    S3Response.get_object = get_object  # type: ignore[method-assign]
