"""Who invoked retrieve, proven by STS (docs/CONTRACTS.md, "Caller identity proofs").

The payload's identity_proof is the caller's own SigV4-signed sts:GetCallerIdentity request;
the checks are pure (pqfile.auth) and adapters/sts_identity.py sends the checked request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pqfile.auth import VerifiedCaller


class CallerIdentityVerifier(Protocol):
    def verify(self, proof: object, *, request_sha256: str) -> VerifiedCaller:
        """Check ``proof`` (the payload's ``identity_proof``, untrusted JSON) for the request
        whose canonical SHA-256 is ``request_sha256`` (pqfile.auth.retrieve_request_sha256),
        and return the principal STS vouches for. Raise pqfile.auth.IdentityProofError
        (``reason`` is safe to audit); a refused proof causes no outbound request."""
        ...
