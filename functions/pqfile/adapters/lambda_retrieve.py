"""The client side of retrieval (``pqfile retrieve``): invoke the retrieve function with
boto3, fetch a URL delivery, and read the body range of a sealed delivery. The function may
take minutes to decrypt a large document, so the invoke waits without a read timeout and is
never retried (a retry would decrypt, and audit, twice).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
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


def _check_url(url: str) -> None:
    if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise StorageError("the delivery URL is not https")


def download(url: str, sink: Writable, advance: Callable[[int], None] | None = None) -> int:
    """GET a presigned URL (https, or http to the local stack) into ``sink``."""
    _check_url(url)
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


class RangeReader:
    """Exactly ``length`` bytes of an HTTP body, read on demand (``readinto``).

    A body that ends early or breaks off raises StorageError / TransientError naming how
    far it got, never a short read that a caller could mistake for the end."""

    def __init__(self, resp: http.client.HTTPResponse, length: int) -> None:
        self._resp = resp
        self.length = length
        self.count = 0

    def readinto(self, buffer: memoryview, /) -> int:
        want = min(len(buffer), self.length - self.count)
        if want <= 0:
            return 0
        try:
            n = self._resp.readinto(buffer[:want])
        except (OSError, http.client.HTTPException) as exc:
            raise TransientError(
                f"the body download broke off after {self.count} of {self.length} bytes "
                f"({type(exc).__name__}): nothing written"
            ) from None
        if not n:
            raise StorageError(
                f"the body ended after {self.count} of {self.length} bytes (truncated): "
                "nothing written"
            )
        self.count += n
        return n

    def discard(self) -> None:
        """Read and drop all ``length`` bytes."""
        view = memoryview(bytearray(min(self.length, _CHUNK) or 1))
        while self.readinto(view):
            pass


@contextlib.contextmanager
def open_range(url: str, offset: int, length: int) -> Iterator[RangeReader]:
    """GET bytes ``offset .. offset+length-1`` of a presigned URL (a sealed delivery's body).

    Sends ``Range: bytes=A-B``. A 206 must start at ``offset``; a server that ignores the
    range (200) has the first ``offset`` bytes skipped. HTTP 403 is an expired or foreign
    URL, 416 a stored object shorter than the answer says: one-line StorageErrors.
    """
    _check_url(url)
    if offset < 0 or length <= 0:
        raise StorageError(f"the answer names an impossible body range ({offset}, {length})")
    request = urllib.request.Request(  # noqa: S310 (checked above)
        url, headers={"Range": f"bytes={offset}-{offset + length - 1}"}
    )
    try:
        resp = urllib.request.urlopen(request, timeout=120)  # noqa: S310 (checked above)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 403:
            raise StorageError(
                "the body URL was refused (HTTP 403): it has expired (the answer's "
                "expires_in) or is not valid here; run pqfile retrieve again"
            ) from None
        if exc.code == 416:
            raise StorageError(
                "the stored package is shorter than the answer says (HTTP 416)"
            ) from None
        raise StorageError(f"the body URL answered HTTP {exc.code}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise TransientError(f"download failed: {type(exc).__name__}") from None
    with resp:
        if resp.status == 206:
            content_range = resp.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise StorageError(
                    f"the body URL answered another range ({content_range[:80]!r})"
                )
        elif resp.status == 200:  # the range was ignored: skip to the body
            RangeReader(resp, offset).discard()
        else:
            raise StorageError(f"the body URL answered HTTP {resp.status}")
        yield RangeReader(resp, length)
