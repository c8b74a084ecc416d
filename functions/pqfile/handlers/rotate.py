"""rotate-keys workflow steps (statemachines/rotate-keys.asl.json); use cases in
pqfile.usecases.rotation.

Entry points (one Lambda function each, sharing this module and one role):

- ``maintain_handler``  MaintainPool:   ``{}`` -> ``{"queued", "created", "rotations": [...]}``
- ``plan_handler``      PlanRewrap:     ``{"rotation_id"}`` -> ``{..., "documents": [...], "more"}``
- ``rewrap_handler``    RewrapDocument: ``{"rotation_id", "document_id"}`` -> outcome
- ``finish_handler``    FinishRotation: ``{"rotation_id"}`` -> the completed run
- ``failure_handler``   RecordFailure:  ``{"error": {...}, "state": {...}}`` -> audited failure

Environment (docs/CONTRACTS.md): the database and KMS variables, ``PQFILE_ENCRYPTED_BUCKET``,
and the pool policy: ``PQFILE_ROTATION_SUITES`` (comma-separated; default the default suite),
``PQFILE_POOL_TARGET`` (100), ``PQFILE_POOL_FLOOR`` (80), ``PQFILE_KEY_MAX_AGE_DAYS`` (30),
``PQFILE_KEY_MAX_DOCUMENTS`` (1,000,000), ``PQFILE_KEY_MAX_BYTES`` (1 TiB),
``PQFILE_REWRAP_BATCH`` (100 documents per planned batch).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from pqfile.adapters.s3 import MIB, s3_errors
from pqfile.config import ConfigurationError, Settings
from pqfile.errors import TransientError
from pqfile.handlers._runtime import (
    clock,
    logger,
    metrics,
    publish_pool_size,
    request_id,
    timed,
    tracer,
)
from pqfile.ports import ObjectInfo
from pqfile.usecases.common import PACKAGE_CONTENT_TYPE
from pqfile.usecases.rotation import (
    ROTATION_ACTOR,
    Rotation,
    finish_rotation,
    maintain_pool,
    plan_rewrap,
    rewrap_document,
    rotation_id_from,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from pqfile.keys.policy import PoolPolicy

#: Bytes of the body uploaded together with the new header as the first multipart part
#: (every part but the last must be at least 5 MiB); packages whose body fits are
#: rewritten with a single PutObject.
FIRST_PART = 8 * MIB
#: Largest UploadPartCopy range (S3 allows 5 GiB).
MAX_COPY_PART = 5 * 1024 * MIB
MAX_PARTS = 10_000


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _precondition_failed(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in {"PreconditionFailed", "ConditionalRequestConflict"} or status in {409, 412}


class S3PackageStore:
    """rotation.PackageStore on S3: ranged GETs, and UploadPartCopy for the unchanged body."""

    def __init__(self, client: S3Client | None = None, *, first_part: int = FIRST_PART) -> None:
        self._client = client
        self._first_part = first_part

    @property
    def s3(self) -> S3Client:
        if self._client is None:
            from pqfile.adapters.aws import s3_client

            self._client = s3_client()
        return self._client

    def stat(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        from pqfile.adapters.s3 import S3BlobStore

        return S3BlobStore(self.s3).stat(bucket, key, version_id)

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


# --- configuration -----------------------------------------------------------------------------


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, not {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name}={raw} is out of range")
    return value


def policy_from_env(env: Mapping[str, str] | None = None) -> PoolPolicy:
    from pqfile.keys.policy import PoolPolicy

    e = os.environ if env is None else env
    target = int(_number(e, "PQFILE_POOL_TARGET", 100, 1))
    floor = int(_number(e, "PQFILE_POOL_FLOOR", min(80, target), 0))
    try:
        return PoolPolicy(
            target_active=target,
            floor_active=floor,
            max_age=dt.timedelta(days=_number(e, "PQFILE_KEY_MAX_AGE_DAYS", 30, 0)),
            max_documents=int(_number(e, "PQFILE_KEY_MAX_DOCUMENTS", 1_000_000, 1)),
            max_bytes=int(_number(e, "PQFILE_KEY_MAX_BYTES", float(1 << 40), 1)),
        )
    except ValueError as exc:
        raise ConfigurationError(f"pool policy: {exc}") from None


def suites_from_env(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    e = os.environ if env is None else env
    default = e.get("PQFILE_DEFAULT_SUITE", "xwing").strip() or "xwing"
    raw = e.get("PQFILE_ROTATION_SUITES", "").strip() or default
    suites = tuple(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
    for suite in suites:
        if suite not in ("xwing", "mlkem768"):
            raise ConfigurationError(f"PQFILE_ROTATION_SUITES: unknown suite {suite!r}")
    return suites


_lock = threading.Lock()
_rotation: Rotation | None = None


def rotation() -> Rotation:
    """The process-wide Rotation (adapters created on first use)."""
    global _rotation
    if _rotation is None:
        with _lock:
            if _rotation is None:
                _rotation = _build()
    return _rotation


def _build() -> Rotation:
    from pqfile.adapters.kms import KmsSeedProtector
    from pqfile.adapters.postgres.audit import PostgresAuditLog
    from pqfile.adapters.postgres.connection import Database
    from pqfile.adapters.postgres.documents import PostgresDocumentRepository
    from pqfile.adapters.postgres.keystore import PostgresKeyStore

    settings = Settings.from_env()
    settings.require("encrypted_bucket", "kms_key_id")
    db = Database.from_env()
    return Rotation(
        keys=PostgresKeyStore(
            db, KmsSeedProtector.from_env(), policy=policy_from_env(), actor=ROTATION_ACTOR
        ),
        documents=PostgresDocumentRepository(db),
        packages=S3PackageStore(),
        audit=PostgresAuditLog(db),
        encrypted_bucket=settings.encrypted_bucket,
        suites=suites_from_env(),
        batch_size=int(_number(os.environ, "PQFILE_REWRAP_BATCH", 100, 1)),
    )


def reset() -> None:
    """Forget the cached adapters (tests)."""
    global _rotation
    _rotation = None


def _active_keys(r: Rotation, suites: Mapping[str, int]) -> dict[str, int]:
    from pqfile.keys.pool import KeyPool

    if not isinstance(r.keys, KeyPool):
        return {}
    counts = r.keys.status_summary()["suites"]
    return {s: int(counts.get(s, {}).get("counts", {}).get("active", 0)) for s in suites}


# --- entry points ------------------------------------------------------------------------------


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def maintain_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = clock()
    r = rotation()
    result = maintain_pool(r, request_id=request_id(context))
    # KeyPoolActiveKeys per maintained suite, after the refill (the key-pool-low alarm).
    active = _active_keys(r, result["created"])
    for suite, count in active.items():
        publish_pool_size(suite, count)
    result["active"] = active
    metrics.add_metric(name="KeysQueuedForRotation", unit=MetricUnit.Count,
                       value=len(result["queued"]))  # fmt: skip
    metrics.add_metric(name="KeysCreated", unit=MetricUnit.Count,
                       value=sum(result["created"].values()))  # fmt: skip
    logger.info(
        "pool maintained",
        extra={
            "queued": len(result["queued"]),
            "keys_created": result["created"],
            "rotations": len(result["rotations"]),
        },
    )
    return timed(result, *started)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def plan_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = clock()
    result = plan_rewrap(rotation(), rotation_id_from(event), request_id=request_id(context))
    logger.info(
        "rewrap planned",
        extra={
            "rotation_id": result["rotation_id"],
            "documents": len(result["documents"]),
            "more": result["more"],
        },
    )
    return timed(result, *started)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def rewrap_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = clock()
    document_id = event.get("document_id") if isinstance(event, dict) else None
    if not isinstance(document_id, str) or not document_id:
        from pqfile.errors import InvalidEventError

        raise InvalidEventError("document_id is missing")
    result = rewrap_document(
        rotation(), rotation_id_from(event), document_id, request_id=request_id(context)
    )
    if result.outcome == "rewrapped":
        metrics.add_metric(name="DocumentsRewrapped", unit=MetricUnit.Count, value=1)
    logger.info("rewrap", extra={"document_id": document_id, "outcome": result.outcome})
    return timed(result.to_dict(), *started)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def finish_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = clock()
    result = finish_rotation(rotation(), rotation_id_from(event), request_id=request_id(context))
    metrics.add_metric(name="KeysExpired", unit=MetricUnit.Count, value=1)
    logger.info("rotation finished", extra={"rotation_id": result["rotation_id"]})
    return timed(result, *started)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def failure_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Catch path: audit the failed step (error type only, never its message)."""
    started = clock()
    error = event.get("error") if isinstance(event, dict) else None
    error_type = str(error.get("Error", "Unknown"))[:128] if isinstance(error, dict) else "Unknown"
    state = event.get("state") if isinstance(event, dict) else None
    rotation_id = state.get("rotation_id") if isinstance(state, dict) else None
    r = rotation()
    r.audit.append(
        operation="key.rotation_failed",
        outcome="failure",
        actor=r.actor,
        request_id=str(event.get("execution") or "") or None,
        details={"error": error_type, "rotation_id": rotation_id},
    )
    metrics.add_metric(name="RotationFailures", unit=MetricUnit.Count, value=1)
    logger.warning("rotation failed", extra={"error": error_type, "rotation_id": rotation_id})
    return timed({"error": error_type, "rotation_id": rotation_id}, *started)
