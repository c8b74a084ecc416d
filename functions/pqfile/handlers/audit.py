"""WriteAudit: one audit row for this execution (stored or duplicate)."""

from __future__ import annotations

from typing import Any

from pqfile.handlers._runtime import clock, logger, metrics, pipeline, timed, tracer
from pqfile.usecases.ingest import audit_ingest


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = clock()
    seq = audit_ingest(
        pipeline(),
        str(event["document_id"]),
        str(event.get("outcome") or "stored"),
        request_id=event.get("execution"),
    )
    return timed({"seq": seq}, *started)
