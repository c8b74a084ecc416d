"""The caller's side of an identity proof: sign an ``sts:GetCallerIdentity`` request with
the caller's own AWS credentials (docs/CONTRACTS.md, "Caller identity proofs").

botocore's SigV4 signer does the signing; the credentials come from the standard chain
(environment, profile, SSO, container or instance role) unless given. The proof is made
for one request (its canonical SHA-256, ``x-pqfile-request-sha256``), one deployment
(``x-pqfile-audience``) and one STS endpoint, and both extra headers are signed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from pqfile.auth import (
    AUDIENCE_HEADER,
    AUDIENCE_PATTERN,
    PROOF_FIELD,
    REQUEST_HASH_HEADER,
    STS_BODY,
    StsEndpoint,
    canonical_retrieve_request,
    retrieve_request_sha256,
)
from pqfile.config import ConfigurationError

CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
#: Header names as the proof writes them (the service compares them case-insensitively).
_AUDIENCE = "X-Pqfile-Audience"
_REQUEST_HASH = "X-Pqfile-Request-Sha256"
assert _AUDIENCE.lower() == AUDIENCE_HEADER and _REQUEST_HASH.lower() == REQUEST_HASH_HEADER


class _SigV4At(SigV4Auth):
    """SigV4 at a chosen instant (botocore's add_auth always signs at its own now)."""

    def __init__(
        self, credentials: Credentials | ReadOnlyCredentials, region: str, at: dt.datetime
    ) -> None:
        super().__init__(credentials, "sts", region)
        self._at = at

    def add_auth(self, request: AWSRequest) -> None:
        timestamp = self._at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        request.context["timestamp"] = timestamp
        request.headers["X-Amz-Date"] = timestamp
        token = self.credentials.token
        if token:
            request.headers["X-Amz-Security-Token"] = token
        signature = self.signature(
            self.string_to_sign(request, self.canonical_request(request)), request
        )
        signed = self.signed_headers(self.headers_to_sign(request))
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.scope(request)}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )


def default_credentials(
    profile: str | None = None, region: str | None = None
) -> ReadOnlyCredentials:
    """The caller's credentials from the standard chain, frozen (one consistent triple)."""
    credentials = boto3.session.Session(
        profile_name=profile, region_name=region
    ).get_credentials()
    if credentials is None:
        raise ConfigurationError(
            "no AWS credentials found (environment, profile, SSO or role): a proof needs them"
        )
    return credentials.get_frozen_credentials()


def build_identity_proof(
    request: Mapping[str, Any],
    *,
    audience: str,
    endpoint: StsEndpoint,
    credentials: Credentials | ReadOnlyCredentials,
    now: dt.datetime | None = None,
    request_sha256: str | None = None,
) -> dict[str, Any]:
    """The ``identity_proof`` object for the retrieve ``request`` (its payload fields), or
    for the request whose canonical hash is ``request_sha256`` (the admin function's,
    pqfile.usecases.admin.admin_request_sha256). Raise ValueError for an audience no
    deployment could be configured with."""
    if not AUDIENCE_PATTERN.fullmatch(audience):
        raise ValueError(f"the audience must match {AUDIENCE_PATTERN.pattern}")
    signed = AWSRequest(
        method="POST",
        url=endpoint.url,
        data=STS_BODY.encode("ascii"),
        headers={
            "Content-Type": CONTENT_TYPE,
            "Host": endpoint.host_header,
            _AUDIENCE: audience,
            _REQUEST_HASH: request_sha256 or retrieve_request_sha256(request),
        },
    )
    at = now if now is not None else dt.datetime.now(dt.UTC)
    _SigV4At(credentials, endpoint.region, at).add_auth(signed)
    return {
        "method": "POST",
        "url": endpoint.url,
        "headers": {name: str(value) for name, value in signed.headers.items()},
        "body": STS_BODY,
    }


def proof_payload(
    request: Mapping[str, Any],
    *,
    audience: str,
    endpoint: StsEndpoint,
    credentials: Credentials | ReadOnlyCredentials,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """A whole retrieve payload: the request's canonical fields plus ``identity_proof``."""
    canonical_retrieve_request(request)  # refuses values outside the canonical form
    payload: dict[str, Any] = {k: v for k, v in request.items() if v is not None}
    payload[PROOF_FIELD] = build_identity_proof(
        request, audience=audience, endpoint=endpoint, credentials=credentials, now=now
    )
    return payload
