"""SelectKey: the key a document is encrypted to (least-used active key, first writer wins).

SelectKey never creates keys (the ingest role may not): on an empty pool it raises
NoActiveKeyError, publishes KeyPoolActiveKeys = 0 for the suite, and the ingest workflow
retries with backoff until the rotate-keys workflow's MaintainPool has refilled the pool.
"""

from __future__ import annotations

from typing import Any

from pqfile.errors import NoActiveKeyError
from pqfile.handlers._runtime import (
    clock,
    logger,
    metrics,
    pipeline,
    publish_pool_size,
    timed,
    tracer,
)
from pqfile.usecases.ingest import select_key


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = clock()
    p = pipeline()
    try:
        choice = select_key(p, str(event["document_id"]), event.get("suite"))
    except NoActiveKeyError:
        suite = str(event.get("suite") or p.settings.default_suite)
        publish_pool_size(suite, 0)
        logger.warning(
            "key pool empty: waiting for the rotate-keys workflow to refill it",
            extra={"document_id": event["document_id"], "suite": suite},
        )
        raise
    logger.info(
        "key selected", extra={"document_id": event["document_id"], "key_id": choice.key_id}
    )
    return timed({"key_id": choice.key_id, "suite": choice.suite}, *started)
