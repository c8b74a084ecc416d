"""The client side of retrieval (``pqfile retrieve``): invoke the retrieve function with
boto3 and fetch a URL delivery. The function may take minutes to decrypt a large
document, so the invoke waits without a read timeout and is never retried (a retry would
decrypt, and audit, twice).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pqfile.errors import StorageError, TransientError
from pqfile.ports import Writable

#: Largest answer read (Lambda caps a synchronous answer at 6 MB).
MAX_ANSWER = 7 * 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class InvokeAnswer:
    payload: dict[str, Any]
    #: Lambda's FunctionError ("Unhandled") when the function raised; else None.
    function_error: str | None


def invoke_retrieve(
    function_name: str,
    payload: dict[str, Any],
    *,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
) -> InvokeAnswer:
    """One synchronous invoke of the retrieve function with the caller's credentials."""
    session = boto3.session.Session(profile_name=profile, region_name=region)
    client = session.client(
        "lambda",
        endpoint_url=endpoint_url,
        config=Config(read_timeout=900, connect_timeout=10, retries={"max_attempts": 1}),
    )
    try:
        resp = client.invoke(
            FunctionName=function_name, Payload=json.dumps(payload).encode("utf-8")
        )
        raw = resp["Payload"].read(MAX_ANSWER + 1)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        message = exc.response.get("Error", {}).get("Message", "")
        raise StorageError(f"lambda invoke refused: {code}: {message}"[:300]) from None
    except BotoCoreError as exc:
        raise TransientError(f"lambda invoke failed: {type(exc).__name__}") from None
    if len(raw) > MAX_ANSWER:
        raise StorageError("the retrieve function's answer is larger than Lambda allows")
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise StorageError("the retrieve function's answer is not JSON") from None
    if not isinstance(body, dict):
        raise StorageError("the retrieve function's answer is not a JSON object")
    return InvokeAnswer(body, resp.get("FunctionError"))


def download(url: str, sink: Writable, advance: Callable[[int], None] | None = None) -> int:
    """GET a presigned URL (https, or http to the local stack) into ``sink``."""
    if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise StorageError("the delivery URL is not https")
    total = 0
    try:
        with urllib.request.urlopen(url, timeout=120) as resp:  # noqa: S310 (checked above)
            while chunk := resp.read(_CHUNK):
                sink.write(chunk)
                total += len(chunk)
                if advance is not None:
                    advance(len(chunk))
    except OSError as exc:
        raise TransientError(f"download failed: {type(exc).__name__}") from None
    return total
