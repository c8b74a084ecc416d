"""S3 as the rotation's PackageStore port: ranged GETs, and a new version of a package
whose head changed while its body is copied server-side (UploadPartCopy), never downloaded.

Packages whose body fits the first part are rewritten with a single conditional PutObject.
``rewrite`` streams a whole new version instead (the re-encryption: the committed version is
read once, transformed on the fly and written in bounded parts, adapters/s3_stream_write.py).
Every write is conditional (``If-Match`` on the ETag the caller saw): a concurrent change
raises TransientError for Step Functions to retry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pqfile.adapters.s3 import MIB, S3BlobStore, s3_errors
from pqfile.adapters.s3_stream_write import PART_SIZE, StreamingUpload
from pqfile.errors import TransientError
from pqfile.ports import ObjectInfo
from pqfile.usecases.common import PACKAGE_CONTENT_TYPE

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Bytes of the body uploaded together with the new header as the first multipart part:
#: S3's minimum part size (every part but the last must be at least 5 MiB), so a rewrap
#: reads and writes at most about 10 MiB through the function whatever the document's size
#: (the rest is UploadPartCopy, inside S3). Packages whose body fits are rewritten with a
#: single PutObject.
FIRST_PART = 5 * MIB
#: Largest UploadPartCopy range (S3 allows 5 GiB).
MAX_COPY_PART = 5 * 1024 * MIB
MAX_PARTS = 10_000


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _precondition_failed(exc: BaseException) -> bool:
    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in {"PreconditionFailed", "ConditionalRequestConflict"} or status in {409, 412}


class S3PackageStore:
    """ports.PackageStore on S3 (one client, shared with its S3BlobStore)."""

    def __init__(
        self, client: S3Client | None = None, *, first_part: int = FIRST_PART,
        part_size: int = PART_SIZE,
    ) -> None:  # fmt: skip
        self._blobs = S3BlobStore(client)
        self._first_part = first_part
        self._part_size = part_size
        #: The largest part buffer the last ``rewrite`` held (tests and the bench read it).
        self.last_peak_buffer = 0

    @property
    def s3(self) -> S3Client:
        return self._blobs.s3

    def stat(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        return self._blobs.stat(bucket, key, version_id)

    def read_range(
        self, bucket: str, key: str, version_id: str | None, start: int, length: int
    ) -> bytes:
        if length <= 0:
            return b""
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        what = f"read s3://{bucket}/{key}"
        with s3_errors(what):
            resp = self.s3.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}", **extra
            )
            data: bytes = resp["Body"].read()
        return data[:length]

    def rewrite(
        self,
        bucket: str,
        key: str,
        *,
        source: ObjectInfo,
        transform: Callable[[Any, Any], object],
        if_match: str,
    ) -> ObjectInfo:
        """A new version of the object: ``transform(reader, sink)`` reads the committed
        ``source`` version as a stream and writes the new content to a sink uploaded in
        bounded parts; committed only if the object's ETag is still ``if_match``."""
        upload = StreamingUpload(self.s3, bucket, key, if_match=if_match,
                                 part_size=self._part_size)  # fmt: skip
        try:
            with self._blobs.open_read(bucket, key, source.version_id) as reader:
                transform(reader, upload)
        except BaseException:
            upload.abort()
            raise
        finally:
            self.last_peak_buffer = upload.peak_buffer
        return upload.complete()

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
        body_size = source.size - body_offset
        what = f"rewrap s3://{bucket}/{key}"
        first = min(body_size, self._first_part)
        head_part = new_head + self.read_range(bucket, key, source.version_id, body_offset, first)
        if len(head_part) != len(new_head) + first:
            raise TransientError(f"{what}: short read of the committed version")
        try:
            if first == body_size:
                with s3_errors(what):
                    resp: Mapping[str, Any] = self.s3.put_object(
                        Bucket=bucket,
                        Key=key,
                        Body=head_part,
                        ContentType=PACKAGE_CONTENT_TYPE,
                        IfMatch=_quoted(if_match),
                    )
            else:
                resp = self._multipart(bucket, key, source, body_offset + first, head_part,
                                       if_match)  # fmt: skip
        except TransientError:
            raise
        except Exception as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            if _precondition_failed(cause):
                raise TransientError(f"{what}: the object changed concurrently") from None
            raise
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=len(new_head) + body_size,
            etag=str(resp.get("ETag", "")).strip('"'),
            version_id=resp.get("VersionId"),
            content_type=PACKAGE_CONTENT_TYPE,
        )

    def _multipart(
        self,
        bucket: str,
        key: str,
        source: ObjectInfo,
        copy_from: int,
        head_part: bytes,
        if_match: str,
    ) -> Mapping[str, Any]:
        what = f"rewrap s3://{bucket}/{key}"
        copy_source: dict[str, str] = {"Bucket": bucket, "Key": key}
        if source.version_id:
            copy_source["VersionId"] = source.version_id
        remaining = source.size - copy_from
        span = max(self._first_part, -(-remaining // (MAX_PARTS - 1)))
        span = min(span, MAX_COPY_PART)
        with s3_errors(what):
            upload_id = self.s3.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=PACKAGE_CONTENT_TYPE
            )["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            with s3_errors(what):
                resp = self.s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=head_part
                )
                parts.append({"PartNumber": 1, "ETag": resp["ETag"]})
                start = copy_from
                while start < source.size:
                    end = min(source.size, start + span) - 1
                    number = len(parts) + 1
                    copied = self.s3.upload_part_copy(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource=copy_source,  # type: ignore[arg-type]
                        CopySourceRange=f"bytes={start}-{end}",
                        CopySourceIfMatch=_quoted(source.etag),
                    )
                    parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
                    start = end + 1
                # S3 checks If-Match atomically at completion; this early look also
                # covers stores that ignore it there (moto), and saves a doomed completion.
                current = self.s3.head_object(Bucket=bucket, Key=key)
                if str(current.get("ETag", "")).strip('"') != if_match.strip('"'):
                    raise TransientError(f"{what}: the object changed concurrently")
                done: Mapping[str, Any] = self.s3.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                    IfMatch=_quoted(if_match),
                )
            return done
        except BaseException:
            # Best effort: the bucket's lifecycle rule removes abandoned uploads.
            with contextlib.suppress(Exception):
                self.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise
