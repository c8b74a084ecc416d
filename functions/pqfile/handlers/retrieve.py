"""retrieve: decrypt one document on direct invocation for a verified, allowed caller;
every attempt is audited.

Payload: ``{"document_id": "..."}``, ``{"bucket": "...", "key": "..."}`` (the encrypted
package's location) or ``{"source": {"bucket", "key", "version_id"?}}`` (the upload's name:
``uploads/<tenant>/...``; without a version id the newest stored document), with
``"identity_proof"`` (``pqfile auth proof``; docs/CONTRACTS.md, "Caller identity proofs")
and optionally ``"delivery"`` (``sealed``, the default for a caller with a recipient key:
the header re-wrapped to that key and a presigned GET of the still-encrypted body;
``inline``/``url``: plaintext, where the deployment allows it) and ``"requested_by"`` (kept
as the audit detail ``claimed_by``, never the actor; see
pqfile.usecases.retrieve.claimed_name). Refusals raise: the invoke answers with
``errorType`` (IdentityProofError, DocumentNotFoundError for both "no such document" and
"not allowed", DeliveryRefusedError, DowngradeError, KeyNotUsableError, DecryptionError,
...).
"""

from __future__ import annotations

from typing import Any

from pqfile import wiring
from pqfile.errors import PQFileError
from pqfile.handlers._runtime import count, entry_point, logger, preload, request_id


def _claimed_by(event: Any, context: Any) -> str | None:
    from pqfile.usecases.retrieve import claimed_name

    client_context = getattr(context, "client_context", None)
    custom = getattr(client_context, "custom", None) if client_context is not None else None
    identity = getattr(context, "identity", None)
    cognito = getattr(identity, "cognito_identity_id", None) if identity is not None else None
    return claimed_name(
        event if isinstance(event, dict) else None,
        client_context={"custom": custom} if isinstance(custom, dict) else None,
        cognito_identity_id=cognito if isinstance(cognito, str) else None,
    )


# Imported on the first invocation, or before a SnapStart snapshot (_runtime.preload).
preload("pqfile.usecases.retrieve")


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.retrieve import retrieve

    claimed_by = _claimed_by(event, context)
    try:
        result = retrieve(
            wiring.retrieval(), event, claimed_by=claimed_by, request_id=request_id(context)
        )
    except PQFileError as exc:
        count("RetrievalsRefused")
        logger.warning(
            "retrieve refused", extra={"claimed_by": claimed_by, "reason": type(exc).__name__}
        )
        raise
    count("Retrievals")
    logger.info(
        "retrieved",
        extra={
            "claimed_by": claimed_by,
            "document_id": result["document_id"],
            "delivery": result["delivery"],
            "size": result["size"],
        },
    )
    return result
