"""rotate-keys workflow steps (statemachines/rotate-keys.asl.json); use cases in
pqfile.usecases.rotation, their inputs and results in pqfile.usecases.rotation_steps.

Entry points (one Lambda function each, sharing this module and one role):

- ``maintain_handler``  MaintainPool:   ``{}`` -> ``{"queued", "created", "rotations", "active"}``
- ``plan_handler``      PlanRewrap:     ``{"rotation_id", "after"}`` -> ``{..., "manifest_key",
  "count", "more", "after", "concurrency"}`` (the batch manifest, written to S3)
- ``rewrap_handler``    RewrapDocument: one manifest item ``{"rotation_id", "document_id",
  "target_key_id"}`` -> outcome (``rewrapped``, or ``reencrypted`` after a compromise or into
  a key schedule the package lacks)
- ``finish_handler``    FinishRotation: ``{"rotation_id"}`` -> the completed run
- ``failure_handler``   RecordFailure:  ``{"error": {...}, "state": {...}}`` -> audited failure

Settings: pqfile.config (``Settings`` and ``PoolSettings``).
"""

from __future__ import annotations

from typing import Any

from pqfile import wiring
from pqfile.handlers._runtime import (
    count,
    count_lost_events,
    entry_point,
    logger,
    preload,
    publish_pool_size,
    request_id,
)

# Imported on the first invocation, or before a SnapStart snapshot (_runtime.preload).
preload("pqfile.usecases.rotation", "pqfile.usecases.rotation_steps")


@entry_point
def maintain_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.rotation import maintain_pool

    result = maintain_pool(wiring.rotation(), request_id=request_id(context))
    # KeyPoolActiveKeys per maintained suite, after the refill (the key-pool-low alarm).
    for suite, active in result.active.items():
        publish_pool_size(suite, active)
    count("KeysQueuedForRotation", len(result.queued))
    count("KeysCreated", sum(result.created.values()))
    logger.info(
        "pool maintained",
        extra={
            "queued": len(result.queued),
            "keys_created": result.created,
            "rotations": len(result.rotations),
        },
    )
    return result.to_dict()


@entry_point
def plan_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.rotation import plan_rewrap
    from pqfile.usecases.rotation_steps import PlanRequest

    request = PlanRequest.from_event(event)
    result = plan_rewrap(
        wiring.rotation(), request.rotation_id, after=request.after, request_id=request_id(context)
    )
    logger.info(
        "rewrap planned",
        extra={
            "rotation_id": result.run.rotation_id,
            "documents": result.count,
            "skipped": result.skipped,
            "more": result.more,
        },
    )
    return result.to_dict()


@entry_point
def rewrap_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.rotation import rewrap_document
    from pqfile.usecases.rotation_steps import RewrapOutcome, RewrapRequest

    request = RewrapRequest.from_event(event)
    result = rewrap_document(
        wiring.rotation(),
        request.rotation_id,
        request.document_id,
        target_key_id=request.target_key_id,
        request_id=request_id(context),
    )
    if result.outcome is RewrapOutcome.REWRAPPED:
        count("DocumentsRewrapped")
    elif result.outcome is RewrapOutcome.REENCRYPTED:
        count("DocumentsReencrypted")
    logger.info("rewrap", extra={"document_id": request.document_id, "outcome": result.outcome})
    return result.to_dict()


@entry_point
def finish_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.rotation import finish_rotation
    from pqfile.usecases.rotation_steps import RotationRequest

    request = RotationRequest.from_event(event)
    result = finish_rotation(wiring.rotation(), request.rotation_id, request_id=request_id(context))
    count("KeysExpired")
    count_lost_events(result.events_lost)
    logger.info("rotation finished", extra={"rotation_id": result.run.rotation_id})
    return result.to_dict()


@entry_point
def failure_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Catch path: audit the failed step (error type only, never its message)."""
    from pqfile.usecases.rotation import record_rotation_failure
    from pqfile.usecases.rotation_steps import RotationFailure

    failure = RotationFailure.from_event(event)
    record_rotation_failure(wiring.rotation(), failure)
    count("RotationFailures")
    logger.warning(
        "rotation failed",
        extra={"error": failure.error_type, "rotation_id": failure.rotation_id},
    )
    return failure.to_dict()
