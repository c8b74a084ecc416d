"""A new version of an S3 object written from a stream, in bounded parts (the rotation's
re-encryption: the package is decrypted and encrypted again on the fly, never held whole).

``StreamingUpload`` is a write-only sink: it fills one part buffer (``part_size``, at least
S3's 5 MiB minimum) and uploads it as a multipart part when full, so the function holds at
most one part whatever the object's size. An object that fits one part is written with a
single PutObject. Both writes are conditional (``If-Match`` on the ETag the caller saw): a
concurrent change raises TransientError for Step Functions to retry. ``abort`` drops a
started multipart upload (the bucket's lifecycle rule removes any it misses).

``NumberedPartUpload`` is the other shape: parts numbered by the caller and uploaded from
several threads (the parallel ingest, usecases/ingest_parallel.py).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pqfile.adapters.s3 import MIB, s3_errors
from pqfile.errors import StorageError, TransientError
from pqfile.ports import ObjectInfo
from pqfile.usecases.common import PACKAGE_CONTENT_TYPE

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Bytes buffered per multipart part: the function's memory for the written side.
PART_SIZE = 8 * MIB
#: S3's minimum size of every part but the last.
MIN_PART = 5 * MIB
MAX_PARTS = 10_000


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def precondition_failed(exc: BaseException) -> bool:
    """Whether an S3 error is a failed ``If-Match`` (the object changed meanwhile)."""
    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in {"PreconditionFailed", "ConditionalRequestConflict"} or status in {409, 412}


class StreamingUpload:
    """Write a new version of ``bucket/key`` from ``write`` calls, in bounded parts."""

    def __init__(
        self, client: S3Client, bucket: str, key: str, *, if_match: str,
        part_size: int = PART_SIZE,
    ) -> None:  # fmt: skip
        if part_size < MIN_PART:
            raise ValueError(f"part_size must be at least {MIN_PART} bytes")
        self._s3 = client
        self._bucket, self._key = bucket, key
        self._if_match = if_match
        self._part_size = part_size
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._size = 0
        self._what = f"re-encrypt s3://{bucket}/{key}"
        #: The largest part buffer held at once (the bench and tests read it).
        self.peak_buffer = 0

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: Any, /) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        pos = 0
        while pos < n:
            take = min(n - pos, self._part_size - len(self._buf))
            self._buf += view[pos : pos + take]
            pos += take
            self.peak_buffer = max(self.peak_buffer, len(self._buf))
            if len(self._buf) >= self._part_size:
                self._flush()
        self._size += n
        return n

    def _flush(self) -> None:
        if self._upload_id is None:
            with s3_errors(self._what):
                self._upload_id = self._s3.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key, ContentType=PACKAGE_CONTENT_TYPE
                )["UploadId"]
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StorageError(f"{self._what}: more than {MAX_PARTS} parts")
        with s3_errors(self._what):
            resp = self._s3.upload_part(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                PartNumber=number, Body=bytes(self._buf),
            )  # fmt: skip
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"]})
        self._buf = bytearray()

    def complete(self) -> ObjectInfo:
        """Commit the object (conditionally); TransientError if it changed meanwhile."""
        try:
            resp = self._commit()
        except TransientError:
            self.abort()
            raise
        except Exception as exc:
            self.abort()
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            if precondition_failed(cause):
                raise TransientError(f"{self._what}: the object changed concurrently") from None
            raise
        return ObjectInfo(
            bucket=self._bucket,
            key=self._key,
            size=self._size,
            etag=str(resp.get("ETag", "")).strip('"'),
            version_id=resp.get("VersionId"),
            content_type=PACKAGE_CONTENT_TYPE,
        )

    def _commit(self) -> Mapping[str, Any]:
        if self._upload_id is None:
            with s3_errors(self._what):
                single: Mapping[str, Any] = self._s3.put_object(
                    Bucket=self._bucket, Key=self._key, Body=bytes(self._buf),
                    ContentType=PACKAGE_CONTENT_TYPE, IfMatch=_quoted(self._if_match),
                )  # fmt: skip
            self._buf = bytearray()
            return single
        if self._buf or not self._parts:
            self._flush()
        with s3_errors(self._what):
            # S3 checks If-Match atomically at completion; this early look also covers
            # stores that ignore it there (moto).
            current = self._s3.head_object(Bucket=self._bucket, Key=self._key)
            if str(current.get("ETag", "")).strip('"') != self._if_match.strip('"'):
                raise TransientError(f"{self._what}: the object changed concurrently")
            done: Mapping[str, Any] = self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
                IfMatch=_quoted(self._if_match),
            )
        return done

    def abort(self) -> None:
        """Drop what was uploaded (best effort)."""
        self._buf = bytearray()
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                self._s3.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
                )
            self._upload_id = None


class NumberedPartUpload:
    """A multipart upload whose parts the caller numbers (ports.PartedUpload): several
    worker threads upload parts of one package in any order (the parallel ingest). Each
    part is one UploadPart of the caller's buffer, so memory is the callers' buffers only.
    The upload is created at once; ``abort`` drops it (the bucket's lifecycle rule removes
    any it misses)."""

    def __init__(self, client: S3Client, bucket: str, key: str, *, content_type: str) -> None:
        self._s3 = client
        self._bucket, self._key = bucket, key
        self._content_type = content_type
        self._what = f"write s3://{bucket}/{key}"
        self._lock = threading.Lock()
        self._parts: dict[int, tuple[str, int]] = {}  # number -> (ETag, size)
        with s3_errors(self._what):
            self._upload_id: str | None = client.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=content_type
            )["UploadId"]

    def upload_part(self, number: int, data: bytes | bytearray | memoryview) -> None:
        if not 1 <= number <= MAX_PARTS:
            raise StorageError(f"{self._what}: part number {number} out of 1..{MAX_PARTS}")
        if self._upload_id is None:
            raise StorageError(f"{self._what}: the upload was aborted")
        with s3_errors(self._what):
            resp = self._s3.upload_part(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                PartNumber=number, Body=data,  # type: ignore[arg-type]  # any bytes-like
            )  # fmt: skip
        with self._lock:
            self._parts[number] = (resp["ETag"], len(data))

    def complete(self) -> ObjectInfo:
        if self._upload_id is None:
            raise StorageError(f"{self._what}: the upload was aborted")
        numbers = sorted(self._parts)
        if numbers != list(range(1, len(numbers) + 1)) or not numbers:
            raise StorageError(f"{self._what}: parts missing before completion")
        parts = [{"PartNumber": n, "ETag": self._parts[n][0]} for n in numbers]
        with s3_errors(self._what):
            resp = self._s3.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )  # fmt: skip
        self._upload_id = None
        return ObjectInfo(
            bucket=self._bucket,
            key=self._key,
            size=sum(size for _, size in self._parts.values()),
            etag=str(resp.get("ETag", "")).strip('"'),
            version_id=resp.get("VersionId"),
            content_type=self._content_type,
        )

    def abort(self) -> None:
        """Drop every part uploaded (best effort)."""
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            with contextlib.suppress(Exception):
                self._s3.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=upload_id
                )
