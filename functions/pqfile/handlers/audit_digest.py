"""Scheduled signed tree heads of the audit log (issue 14; docs/OPERATIONS.md, "Audit digests").

Runs as the read-only ``pqfile_auditor`` database role (terraform/audit_digests.tf, hourly
by default): signs the audit tree's head with the KMS digest key and writes
``digests/<tree size>.json`` to the Object Lock bucket (pqfile.usecases.audit_digest).
Publishes ``AuditDigestsWritten`` (1 when a digest was written, else 0) and
``AuditDigestFailures`` (1 when the log no longer matches the latest digest, else 0);
namespace PQFile, dimension ``service``. Answers what it did or why it wrote nothing.
Never returns or logs row contents.

Environment: the database variables and PQFILE_DIGEST_* (docs/CONTRACTS.md).
"""

from __future__ import annotations

from typing import Any

from pqfile import wiring
from pqfile.handlers._runtime import count, entry_point, logger


def reset() -> None:
    """Forget the cached adapters (tests)."""
    wiring.audit_digester.reset()


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    outcome = wiring.audit_digester().run()
    count("AuditDigestsWritten", 1 if outcome.written else 0)
    count("AuditDigestFailures", 0 if outcome.ok else 1)
    result = outcome.as_dict()
    if not outcome.ok:
        logger.error("audit digest REFUSED", extra=result)
    elif outcome.written:
        logger.info("audit digest written", extra=result)
    else:
        logger.info("audit digest skipped", extra=result)
    return result
