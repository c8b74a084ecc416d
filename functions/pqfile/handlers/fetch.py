"""FetchDocument: check the event, the object's existence, size and identity."""

from __future__ import annotations

from typing import Any

from pqfile.handlers._runtime import clock, logger, metrics, pipeline, timed, tracer
from pqfile.usecases.ingest import fetch_document


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = clock()
    # The state machine wraps the EventBridge event as {"event": ..., "execution": ...}.
    source_event = event.get("event", event) if isinstance(event, dict) else event
    result = fetch_document(pipeline(), source_event)
    logger.info(
        "fetched", extra={"document_id": result.document_id, "status": result.status}
    )
    return timed(result.to_dict(), *started)
