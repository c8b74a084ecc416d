"""S3: refuse a presigned request once it has expired, as S3 does.

moto 5.2.5 serves a presigned URL forever: it never compares the query's `X-Amz-Date` plus
`X-Amz-Expires` (SigV4) or `Expires` (SigV2, epoch seconds) with the clock. S3 answers 403
`AccessDenied` "Request has expired" after that instant. Sealed retrieval hands out
presigned GETs valid for minutes (docs/OPERATIONS.md, "Retrieval"), and its tests check
that such a URL stops working; this patch makes the emulator answer as S3 does for any
object request whose query carries an expired presigned signature. Requests signed in
headers (every SDK call) are unchanged.

Upstream-worthy: yes (a fidelity gap: expiry is part of what a presigned URL promises).
"""

from __future__ import annotations

import calendar
import time
from typing import Any
from urllib.parse import parse_qs, urlparse

from devstack.moto_patches._internals import Runtime, checking, parameters

_EXPIRED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
)


def check() -> None:
    with checking(__name__) as expect:
        import inspect

        from moto.s3.responses import S3Response

        expect(
            parameters(S3Response.key_response) == ["self", "request", "full_url", "headers"],
            "moto.s3 S3Response.key_response(self, request, full_url, headers) changed",
        )
        expect(
            "key_response" in inspect.getsource(S3Response.key_dispatch),
            "moto.s3 S3Response.key_dispatch no longer calls key_response",
        )
        source = inspect.getsource(S3Response)
        expect(
            "X-Amz-Expires" not in source,
            "moto.s3 S3Response now reads X-Amz-Expires itself: this patch may be obsolete",
        )


def expires_at(query: dict[str, list[str]]) -> float | None:
    """When a presigned request expires (epoch seconds), or None if it is not presigned."""
    date, lifetime = query.get("X-Amz-Date"), query.get("X-Amz-Expires")
    if date and lifetime:
        try:
            signed = calendar.timegm(time.strptime(date[0], "%Y%m%dT%H%M%SZ"))
            return float(signed + int(lifetime[0]))
        except ValueError:
            return None
    v2 = query.get("Expires")
    if v2 and "Signature" in query:
        try:
            return float(int(v2[0]))
        except ValueError:
            return None
    return None


def apply(runtime: Runtime) -> None:
    from moto.s3.responses import S3Response

    original = S3Response.key_response

    def key_response(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        deadline = expires_at(parse_qs(urlparse(full_url).query))
        if deadline is not None and time.time() > deadline:
            return 403, {"Content-Type": "application/xml"}, _EXPIRED
        return original(self, request, full_url, headers)

    S3Response.key_response = key_response  # type: ignore[method-assign]
