"""RecordFailure: the Catch path. Keep and tag the upload, audit the failure, emit a metric
and announce `PQFile Document Failed` (a lost event is counted as EventsNotDelivered)."""

from __future__ import annotations

from typing import Any

from pqfile import wiring
from pqfile.handlers._runtime import count, count_lost_events, entry_point, logger, metrics, preload

# Imported on the first invocation, or before a SnapStart snapshot (_runtime.preload).
preload("pqfile.usecases.ingest", "pqfile.usecases.ingest_steps")


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.ingest import record_failure
    from pqfile.usecases.ingest_steps import FailureRequest

    request = FailureRequest.from_event(event)
    report = record_failure(wiring.pipeline(), request.state, request_id=request.execution)
    metrics.add_dimension(name="Step", value=report.step)
    count("IngestFailures")
    count_lost_events(report.events_lost)
    logger.warning(
        "ingest failed",
        extra={"step": report.step, "error": report.error_type, "document_id": report.document_id},
    )
    return report.to_dict()
