"""FetchDocument: check the event, the object's existence, size and identity."""

from __future__ import annotations

from typing import Any

from pqfile import wiring
from pqfile.handlers._runtime import entry_point, logger, preload

# Imported on the first invocation, or before a SnapStart snapshot (_runtime.preload).
preload("pqfile.usecases.ingest")


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.ingest import fetch_document

    # The state machine wraps the EventBridge event as {"event": ..., "execution": ...}.
    source_event = event.get("event", event) if isinstance(event, dict) else event
    result = fetch_document(wiring.pipeline(), source_event)
    logger.info("fetched", extra={"document_id": result.document_id, "status": result.status})
    return result.to_dict()
