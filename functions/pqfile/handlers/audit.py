"""WriteAudit: one audit row for this execution (stored or duplicate)."""

from __future__ import annotations

from typing import Any

from pqfile import wiring
from pqfile.handlers._runtime import entry_point, preload

# Imported on the first invocation, or before a SnapStart snapshot (_runtime.preload).
preload("pqfile.usecases.ingest", "pqfile.usecases.ingest_steps")


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.ingest import audit_ingest
    from pqfile.usecases.ingest_steps import AuditRequest

    request = AuditRequest.from_event(event)
    seq = audit_ingest(
        wiring.pipeline(),
        request.document_id,
        request.outcome,
        request_id=request.execution,
        uploaded_by=request.uploaded_by,
    )
    return {"seq": seq}
