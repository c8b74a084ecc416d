"""The completion events of docs/CONTRACTS.md ("Completion events"), built from what the
steps already know: ids, names, sizes and times, never document content, key material or
an operator's free text (a revocation's reason is absent: it is free text an operator typed,
which may name an incident or a person; the audit trail keeps it).

Delivery is best effort after the work is committed: the publisher retries, and what it
still cannot deliver is logged and counted (metric ``EventsNotDelivered``) by the caller;
a stored document stays stored, a failure stays recorded (docs/OPERATIONS.md, "Following a
document").
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from typing import Any

from pqfile.ports import DocumentRecord, EventPublisher, EventType, ServiceEvent

log = logging.getLogger(__name__)

#: The version of every event's ``detail`` schema; a breaking change bumps it.
SCHEMA_VERSION = 1


class RevocationMode(enum.StrEnum):
    """How a key came to be revoked (docs/KEYS.md, "Revocation")."""

    PENDING = "pending"  # an operator's pending revocation, completed by rotate-keys
    NOW = "now"  # `pqfile keys revoke --now`
    SHRED = "shred"  # a pending shred completed by rotate-keys (the seed is destroyed)
    COMPROMISE = "compromise"  # a compromise request completed


class NoEvents:
    """A publisher that announces nothing (events switched off: PQFILE_EVENT_BUS=off)."""

    def publish(self, events: list[ServiceEvent]) -> int:
        return 0


def _iso(moment: dt.datetime | None) -> str:
    return (moment or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat()


def document_encrypted(record: DocumentRecord) -> ServiceEvent:
    """`PQFile Document Encrypted`: the stored document, where it came from, where its
    package is and which key it is encrypted to."""
    return ServiceEvent(
        EventType.DOCUMENT_ENCRYPTED,
        {
            "version": SCHEMA_VERSION,
            "document_id": record.document_id,
            "tenant": record.tenant,
            "source": {
                "bucket": record.source_bucket,
                "key": record.source_key,
                "version_id": record.source_version_id,
                "content_type": record.source_content_type,
            },
            "package": {
                "bucket": record.encrypted_bucket,
                "key": record.encrypted_key,
                "version_id": record.encrypted_version_id,
            },
            "key_id": record.key_id,
            "suite": record.suite,
            "size": record.plaintext_size,
            "encrypted_size": record.encrypted_size,
            "stored_at": _iso(record.stored_at),
        },
    )


def document_failed(
    *,
    document_id: str | None,
    tenant: str | None,
    source: dict[str, Any] | None,
    step: str,
    error_type: str,
    at: dt.datetime | None = None,
) -> ServiceEvent:
    """`PQFile Document Failed`: the step that failed and the error's type (its class name,
    never its message, which may quote content)."""
    return ServiceEvent(
        EventType.DOCUMENT_FAILED,
        {
            "version": SCHEMA_VERSION,
            "document_id": document_id,
            "tenant": tenant,
            "source": source,
            "step": step,
            "error_type": error_type,
            "failed_at": _iso(at),
        },
    )


def key_revoked(
    *,
    key_id: str,
    suite: str | None,
    mode: RevocationMode,
    at: dt.datetime | None = None,
) -> ServiceEvent:
    """`PQFile Key Revoked`: which key, how; never the reason (free text an operator typed:
    it may name an incident or a person; the key row and the audit trail keep it)."""
    return ServiceEvent(
        EventType.KEY_REVOKED,
        {
            "version": SCHEMA_VERSION,
            "key_id": key_id,
            "suite": suite,
            "mode": mode.value,
            "revoked_at": _iso(at),
        },
    )


def announce(publisher: EventPublisher, *events: ServiceEvent) -> int:
    """Publish ``events``; return how many were not delivered (logged here, counted by the
    handler). Never raises: the work they announce is already committed."""
    try:
        lost = publisher.publish(list(events))
    except Exception as exc:  # noqa: BLE001 (a publisher must not raise; the work stands)
        log.warning("events not delivered", extra={"error": type(exc).__name__})
        lost = len(events)
    if lost:
        log.warning(
            "events not delivered",
            extra={"lost": lost, "types": sorted({e.detail_type.value for e in events})},
        )
    return lost
