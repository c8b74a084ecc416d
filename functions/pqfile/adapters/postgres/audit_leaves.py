"""``access_logs`` as ports.AuditLeafSource: the rows' hashes for the audit tree, read-only.

One REPEATABLE READ READ ONLY snapshot: the chain head, every ``row_hash`` up to it in
``seq`` order (in batches), and the times of the first and last rows after the previous
digest. The rows must be numbered 1..head without a gap (audit_append() numbers them under
the head row's lock); a gap is refused rather than signed over. Runs as ``pqfile_auditor``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pqfile.adapters.postgres.connection import Database
from pqfile.errors import AuditDigestError
from pqfile.ports.audit_digests import AuditLeaves


def row_hashes(
    s: Any, upto: int, batch_size: int, refuse: Callable[[str], Exception]
) -> list[bytes]:
    """``row_hash`` of rows 1..``upto`` in ``seq`` order, read in batches in the session
    ``s`` (one snapshot); a missing row, or fewer rows than ``upto``, raises ``refuse(why)``
    (a gap is refused, never hashed over)."""
    hashes: list[bytes] = []
    while len(hashes) < upto:
        chunk = s.run(
            "SELECT seq, row_hash FROM access_logs WHERE seq > :after AND seq <= :upto "
            "ORDER BY seq LIMIT :n",
            after=len(hashes),
            upto=upto,
            n=batch_size,
        )
        if not chunk:
            raise refuse(f"the audit head is row {upto} but only {len(hashes)} rows were read")
        for seq, row_hash in chunk:
            if int(seq) != len(hashes) + 1:
                raise refuse(f"audit row {len(hashes) + 1} is missing (next is {int(seq)})")
            hashes.append(bytes(row_hash))
    return hashes


class PostgresAuditLeaves:
    """ports.AuditLeafSource on a Database."""

    def __init__(self, db: Database, batch_size: int = 20000) -> None:
        self._db = db
        self._batch_size = batch_size

    def leaves(self, since_seq: int) -> AuditLeaves:
        with self._db.transaction("REPEATABLE READ READ ONLY") as s:
            head = int(s.run("SELECT seq FROM audit_chain_head WHERE singleton")[0][0])
            hashes = row_hashes(s, head, self._batch_size, AuditDigestError)
            # The time range is the occurred_at of rows since_seq + 1 and head (docs/KEYS.md,
            # "Signed tree heads"); audit_append() stamps rows under the head's lock, in order.
            times = {
                int(seq): at
                for seq, at in s.run(
                    "SELECT seq, occurred_at FROM access_logs WHERE seq IN (:first, :last)",
                    first=since_seq + 1,
                    last=head,
                )
            }
        first_at = times.get(since_seq + 1) if head > since_seq else None
        last_at = times.get(head) if head > since_seq else None
        return AuditLeaves(
            row_hashes=tuple(hashes),
            since_seq=since_seq,
            first_at=first_at,
            last_at=last_at,
        )
