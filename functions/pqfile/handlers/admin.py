"""admin: operator commands (keys, access, audit) for a verified caller with an ``operate``
rule; every request audited (pqfile.usecases.admin; docs/OPERATIONS.md, "Operator commands
on AWS").

Payload: ``{"command": "keys.status", "args": {...}, "identity_proof": {...}}``. Refusals
raise: the invoke answers with ``errorType`` (IdentityProofError, InvalidEventError,
AdminRefusedError, or the command's own error).
"""

from __future__ import annotations

from typing import Any

from pqfile import wiring
from pqfile.errors import PQFileError
from pqfile.handlers._runtime import (
    count,
    count_lost_events,
    entry_point,
    logger,
    preload,
    request_id,
)

# Imported on the first invocation, or before a SnapStart snapshot (_runtime.preload).
preload("pqfile.usecases.admin")


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.admin import admin

    try:
        result = admin(wiring.admin(), event, request_id=request_id(context))
    except PQFileError as exc:
        count("AdminRefused")
        logger.warning("admin refused", extra={"reason": type(exc).__name__})
        raise
    count("AdminCommands")
    count_lost_events(int(result.get("events_not_delivered", 0)))
    logger.info("admin", extra={"command": result["command"], "principal": result["principal"]})
    return result
