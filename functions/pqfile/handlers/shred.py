"""The ShredKeys step of rotate-keys (statemachines/rotate-keys.asl.json): completes every
pending shred request, then every compromise whose documents are re-encrypted
(pqfile.usecases.shred). ``{}`` -> ``{"shredded": [...], "compromised": [...]}``.

Its role is the only principal the encrypted bucket lets delete under ``encrypted/``
(terraform/s3.tf); its database role, ``pqfile_shred``, may only list what a shred destroys
and call ``key_shred``, and complete a compromise (sql/migrations/0013, 0015).
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
    request_id,
)

# Imported on the first invocation, or before a SnapStart snapshot (_runtime.preload).
preload("pqfile.usecases.shred")


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.shred import shred_pending

    report = shred_pending(wiring.shredding(), request_id=request_id(context))
    for done in report.shredded:
        count("KeysShredded")
        count("DocumentsShredded", len(done.documents_lost))
        count_lost_events(done.events_lost)
        # Ids and counts only: what was lost is audited row by row in the database.
        logger.warning(
            "key shredded",
            extra={
                "key_id": done.key_id,
                "request": done.request,
                "documents_lost": len(done.documents_lost),
                "versions_deleted": done.versions_deleted,
                "complete_at": done.complete_at.isoformat(),
            },
        )
    for purged in report.compromised:
        count("CompromisesCompleted")
        count_lost_events(purged.events_lost)
        logger.warning(
            "compromised key revoked",
            extra={
                "key_id": purged.key_id,
                "request": purged.request,
                "documents": len(purged.versions_deleted),
                "versions_deleted": sum(purged.versions_deleted.values()),
            },
        )
    return report.to_dict()
