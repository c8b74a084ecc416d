"""The one error of caller identity verification, and its reasons (safe to audit)."""

from __future__ import annotations

import enum

from pqfile.errors import PQFileError


class ProofRefusal(enum.StrEnum):
    """Why a proof was refused. The values go into audit rows and answers as they are: each
    names a check, never anything the caller sent (no header value, no token, no key)."""

    MISSING = "proof_missing"  # no identity_proof in the payload
    MALFORMED = "proof_malformed"  # not {method, url, headers, body} of strings
    TOO_LARGE = "proof_too_large"  # a field over its cap (docs/CONTRACTS.md)
    METHOD = "method_not_post"
    URL = "url_not_allowed"  # not exactly the configured STS endpoint
    ACTION = "action_not_allowed"  # a body other than GetCallerIdentity, 2011-06-15
    HEADER = "header_not_allowed"  # unknown, duplicated or malformed header
    CONTENT_TYPE = "content_type_not_allowed"
    HOST = "host_mismatch"  # the Host header is not the endpoint's
    AUTHORIZATION = "authorization_malformed"  # not AWS4-HMAC-SHA256 for sts
    SCOPE = "credential_scope_mismatch"  # scope date or region not the request's
    UNSIGNED = "header_not_signed"  # a required or present header outside SignedHeaders
    AUDIENCE = "audience_mismatch"
    REQUEST_HASH = "request_hash_mismatch"  # the proof was made for another request
    DATE = "date_malformed"
    EXPIRED = "date_too_old"
    FUTURE = "date_in_future"
    STS_REFUSED = "sts_refused"  # STS answered 4xx (403: signature, expired token, ...)
    STS_REDIRECT = "sts_redirect"  # a 3xx: never followed
    STS_UNAVAILABLE = "sts_unavailable"  # timeout, connection error, 5xx
    STS_ANSWER = "sts_answer_malformed"  # 200 but not a GetCallerIdentityResponse we accept
    PRINCIPAL = "principal_not_supported"  # an ARN form we do not map to a principal


class IdentityProofError(PQFileError):
    """The caller's identity could not be verified. ``reason`` is a :class:`ProofRefusal`,
    safe to audit and to answer with; the message adds nothing the caller did not send."""

    def __init__(self, reason: ProofRefusal, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"identity proof refused: {reason.value}{suffix}")
