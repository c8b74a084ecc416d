"""``access_logs`` (ports.AuditLog): the hash-chained audit trail, SQL only.

Rows are appended only through the SECURITY DEFINER function ``audit_append()``
(sql/migrations/0004, restricted per role by 0010), which decides the actor, refuses
operations the role may not append, caps sizes and computes each row's hash. Details and
identifiers are shortened here first (pqfile.keys.audit_chain.bounded_details), so a
legitimate writer never meets the database's caps. ``verify_chain`` recomputes every hash
independently (pqfile.keys.audit_chain) from a consistent snapshot.
"""

# SQL text only ever interpolates this module's constant column lists; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pqfile.adapters.postgres.audit_leaves import row_hashes
from pqfile.adapters.postgres.connection import Database, Runner
from pqfile.errors import AuditProofError
from pqfile.keys.audit_chain import (
    MAX_DOCUMENT_ID_CHARS,
    MAX_REQUEST_ID_CHARS,
    AuditRow,
    ChainReport,
    bounded_details,
    bounded_text,
    canonical_details,
    verify_rows,
)
from pqfile.keys.audit_digest import InclusionReceipt, inclusion_receipt
from pqfile.keys.audit_tree import AuditTree

_AUDIT_COLUMNS = (
    "seq, occurred_at, operation, outcome, actor, document_id, key_id, request_id, details, "
    "prev_hash, row_hash, db_role"
)
_APPEND_SQL = (
    "SELECT audit_append(:operation, :outcome, :actor, :document_id, :key_id, :request_id, "
    ":details)"
)


def _audit_row(r: Sequence[Any]) -> AuditRow:
    return AuditRow(
        seq=int(r[0]),
        occurred_at=r[1],
        operation=r[2],
        outcome=r[3],
        actor=r[4],
        document_id=r[5],
        key_id=r[6],
        request_id=r[7],
        details=r[8],
        prev_hash=bytes(r[9]),
        row_hash=bytes(r[10]),
        db_role=r[11],
    )


def append_audit(
    runner: Runner,
    *,
    operation: str,
    outcome: str,
    actor: str | None = None,
    document_id: str | None = None,
    key_id: str | None = None,
    request_id: str | None = None,
    details: Mapping[str, object] | None = None,
) -> int:
    """Append one row; on a Session, inside its transaction (the row commits or rolls back
    with it). ``actor``: None for function roles (the database records the role), a
    principal ARN from retrieve, or a person's claimed name (kept as ``claimed_by``)."""
    rows = runner.run(
        _APPEND_SQL,
        operation=operation,
        outcome=outcome,
        actor=None if actor is None else actor[:1000],
        document_id=bounded_text(document_id, MAX_DOCUMENT_ID_CHARS),
        key_id=key_id,
        request_id=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        details=canonical_details(bounded_details(details)),
    )
    return int(rows[0][0])


class AuditRepository:
    """ports.AuditLog on a Database (autocommit) or a Session (in a transaction)."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    def append(
        self,
        *,
        operation: str,
        outcome: str,
        actor: str | None = None,
        document_id: str | None = None,
        key_id: str | None = None,
        request_id: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> int:
        return append_audit(
            self._runner,
            operation=operation,
            outcome=outcome,
            actor=actor,
            document_id=document_id,
            key_id=key_id,
            request_id=request_id,
            details=details,
        )

    def tail(self, limit: int = 20) -> Iterator[Mapping[str, object]]:
        rows = self._runner.run(
            f"SELECT {_AUDIT_COLUMNS} FROM access_logs ORDER BY seq DESC LIMIT :n",
            n=max(0, int(limit)),
        )
        return iter([_audit_row(r).as_dict() for r in reversed(rows)])

    def head(self) -> tuple[int, bytes]:
        rows = self._runner.run("SELECT seq, row_hash FROM audit_chain_head WHERE singleton")
        return int(rows[0][0]), bytes(rows[0][1])


def audit_rows(s: Runner, batch_size: int) -> Iterator[AuditRow]:
    """Every audit row in ``seq`` order, read in batches inside the caller's transaction
    ``s`` (one snapshot when the caller opened it REPEATABLE READ)."""
    after = -1
    while True:
        chunk = s.run(
            f"SELECT {_AUDIT_COLUMNS} FROM access_logs WHERE seq > :after ORDER BY seq LIMIT :n",
            after=after,
            n=batch_size,
        )
        for r in chunk:
            yield _audit_row(r)
        if len(chunk) < batch_size:
            return
        after = int(chunk[-1][0])


class PostgresAuditLog(AuditRepository):
    """The audit trail on a Database; rows are appended only via ``audit_append()``."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._db = db

    def verify_chain(
        self,
        batch_size: int = 5000,
        anchors: Mapping[int, bytes] | None = None,
        leaves: list[tuple[bytes, dt.datetime]] | None = None,
    ) -> ChainReport:
        """Recompute every hash from a consistent snapshot; name the first broken row.
        ``leaves`` collects each row's (row_hash, occurred_at) read, for the tree checks
        against the signed digests (pqfile.keys.audit_digest_check.check_digests)."""
        with self._db.transaction("REPEATABLE READ READ ONLY") as s:
            head_rows = s.run("SELECT seq, row_hash FROM audit_chain_head WHERE singleton")
            head = (int(head_rows[0][0]), bytes(head_rows[0][1]))

            def rows() -> Iterator[AuditRow]:
                for row in audit_rows(s, batch_size):
                    if leaves is not None:
                        leaves.append((row.row_hash, row.occurred_at))
                    yield row

            return verify_rows(rows(), head, anchors)

    def inclusion(
        self, seq: int, tree_size: int | None = None, batch_size: int = 20000
    ) -> InclusionReceipt:
        """Row ``seq`` and its inclusion proof in the tree of the first ``tree_size`` rows
        (the whole table by default), from one snapshot. Raises AuditProofError when the row
        or the tree size is not (or no longer) in the table."""
        with self._db.transaction("REPEATABLE READ READ ONLY") as s:
            found = s.run(f"SELECT {_AUDIT_COLUMNS} FROM access_logs WHERE seq = :seq", seq=seq)
            if not found:
                raise AuditProofError(f"no audit row {seq}")
            row = _audit_row(found[0])
            if tree_size is None:
                tree_size = int(s.run("SELECT seq FROM audit_chain_head WHERE singleton")[0][0])
            hashes = row_hashes(s, tree_size, batch_size, AuditProofError)
        return inclusion_receipt(row, AuditTree(hashes), tree_size)
