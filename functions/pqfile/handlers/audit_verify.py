"""Scheduled audit verification: recompute the audit hash chain and publish the result.

Runs as the read-only ``pqfile_auditor`` database role (terraform/audit_verify.tf, hourly by
default). Publishes ``AuditVerificationFailures`` (namespace PQFile, dimension ``service``):
1 when the chain does not verify, else 0 -- the metric of the audit-verification-failed
alarm (docs/OPERATIONS.md). Returns a small report: rows checked, the head (seq and hash),
and the first broken row with the reason. Never returns or logs row contents.

Environment: the database variables only (docs/CONTRACTS.md).
"""

from __future__ import annotations

from typing import Any

from pqfile import wiring
from pqfile.handlers._runtime import count, entry_point, logger

#: Rows read per query (one consistent REPEATABLE READ snapshot for the whole chain).
BATCH_SIZE = 5000


def reset() -> None:
    """Forget the cached connection (tests)."""
    wiring.audit_reader.reset()


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = wiring.audit_reader().verify_chain(batch_size=BATCH_SIZE)
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
