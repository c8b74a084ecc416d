"""Verified caller identity: who invoked, proven by STS, not declared by the caller.

The retrieve payload carries ``identity_proof``: a SigV4-signed ``sts:GetCallerIdentity``
POST, signed with the caller's own AWS credentials (the scheme of HashiCorp Vault's AWS
auth method). Two extra signed headers bind it to this deployment (``x-pqfile-audience``)
and to the one request it accompanies (``x-pqfile-request-sha256``, see
:mod:`pqfile.auth.canonical`). :mod:`pqfile.auth.proof` checks it without any network call;
an adapter (``pqfile.adapters.sts_identity``) sends exactly the checked request to the one
configured STS endpoint; :mod:`pqfile.auth.caller` reads STS's answer and normalises the
principal. Everything here is pure: no AWS SDK, no network (docs/CONTRACTS.md, "Caller
identity proofs"; docs/THREAT-MODEL.md, "Verified caller identity").
"""

from __future__ import annotations

from pqfile.auth.caller import (
    MAX_ANSWER,
    Send,
    StsAnswer,
    VerifiedCaller,
    caller_from_answer,
    normalise_principal,
    verify_caller,
)
from pqfile.auth.canonical import (
    CANONICAL_FIELDS,
    RETRIEVE_FIELDS,
    canonical_retrieve_request,
    retrieve_request_sha256,
)
from pqfile.auth.endpoint import StsEndpoint, default_endpoint_url
from pqfile.auth.errors import IdentityProofError, ProofRefusal
from pqfile.auth.proof import (
    AUDIENCE_HEADER,
    AUDIENCE_PATTERN,
    REQUEST_HASH_HEADER,
    STS_BODY,
    ProofPolicy,
    StsRequest,
    validate_proof,
)

#: The payload field that carries the proof.
PROOF_FIELD = "identity_proof"

__all__ = [
    "AUDIENCE_HEADER",
    "AUDIENCE_PATTERN",
    "CANONICAL_FIELDS",
    "MAX_ANSWER",
    "PROOF_FIELD",
    "REQUEST_HASH_HEADER",
    "RETRIEVE_FIELDS",
    "STS_BODY",
    "IdentityProofError",
    "ProofPolicy",
    "ProofRefusal",
    "Send",
    "StsAnswer",
    "StsEndpoint",
    "StsRequest",
    "VerifiedCaller",
    "caller_from_answer",
    "canonical_retrieve_request",
    "default_endpoint_url",
    "normalise_principal",
    "retrieve_request_sha256",
    "validate_proof",
    "verify_caller",
]
