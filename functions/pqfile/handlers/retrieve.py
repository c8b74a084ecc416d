"""retrieve: decrypt one document on direct invocation; every attempt is audited.

Payload: ``{"document_id": "..."}`` or ``{"bucket": "...", "key": "encrypted/..."}``, and
optionally ``"requested_by"`` (see pqfile.usecases.retrieve.identify_actor for the order in
which the caller identity is taken). Refusals raise: the invoke answers with ``errorType``
(DocumentNotFoundError, KeyNotUsableError, DecryptionError, InvalidEventError, ...).
"""

from __future__ import annotations

from typing import Any

from pqfile import wiring
from pqfile.errors import PQFileError
from pqfile.handlers._runtime import count, entry_point, logger, request_id
from pqfile.usecases.retrieve import identify_actor, retrieve_payload


def _actor(event: Any, context: Any) -> str:
    client_context = getattr(context, "client_context", None)
    custom = getattr(client_context, "custom", None) if client_context is not None else None
    identity = getattr(context, "identity", None)
    cognito = getattr(identity, "cognito_identity_id", None) if identity is not None else None
    return identify_actor(
        event if isinstance(event, dict) else None,
        client_context={"custom": custom} if isinstance(custom, dict) else None,
        cognito_identity_id=cognito if isinstance(cognito, str) else None,
    )


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    actor = _actor(event, context)
    try:
        result = retrieve_payload(
            wiring.pipeline(), event, actor=actor, request_id=request_id(context)
        )
    except PQFileError as exc:
        count("RetrievalsRefused")
        logger.warning("retrieve refused", extra={"actor": actor, "reason": type(exc).__name__})
        raise
    count("Retrievals")
    logger.info(
        "retrieved",
        extra={
            "actor": actor,
            "document_id": result["document_id"],
            "delivery": result["delivery"],
            "size": result["size"],
        },
    )
    return result
