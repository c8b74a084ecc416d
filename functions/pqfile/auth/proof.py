"""An identity proof, checked before anything is sent (docs/CONTRACTS.md, "Caller identity
proofs").

A proof is the caller's own SigV4-signed ``sts:GetCallerIdentity`` request, as HashiCorp
Vault's AWS auth method uses it: the caller signs, the service sends, and STS answers with
the principal whose credentials signed. The service cannot verify the signature itself (it
does not know the caller's secret key); STS does. So everything else is checked here first,
without a network call, so that a proof can make the service send exactly one kind of
request to exactly one host:

- method ``POST``, URL exactly the configured endpoint (``StsEndpoint.url``), body exactly
  :data:`STS_BODY` (GetCallerIdentity, nothing else);
- only the headers of :data:`ALLOWED_HEADERS`, each once, printable ASCII, under caps;
- ``Authorization`` is ``AWS4-HMAC-SHA256`` for the ``sts`` service in the endpoint's region,
  and its SignedHeaders cover every other header present, including the audience and the
  request-hash headers, so STS refuses the proof if either was changed;
- the audience is this deployment's, the request hash is the request's being served, and
  ``X-Amz-Date`` is within ``max_age`` of now, in both directions.

What SigV4 itself is: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pqfile.auth.endpoint import StsEndpoint
from pqfile.auth.errors import IdentityProofError, ProofRefusal

#: The one request a proof may make: STS GetCallerIdentity, API version 2011-06-15.
STS_BODY = "Action=GetCallerIdentity&Version=2011-06-15"
AUDIENCE_HEADER = "x-pqfile-audience"
REQUEST_HASH_HEADER = "x-pqfile-request-sha256"
#: Every header a proof may carry (lower case); all but authorization must be signed.
ALLOWED_HEADERS = frozenset(
    {
        "authorization",
        "content-type",
        "host",
        "x-amz-date",
        "x-amz-security-token",
        AUDIENCE_HEADER,
        REQUEST_HASH_HEADER,
    }
)
#: Headers a proof must carry, signed.
REQUIRED_SIGNED = frozenset(
    {"content-type", "host", "x-amz-date", AUDIENCE_HEADER, REQUEST_HASH_HEADER}
)
CONTENT_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8"}
)
#: The keys of the payload's ``identity_proof`` object.
PROOF_FIELDS = frozenset({"method", "url", "headers", "body"})

# Caps, checked before anything else looks at a value.
MAX_URL = 256
MAX_BODY = 256
MAX_HEADERS = 16
MAX_HEADER_NAME = 64
#: A session token with session tags runs to a few KiB.
MAX_HEADER_VALUE = 4096
MAX_HEADERS_TOTAL = 12 * 1024

#: What an audience may look like (a deployment name, or an ARN).
AUDIENCE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,127}")
DEFAULT_MAX_AGE = dt.timedelta(minutes=5)

_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 "
    r"Credential=(?P<key>[A-Z0-9]{16,128})/(?P<date>\d{8})/(?P<region>[a-z0-9-]{1,32})"
    r"/(?P<service>[a-z0-9-]{1,32})/aws4_request, ?"
    r"SignedHeaders=(?P<signed>[a-z0-9-]+(?:;[a-z0-9-]+)*), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


@dataclass(frozen=True)
class ProofPolicy:
    """What a proof must match: this deployment's endpoint and audience, and freshness."""

    endpoint: StsEndpoint
    audience: str
    max_age: dt.timedelta = DEFAULT_MAX_AGE

    def __post_init__(self) -> None:
        if not AUDIENCE_PATTERN.fullmatch(self.audience):
            raise ValueError("the audience must match " + AUDIENCE_PATTERN.pattern)
        if not dt.timedelta(0) < self.max_age <= dt.timedelta(minutes=15):
            raise ValueError("the proof lifetime must be between 1 second and 15 minutes")


@dataclass(frozen=True)
class StsRequest:
    """A checked proof: exactly the request to send, and what the checks learned."""

    url: str
    #: The proof's headers as the caller wrote them (names keep their case).
    headers: tuple[tuple[str, str], ...]
    body: bytes
    access_key_id: str
    signed_at: dt.datetime


def _refuse(reason: ProofRefusal, detail: str = "") -> IdentityProofError:
    return IdentityProofError(reason, detail)


def _string(value: object, cap: int) -> str:
    if not isinstance(value, str):
        raise _refuse(ProofRefusal.MALFORMED, "fields are strings")
    if len(value) > cap:
        raise _refuse(ProofRefusal.TOO_LARGE)
    return value


