"""StoreDocument: verify the package, commit the row, then delete the plaintext version and
announce `PQFile Document Encrypted` (a lost event is counted as EventsNotDelivered)."""

from __future__ import annotations

from typing import Any

from pqfile import wiring
from pqfile.handlers._runtime import count, count_lost_events, entry_point, logger, preload

# Imported on the first invocation, or before a SnapStart snapshot (_runtime.preload).
preload("pqfile.usecases.ingest", "pqfile.usecases.ingest_steps")


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.ingest import store_document
    from pqfile.usecases.ingest_steps import StoreOutcome, StoreRequest

    request = StoreRequest.from_event(event)
    result = store_document(
        wiring.pipeline(), request.document_id, request.source, request.encrypted
    )
    stored = result.outcome is StoreOutcome.STORED
    count("DocumentsStored" if stored else "DuplicateDeliveries")
    count_lost_events(result.events_lost)
    logger.info("stored", extra={"document_id": request.document_id, "outcome": result.outcome})
    return result.to_dict()
