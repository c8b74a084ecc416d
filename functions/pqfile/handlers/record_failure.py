"""RecordFailure: the Catch path. Keep and tag the upload, audit the failure, emit a metric."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from pqfile.handlers._runtime import clock, logger, metrics, pipeline, timed, tracer
from pqfile.usecases.ingest import record_failure


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = clock()
    state = event.get("state", event)
    report = record_failure(pipeline(), state, request_id=event.get("execution"))
    metrics.add_dimension(name="Step", value=report.step)
    metrics.add_metric(name="IngestFailures", unit=MetricUnit.Count, value=1)
    logger.warning(
        "ingest failed",
        extra={"step": report.step, "error": report.error_type, "document_id": report.document_id},
    )
    return timed(report.to_dict(), *started)