def _headers(raw: object) -> dict[str, tuple[str, str]]:
    """{lower-case name: (name as written, value)}; refuse duplicates and odd values."""
    if not isinstance(raw, Mapping):
        raise _refuse(ProofRefusal.MALFORMED, "headers is an object")
    if len(raw) > MAX_HEADERS:
        raise _refuse(ProofRefusal.TOO_LARGE, "too many headers")
    headers: dict[str, tuple[str, str]] = {}
    total = 0
    for name, value in raw.items():
        name = _string(name, MAX_HEADER_NAME)
        value = _string(value, MAX_HEADER_VALUE)
        total += len(name) + len(value)
        if total > MAX_HEADERS_TOTAL:
            raise _refuse(ProofRefusal.TOO_LARGE, "headers")
        lower = name.lower()
        if not _HEADER_NAME.fullmatch(name) or lower not in ALLOWED_HEADERS:
            raise _refuse(ProofRefusal.HEADER, "a header outside the allowed set")
        if lower in headers:
            raise _refuse(ProofRefusal.HEADER, "a header given twice")
        # Printable ASCII, no surrounding blanks: nothing a request line could split on.
        if not value or value != value.strip() or not all(" " <= c <= "~" for c in value):
            raise _refuse(ProofRefusal.HEADER, f"the {lower} header has a malformed value")
        headers[lower] = (name, value)
    return headers


def validate_proof(
    proof: object, policy: ProofPolicy, *, request_sha256: str, now: dt.datetime
) -> StsRequest:
    """Check a proof (the payload's ``identity_proof``, untrusted JSON) against ``policy``
    for the request whose canonical SHA-256 is ``request_sha256``, at ``now`` (aware).
    Return the request to send; raise IdentityProofError naming the first failed check."""
    if not _HEX64.fullmatch(request_sha256):
        raise ValueError("request_sha256 must be 64 lower-case hex digits")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if proof is None:
        raise _refuse(ProofRefusal.MISSING)
    if not isinstance(proof, Mapping) or set(proof) != PROOF_FIELDS:
        raise _refuse(ProofRefusal.MALFORMED, "an object of method, url, headers and body")
    method = _string(proof["method"], 16)
    url = _string(proof["url"], MAX_URL)
    body = _string(proof["body"], MAX_BODY)
    headers = _headers(proof["headers"])

    if method != "POST":
        raise _refuse(ProofRefusal.METHOD)
    _check_url(url, policy.endpoint)
    if body != STS_BODY:
        raise _refuse(ProofRefusal.ACTION)
    missing = REQUIRED_SIGNED - headers.keys()
    if missing:
        raise _refuse(ProofRefusal.UNSIGNED, "missing " + ", ".join(sorted(missing)))
    if headers["content-type"][1].lower() not in CONTENT_TYPES:
        raise _refuse(ProofRefusal.CONTENT_TYPE)
    if headers["host"][1].lower() != policy.endpoint.host_header:
        raise _refuse(ProofRefusal.HOST)

    if "authorization" not in headers:
        raise _refuse(ProofRefusal.AUTHORIZATION, "missing")
    auth = _AUTHORIZATION.fullmatch(headers["authorization"][1])
    if auth is None:
        raise _refuse(ProofRefusal.AUTHORIZATION)
    signed = auth["signed"].split(";")
    if signed != sorted(set(signed)):
        raise _refuse(ProofRefusal.AUTHORIZATION, "SignedHeaders not sorted and unique")
    unsigned = (headers.keys() - {"authorization"}) - set(signed)
    if unsigned:
        raise _refuse(ProofRefusal.UNSIGNED, ", ".join(sorted(unsigned)))
    if set(signed) - headers.keys():
        raise _refuse(ProofRefusal.AUTHORIZATION, "signs a header the proof does not carry")
    if auth["service"] != "sts" or auth["region"] != policy.endpoint.region:
        raise _refuse(ProofRefusal.SCOPE)

    amz_date = headers["x-amz-date"][1]
    if not _AMZ_DATE.fullmatch(amz_date):
        raise _refuse(ProofRefusal.DATE)
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise _refuse(ProofRefusal.DATE) from None
    if auth["date"] != amz_date[:8]:
        raise _refuse(ProofRefusal.SCOPE, "scope date")
    if signed_at < now - policy.max_age:
        raise _refuse(ProofRefusal.EXPIRED)
    if signed_at > now + policy.max_age:
        raise _refuse(ProofRefusal.FUTURE)

    if headers[AUDIENCE_HEADER][1] != policy.audience:
        raise _refuse(ProofRefusal.AUDIENCE)
    if not hmac.compare_digest(headers[REQUEST_HASH_HEADER][1], request_sha256):
        raise _refuse(ProofRefusal.REQUEST_HASH)

    return StsRequest(
        url=policy.endpoint.url,
        headers=tuple(headers[name] for name in sorted(headers)),
        body=STS_BODY.encode("ascii"),
        access_key_id=auth["key"],
        signed_at=signed_at,
    )


def _check_url(url: str, endpoint: StsEndpoint) -> None:
    """The URL must be the endpoint's, written the one way a client writes it (with or
    without the trailing ``/``): compared as text, so no parser can be talked into another
    host by user info, ports, backslashes or percent-escapes."""
    if url.lower() not in {endpoint.url, endpoint.url[:-1]}:
        raise _refuse(ProofRefusal.URL)
