"""The audit report's database side: one REPEATABLE READ snapshot in which every row is
both verified (pqfile.keys.audit_chain.verify_rows) and fed to the report builder
(pqfile.usecases.audit_report). Read-only: ``pqfile_auditor`` or ``pqfile_operator``
(SELECT on ``access_logs`` and ``audit_chain_head``).
"""

# SQL text only interpolates the audit adapter's constant column list; values are bound.

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

from pqfile.adapters.postgres.audit import audit_rows
from pqfile.adapters.postgres.connection import Database
from pqfile.keys.audit_chain import AuditRow, verify_rows
from pqfile.usecases.audit_report import MAX_LISTED, AuditReport, DigestStatus, ReportBuilder

BATCH_SIZE = 5000
#: Rows listed per section through the admin function: its answer must stay under
#: Lambda's 6 MB response limit (counts still cover every row).
ADMIN_MAX_LISTED = 1000


def read_report(
    db: Database,
    *,
    since: dt.datetime,
    until: dt.datetime,
    digests: Sequence[DigestStatus] | None = None,
    batch_size: int = BATCH_SIZE,
    max_listed: int = MAX_LISTED,
) -> AuditReport:
    """The report for ``[since, until)`` with the whole chain's verification status."""
    builder = ReportBuilder(since, until, max_listed=max_listed)
    with db.transaction("REPEATABLE READ READ ONLY") as s:
        head_rows = s.run("SELECT seq, row_hash FROM audit_chain_head WHERE singleton")
        head = (int(head_rows[0][0]), bytes(head_rows[0][1]))

        def rows() -> Iterator[AuditRow]:
            for row in audit_rows(s, batch_size):
                builder.add(row)
                yield row

        stream = rows()
        chain = verify_rows(stream, head)
        for _ in stream:  # a broken chain stops the check, not the report
            pass
    return builder.build(chain, digests=digests)
