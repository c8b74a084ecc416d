"""StoreDocument: verify the package, commit the row, then delete the plaintext version."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from pqfile.errors import InvalidEventError
from pqfile.handlers._runtime import clock, logger, metrics, pipeline, timed, tracer
from pqfile.ports import ObjectInfo
from pqfile.usecases.events import SourceRef
from pqfile.usecases.ingest import store_document


def _object_info(data: Any) -> ObjectInfo:
    try:
        return ObjectInfo(
            bucket=str(data["bucket"]),
            key=str(data["key"]),
            size=int(data["size"]),
            etag=str(data.get("etag") or ""),
            version_id=data.get("version_id"),
            content_type=str(data.get("content_type") or "application/octet-stream"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidEventError(f"malformed encrypted object reference: {exc}") from None


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = clock()
    result = store_document(
        pipeline(),
        str(event["document_id"]),
        SourceRef.from_dict(event["source"]),
        _object_info(event["encrypted"]),
    )
    if result.outcome == "stored":
        metrics.add_metric(name="DocumentsStored", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="DuplicateDeliveries", unit=MetricUnit.Count, value=1)
    logger.info("stored", extra={"document_id": event["document_id"], "outcome": result.outcome})
    return timed(result.to_dict(), *started)
