"""S3 as the BlobStore port (pqfile.ports).

Translates botocore failures into the project's errors: missing objects become
DocumentNotFoundError, throttling / 5xx / dropped connections TransientError (Step Functions
retries those), everything else StorageError.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError

from pqfile.adapters.aws import LazyS3
from pqfile.errors import DocumentNotFoundError, StorageError, TransientError
from pqfile.ports import ObjectInfo

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from pqfile.adapters.s3_stream_write import NumberedPartUpload

MIB = 1024 * 1024
_NOT_FOUND = {"404", "NoSuchKey", "NoSuchVersion", "NotFound", "NoSuchUpload"}
_TRANSIENT = {
    "500",
    "502",
    "503",
    "504",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
}


@contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """Translate botocore exceptions raised inside the block."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code == "NoSuchBucket":  # a deployment problem, not a missing document
            raise StorageError(f"{what}: {code}") from exc
        if code in _NOT_FOUND or status == "404":
            raise DocumentNotFoundError(f"{what}: not found") from exc
        if code in _TRANSIENT or status in _TRANSIENT:
            raise TransientError(f"{what}: {code or status}") from exc
        raise StorageError(f"{what}: {code or status}") from exc
    except (BotoConnectionError, ReadTimeoutError) as exc:
        raise TransientError(f"{what}: {type(exc).__name__}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"{what}: {type(exc).__name__}") from exc


def _version(version_id: str | None) -> dict[str, Any]:
    # S3 reports "null" for objects written before versioning was enabled.
    return {"VersionId": version_id} if version_id and version_id != "null" else {}


class _BodyReader(io.RawIOBase):
    """A GetObject body as a raw binary stream, translating mid-stream network errors."""

    def __init__(self, body: Any, what: str) -> None:
        self._body = body
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        with s3_errors(self._what):
            chunk: bytes = self._body.read(len(view))
        n = len(chunk)
        view[:n] = chunk
        return n

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            super().close()


class MultipartWriter:
    """Buffers up to ``part_size`` bytes, uploads full parts; small objects use one PUT.

    Memory stays at about one part whatever the object size. The upload is created lazily so
    a failure before the first part leaves nothing to abort.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        content_type: str,
        part_size: int = 8 * MIB,
        kms_key_id: str | None = None,
    ) -> None:
        if part_size < 5 * MIB:
            raise ValueError("S3 parts other than the last must be at least 5 MiB")
        self._s3 = client
        self._bucket = bucket
        self._key = key
        self._content_type = content_type
        self._part_size = part_size
        self._extra: dict[str, str] = {}
        if kms_key_id is not None:
            self._extra = {"ServerSideEncryption": "aws:kms"}
            if kms_key_id:
                self._extra["SSEKMSKeyId"] = kms_key_id
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._size = 0
        self._what = f"write s3://{bucket}/{key}"

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        self._buffer += data
        self._size += n
        while len(self._buffer) >= self._part_size:
            # Hand the full buffer over as the part; only the small overflow is copied.
            rest = self._buffer[self._part_size :]
            del self._buffer[self._part_size :]
            part, self._buffer = self._buffer, rest
            self._upload_part(part)
        return n

    def flush(self) -> None:  # file-like protocol; parts go out when full
        return None

    def _upload_part(self, data: bytes | bytearray) -> None:
        with s3_errors(self._what):
            if self._upload_id is None:
                created = self._s3.create_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    ContentType=self._content_type,
                    **self._extra,  # type: ignore[arg-type]
                )
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            resp = self._s3.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,  # type: ignore[arg-type]  # botocore accepts any bytes-like blob
            )
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"]})

    def complete(self) -> ObjectInfo:
        with s3_errors(self._what):
            if self._upload_id is None:
                resp: Mapping[str, Any] = self._s3.put_object(
                    Bucket=self._bucket,
                    Key=self._key,
                    Body=bytes(self._buffer),
                    ContentType=self._content_type,
                    **self._extra,  # type: ignore[arg-type]
                )
            else:
                if self._buffer:
                    self._upload_part(self._buffer)
                resp = self._s3.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
                )
        self._buffer = bytearray()
        return ObjectInfo(
            bucket=self._bucket,
            key=self._key,
            size=self._size,
            etag=str(resp.get("ETag", "")).strip('"'),
            version_id=resp.get("VersionId"),
            content_type=self._content_type,
        )

    def abort(self) -> None:
        """Best effort: drop the parts already uploaded (a lifecycle rule catches leftovers)."""
        self._buffer = bytearray()
        if self._upload_id is None:
            return
        try:
            self._s3.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )
        except (ClientError, BotoCoreError):
            pass
        self._upload_id = None


class S3BlobStore(LazyS3):
    """The BlobStore port on S3."""

    def __init__(self, client: S3Client | None = None, *, part_size: int = 8 * MIB) -> None:
        super().__init__(client)
        self._part_size = part_size

    def open_read(self, bucket: str, key: str, version_id: str | None = None) -> BinaryIO:
        what = f"read s3://{bucket}/{key}"
        with s3_errors(what):
            resp = self.s3.get_object(Bucket=bucket, Key=key, **_version(version_id))
        reader: Any = io.BufferedReader(_BodyReader(resp["Body"], what), buffer_size=1024 * 1024)
        return reader  # type: ignore[no-any-return]

    def open_read_range(
        self, bucket: str, key: str, version_id: str | None, start: int, length: int
    ) -> BinaryIO:
        """One ranged GET (RFC 9110 ``bytes=start-end``) as a stream."""
        what = f"read s3://{bucket}/{key}"
        if length <= 0:
            return io.BytesIO(b"")
        with s3_errors(what):
            resp = self.s3.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}",
                **_version(version_id),
            )  # fmt: skip
        reader: Any = io.BufferedReader(_BodyReader(resp["Body"], what), buffer_size=1024 * 1024)
        return reader  # type: ignore[no-any-return]

    def open_parts(self, bucket: str, key: str, *, content_type: str) -> NumberedPartUpload:
        from pqfile.adapters.s3_stream_write import NumberedPartUpload

        return NumberedPartUpload(self.s3, bucket, key, content_type=content_type)

    def stat(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        with s3_errors(f"head s3://{bucket}/{key}"):
            resp = self.s3.head_object(Bucket=bucket, Key=key, **_version(version_id))
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=int(resp["ContentLength"]),
            etag=str(resp.get("ETag", "")).strip('"'),
            version_id=resp.get("VersionId"),
            content_type=resp.get("ContentType") or "application/octet-stream",
        )

    def delete_version(self, bucket: str, key: str, version_id: str | None) -> None:
        """Delete one version (idempotent: S3 answers 204 for a version already gone)."""
        with s3_errors(f"delete s3://{bucket}/{key}"):
            self.s3.delete_object(Bucket=bucket, Key=key, **_version(version_id))

    def open_write(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str,
        kms_key_id: str | None = None,
        part_size: int | None = None,
    ) -> MultipartWriter:
        return MultipartWriter(
            self.s3,
            bucket,
            key,
            content_type=content_type,
            part_size=part_size or self._part_size,
            kms_key_id=kms_key_id,
        )

    def presign_get(self, bucket: str, key: str, version_id: str | None, seconds: int) -> str:
        params: dict[str, str] = {"Bucket": bucket, "Key": key, **_version(version_id)}
        with s3_errors(f"presign s3://{bucket}/{key}"):
            url: str = self.s3.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=seconds
            )
        return url

    def tag_version(
        self, bucket: str, key: str, version_id: str | None, tags: Mapping[str, str]
    ) -> None:
        tag_set = [{"Key": k, "Value": v} for k, v in tags.items()]
        with s3_errors(f"tag s3://{bucket}/{key}"):
            self.s3.put_object_tagging(
                Bucket=bucket,
                Key=key,
                Tagging={"TagSet": tag_set},  # type: ignore[typeddict-item]
                **_version(version_id),
            )


def s3_uri(bucket: str, key: str) -> str:
    """A printable URI; the key is percent-encoded so odd characters stay visible."""
    return f"s3://{bucket}/{quote(key, safe='/')}"
