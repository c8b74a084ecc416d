"""documents: a document's status, or the documents a caller may read, on direct
invocation with an identity proof (docs/CONTRACTS.md, "Documents query function").

Payload: ``{"operation": "status", "document_id": "..."}`` or ``{"operation": "status",
"source": {"bucket", "key", "version_id"?}}``, or ``{"operation": "list", "tenant"?,
"status"?, "limit"?}``, with ``"identity_proof"`` and optionally ``"requested_by"``.
Refusals raise: IdentityProofError, InvalidEventError, DocumentNotFoundError (no such
document and not allowed alike).
"""

from __future__ import annotations

from typing import Any

from pqfile import wiring
from pqfile.errors import PQFileError
from pqfile.handlers._runtime import count, entry_point, logger, preload, request_id

# Imported on the first invocation, or before a SnapStart snapshot (_runtime.preload).
preload("pqfile.usecases.documents_query")


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.documents_query import claimed_name, query_documents

    claimed_by = claimed_name(event if isinstance(event, dict) else None)
    try:
        answer = query_documents(
            wiring.documents_query(), event, claimed_by=claimed_by,
            request_id=request_id(context),
        )  # fmt: skip
    except PQFileError as exc:
        count("DocumentQueriesRefused")
        logger.warning("documents query refused", extra={"reason": type(exc).__name__})
        raise
    count("DocumentQueries")
    logger.info("documents query", extra={"operation": event.get("operation")})
    return answer
