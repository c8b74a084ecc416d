"""SelectKey: the key a document is encrypted to (least-used active key, first writer wins).

SelectKey never creates keys (the ingest role may not): on an empty pool it raises
NoActiveKeyError, publishes KeyPoolActiveKeys = 0 for the suite, and the ingest workflow
retries with backoff until the rotate-keys workflow's MaintainPool has refilled the pool.
"""

from __future__ import annotations

from typing import Any

from pqfile import wiring
from pqfile.errors import NoActiveKeyError
from pqfile.handlers._runtime import entry_point, logger, preload, publish_pool_size

# Imported on the first invocation, or before a SnapStart snapshot (_runtime.preload).
preload("pqfile.usecases.ingest", "pqfile.usecases.ingest_steps")


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.ingest import select_key, suite_wanted
    from pqfile.usecases.ingest_steps import SelectKeyRequest

    request = SelectKeyRequest.from_event(event)
    p = wiring.pipeline()
    try:
        choice = select_key(p, request.document_id, request.suite)
    except NoActiveKeyError:
        suite = suite_wanted(p, request.document_id, request.suite)
        publish_pool_size(suite, 0)
        logger.warning(
            "key pool empty: waiting for the rotate-keys workflow to refill it",
            extra={"document_id": request.document_id, "suite": suite},
        )
        raise
    logger.info("key selected", extra={"document_id": request.document_id, "key_id": choice.key_id})
    return choice.to_dict()
