"""Scheduled audit verification: recompute the audit hash chain and publish the result.

Runs as the read-only ``pqfile_auditor`` database role (terraform/audit_verify.tf, hourly by
default). Publishes ``AuditVerificationFailures`` (namespace PQFile, dimension ``service``):
1 when the chain does not verify, else 0 -- the metric of the audit-verification-failed
alarm (docs/OPERATIONS.md). Returns a small report: rows checked, the head (seq and hash),
and the first broken row with the reason. Never returns or logs row contents.

Environment: the database variables only (docs/CONTRACTS.md).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from pqfile.handlers._runtime import count, entry_point, logger

if TYPE_CHECKING:
    from pqfile.adapters.postgres.audit import PostgresAuditLog

#: Rows read per query (one consistent REPEATABLE READ snapshot for the whole chain).
BATCH_SIZE = 5000

_lock = threading.Lock()
_audit: PostgresAuditLog | None = None


def audit_log() -> PostgresAuditLog:
    """The process-wide audit log reader (connection created on first use)."""
    global _audit
    if _audit is None:
        with _lock:
            if _audit is None:
                from pqfile.adapters.postgres.audit import PostgresAuditLog
                from pqfile.adapters.postgres.connection import Database

                _audit = PostgresAuditLog(Database.from_env())
    return _audit


def reset() -> None:
    """Forget the cached connection (tests)."""
    global _audit
    _audit = None


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = audit_log().verify_chain(batch_size=BATCH_SIZE)
    count("AuditVerificationFailures", 0 if report.ok else 1)
    result: dict[str, Any] = {
        "ok": report.ok,
        "rows_checked": report.rows,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash.hex(),
        "first_broken_seq": report.broken_seq,
        "reason": report.reason,
    }
    if report.ok:
        logger.info(
            "audit chain verified", extra={"rows": report.rows, "head_seq": report.head_seq}
        )
    else:
        logger.error(
            "audit chain verification FAILED",
            extra={"rows": report.rows, "broken_seq": report.broken_seq, "reason": report.reason},
        )
    return result
