"""Invoke one of the deployment's functions as yourself: a fresh identity proof for the
request (adapters/sts_proof.py), then one synchronous invoke (adapters/lambda_retrieve.py).
Used by `pqfile retrieve`'s siblings (`pqfile documents status/list`); the admin commands
may use it too.
"""

from __future__ import annotations

from typing import Any

from pqfile.adapters.lambda_retrieve import InvokeAnswer, invoke_retrieve
from pqfile.adapters.sts_proof import default_credentials, proof_payload
from pqfile.auth import StsEndpoint


def invoke_with_proof(
    function_name: str,
    request: dict[str, Any],
    *,
    audience: str,
    sts_endpoint: StsEndpoint,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
) -> InvokeAnswer:
    """``request`` with a proof signed by the caller's credentials (standard chain or
    ``profile``), invoked once; the answer as Lambda gave it (FunctionError included)."""
    credentials = default_credentials(profile=profile, region=region)
    payload = proof_payload(
        request, audience=audience, endpoint=sts_endpoint, credentials=credentials
    )
    return invoke_retrieve(
        function_name, payload, region=region, profile=profile, endpoint_url=endpoint_url
    )
