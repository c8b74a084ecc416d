"""SelectKey: the key a document is encrypted to (least-used active key, first writer wins)."""

from __future__ import annotations

from typing import Any

from pqfile.handlers._runtime import clock, logger, metrics, pipeline, timed, tracer
from pqfile.usecases.ingest import select_key


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = clock()
    choice = select_key(pipeline(), str(event["document_id"]), event.get("suite"))
    logger.info(
        "key selected", extra={"document_id": event["document_id"], "key_id": choice.key_id}
    )
    return timed({"key_id": choice.key_id, "suite": choice.suite}, *started)
