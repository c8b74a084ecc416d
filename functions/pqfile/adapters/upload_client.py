"""The client side of ``pqfile upload``: put a file under ``uploads/`` with the caller's
credentials and follow the ingest execution EventBridge starts for it.

The upload is a single PutObject up to one part, else a multipart upload in 8 MiB parts,
both written here (not boto3's transfer manager) so the answer carries the object's
version id, which names the ingest execution and, later, the document. Progress is
reported per chunk read.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from pqfile.config import ConfigurationError
from pqfile.errors import PQFileError, TransientError

#: Parts of a multipart upload (S3 allows 10,000: 80 GB at this size).
PART_SIZE = 8 * 1024 * 1024
#: Execution states that end an execution.
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
#: Executions looked at per poll (newest first): one upload's appears among the latest.
_RECENT = 100


class UploadRefusedError(PQFileError):
    """S3 refused the upload (access denied, no such bucket, ...)."""


@dataclass(frozen=True)
class Uploaded:
    bucket: str
    key: str
    version_id: str | None
    etag: str
    size: int


def session(profile: str | None, region: str | None) -> Any:
    """A boto3 session on the standard chain; a one-line error when it finds no credentials."""
    try:
        s = boto3.session.Session(profile_name=profile, region_name=region)
    except BotoCoreError as exc:  # an unknown --profile
        raise ConfigurationError(f"AWS profile: {exc}") from None
    if s.get_credentials() is None:
        raise ConfigurationError(
            "no AWS credentials found (environment, profile, SSO or role): "
            "aws configure, or --profile"
        )
    return s


def _client(s: Any, service: str, endpoint_url: str | None) -> Any:
    return s.client(
        service, endpoint_url=endpoint_url,
        config=Config(connect_timeout=10, read_timeout=120, retries={"max_attempts": 3}),
    )  # fmt: skip


def _refused(exc: ClientError, bucket: str) -> UploadRefusedError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "ClientError"))
    if code == "NoSuchBucket":
        return UploadRefusedError(f"upload refused: bucket {bucket} does not exist")
    if code in ("AccessDenied", "403", "Forbidden"):
        return UploadRefusedError(
            f"upload refused: AccessDenied on s3://{bucket} (your role may not write there)"
        )
    return UploadRefusedError(f"upload refused: {code}: {error.get('Message', '')}"[:300])


class _Counting:
    """A read-only file slice that reports bytes read (botocore may rewind it on retry)."""

    def __init__(self, f: IO[bytes], start: int, length: int, advance: Callable[[int], None]):
        self._f, self._start, self._length, self._advance = f, start, length, advance
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        left = self._length - self._pos
        n = left if n is None or n < 0 else min(n, left)
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        self._advance(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        back = self._pos - (base + offset)
        if back > 0:
            self._advance(-back)
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def __len__(self) -> int:
        return self._length


def upload_file(
    path: Path,
    bucket: str,
    key: str,
    *,
    session: Any,
    endpoint_url: str | None = None,
    advance: Callable[[int], None] | None = None,
    content_type: str | None = None,
) -> Uploaded:
    s3 = _client(session, "s3", endpoint_url)
    size = path.stat().st_size
    tick = advance or (lambda n: None)
    extra = {"ContentType": content_type} if content_type else {}
    try:
        with path.open("rb") as f:
            if size <= PART_SIZE:
                resp = s3.put_object(
                    Bucket=bucket, Key=key, Body=_Counting(f, 0, size, tick),
                    ContentLength=size, **extra,
                )  # fmt: skip
            else:
                resp = _multipart(s3, f, size, bucket, key, tick, extra)
    except NoCredentialsError:
        raise ConfigurationError("no AWS credentials found: aws configure, or --profile") from None
    except ClientError as exc:
        raise _refused(exc, bucket) from None
    except BotoCoreError as exc:
        raise TransientError(f"upload failed: {type(exc).__name__}") from None
    return Uploaded(bucket, key, resp.get("VersionId"), str(resp.get("ETag", "")).strip('"'), size)


def _multipart(
    s3: Any, f: IO[bytes], size: int, bucket: str, key: str,
    tick: Callable[[int], None], extra: dict[str, str],
) -> dict[str, Any]:  # fmt: skip
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, size, PART_SIZE), start=1):
            length = min(PART_SIZE, size - start)
            part = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                Body=_Counting(f, start, length, tick), ContentLength=length,
            )  # fmt: skip
            parts.append({"PartNumber": number, "ETag": part["ETag"]})
        return dict(
            s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        )
    except BaseException:
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            pass  # the bucket's lifecycle aborts it after a day
        raise


@dataclass(frozen=True)
class IngestResult:
    status: str  # SUCCEEDED, FAILED, TIMED_OUT, ABORTED
    execution_arn: str
    output: dict[str, Any]
    #: The error the failed step raised (its errorType), and its message, on failure.
    error: str | None = None
    cause: str | None = None
    failed_step: str | None = None


class IngestFollower:
    """Finds the ingest execution of one upload (its input names the key and version)
    and waits for it to end."""

    def __init__(self, session: Any, state_machine_arn: str, endpoint_url: str | None) -> None:
        self._sfn = _client(session, "stepfunctions", endpoint_url)
        self._arn = state_machine_arn
        self._seen: set[str] = set()

    def find(
        self, uploaded: Uploaded, since: dt.datetime, exclude: frozenset[str] = frozenset()
    ) -> str | None:
        try:
            page = self._sfn.list_executions(stateMachineArn=self._arn, maxResults=_RECENT)
            for e in page.get("executions", []):
                arn = str(e["executionArn"])
                started = e.get("startDate")
                if arn in self._seen or arn in exclude or (
                    isinstance(started, dt.datetime) and started < since - dt.timedelta(minutes=1)
                ):
                    continue
                desc = self._sfn.describe_execution(executionArn=arn)
                detail = json.loads(desc.get("input") or "{}").get("detail", {})
                obj, bucket = detail.get("object", {}), detail.get("bucket", {}).get("name")
                if obj.get("key") != uploaded.key or bucket not in (None, uploaded.bucket):
                    self._seen.add(arn)
                    continue
                if uploaded.version_id and obj.get("version-id") not in (
                    None, uploaded.version_id,
                ):  # fmt: skip
                    self._seen.add(arn)
                    continue
                return arn
        except ClientError as exc:
            raise self._refused(exc) from None
        except BotoCoreError as exc:
            raise TransientError(f"step functions: {type(exc).__name__}") from None
        return None

    def wait(self, execution_arn: str, timeout: float, poll: float = 0.5) -> IngestResult | None:
        deadline = time.monotonic() + timeout
        try:
            while True:
                desc = self._sfn.describe_execution(executionArn=execution_arn)
                status = str(desc["status"])
                if status in TERMINAL:
                    return self._result(execution_arn, self._settled(execution_arn, desc))
                if time.monotonic() > deadline:
                    return None
                time.sleep(poll)
        except ClientError as exc:
            raise self._refused(exc) from None
        except BotoCoreError as exc:
            raise TransientError(f"step functions: {type(exc).__name__}") from None

    def _settled(self, arn: str, desc: dict[str, Any], tries: int = 20) -> dict[str, Any]:
        """The emulator (moto 5.2.5) sets SUCCEEDED a moment before the output: re-read
        briefly until it is there (on AWS it is there at once)."""
        while desc["status"] == "SUCCEEDED" and desc.get("output") is None and tries > 0:
            time.sleep(0.1)
            desc = self._sfn.describe_execution(executionArn=arn)
            tries -= 1
        return desc

    def _result(self, arn: str, desc: dict[str, Any]) -> IngestResult:
        status = str(desc["status"])
        output = json.loads(desc.get("output") or "{}") if status == "SUCCEEDED" else {}
        if status == "SUCCEEDED":
            return IngestResult(status, arn, output if isinstance(output, dict) else {})
        error, cause, step = desc.get("error"), desc.get("cause"), None
        # The Catch put the failing step's error at $.error of RecordFailure's input.
        history = self._sfn.get_execution_history(executionArn=arn, reverseOrder=True)
        for event in history.get("events", []):
            entered = event.get("stateEnteredEventDetails") or {}
            if entered.get("name") == "RecordFailure":
                state = json.loads(entered.get("input") or "{}")
                caught = state.get("error") or {}
                error = caught.get("Error") or error
                cause = _cause_message(caught.get("Cause")) or cause
                step = state.get("failed_step")
                break
        return IngestResult(status, arn, {}, error, cause, step)

    @staticmethod
    def _refused(exc: ClientError) -> PQFileError:
        error = exc.response.get("Error", {})
        return UploadRefusedError(
            f"cannot follow the ingest: {error.get('Code', 'ClientError')}: "
            f"{error.get('Message', '')}"[:300]
        )


def _cause_message(cause: Any) -> str | None:
    """A Lambda error's Cause is JSON with errorMessage; keep its first line."""
    if not isinstance(cause, str) or not cause:
        return None
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause.splitlines()[0][:300]
    if isinstance(parsed, dict) and parsed.get("errorMessage"):
        return str(parsed["errorMessage"]).splitlines()[0][:300]
    return cause.splitlines()[0][:300]
