"""EncryptDocument: stream the upload into a PQF package under encrypted/ (bounded memory)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from pqfile.handlers._runtime import clock, logger, metrics, pipeline, timed, tracer
from pqfile.usecases.events import SourceRef
from pqfile.usecases.ingest import encrypt_document


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = clock()
    source = SourceRef.from_dict(event["source"])
    written = encrypt_document(
        pipeline(),
        str(event["document_id"]),
        source,
        str(event["key_id"]),
        str(event.get("content_type") or "application/octet-stream"),
    )
    metrics.add_metric(name="BytesEncrypted", unit=MetricUnit.Bytes, value=source.size or 0)
    logger.info("encrypted", extra={"document_id": event["document_id"], "size": written.size})
    return timed({"encrypted": asdict(written)}, *started)
