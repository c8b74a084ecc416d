"""``key_rotations`` (ports.RotationRepository): rotation runs and the documents they move.

Reads are SELECTs; the writes are the SECURITY DEFINER functions rotation_begin,
rotation_record_rewrap, rotation_record_reencrypt and rotation_finish (sql/migrations/0010,
0014, 0015), which check each
transition and append its audit row. The early checks are in pqfile.keys.rotation_runs.
"""

# SQL text only ever interpolates this module's constant column lists; values are bound.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pqfile.adapters.postgres.connection import PermissionDeniedError, Runner
from pqfile.keys.audit_chain import MAX_REQUEST_ID_CHARS, bounded_text
from pqfile.keys.rotation_runs import RotationRun

ROTATION_COLUMNS = (
    "id, old_key_id, new_key_id, reason, status, documents_total, documents_rewrapped, "
    "documents_failed, error, to_suite, allow_downgrade"
)


def rotation_run(r: Sequence[Any]) -> RotationRun:
    """A row of ``ROTATION_COLUMNS`` as a RotationRun."""
    return RotationRun(
        int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), int(r[6]), int(r[7]), r[8],
        to_suite=r[9], allow_downgrade=bool(r[10]),
    )  # fmt: skip


class PostgresRotationRepository:
    """ports.RotationRepository on a Database (autocommit) or a Session (in a transaction)."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner.run

    def list_runs(self, status: str | None = None) -> list[RotationRun]:
        rows = self._run(
            f"SELECT {ROTATION_COLUMNS} FROM key_rotations "
            "WHERE (CAST(:status AS text) IS NULL OR status = CAST(:status AS text)) ORDER BY id",
            status=status,
        )
        return [rotation_run(r) for r in rows]

    def run_counts(self) -> Mapping[str, int] | None:
        try:
            rows = self._run("SELECT status, count(*) FROM key_rotations GROUP BY status")
        except PermissionDeniedError:
            return None  # e.g. the ingest role: no access to rotation runs
        return {str(status): int(count) for status, count in rows}

    def documents_on_key(self, key_id: str, limit: int) -> list[str]:
        rows = self._run(
            "SELECT document_id FROM documents WHERE key_id = :k ORDER BY document_id LIMIT :n",
            k=key_id,
            n=limit,
        )
        return [str(r[0]) for r in rows]

    def documents_after(self, key_id: str, after: str | None, limit: int) -> list[tuple[str, bool]]:
        rows = self._run(
            "SELECT document_id, status = 'stored' AND encrypted_key IS NOT NULL "
            "FROM documents WHERE key_id = :k "
            "AND (CAST(:after AS text) IS NULL OR document_id > CAST(:after AS text)) "
            "ORDER BY document_id LIMIT :n",
            k=key_id,
            after=after,
            n=limit,
        )
        return [(str(r[0]), bool(r[1])) for r in rows]

    def pool_keys(self, suite: str, *, exclude: str, limit: int) -> list[tuple[str, int]]:
        rows = self._run(
            "SELECT id, usage_count FROM encryption_keys "
            "WHERE suite = :s AND status = 'active' AND id <> :x "
            "AND attestation IS NOT NULL AND rotate_after > now() "
            "ORDER BY usage_count, id LIMIT :n",
            s=suite,
            x=exclude,
            n=limit,
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    def get_run(self, rotation_id: int) -> RotationRun | None:
        rows = self._run(
            f"SELECT {ROTATION_COLUMNS} FROM key_rotations WHERE id = :id", id=rotation_id
        )
        return rotation_run(rows[0]) if rows else None

    def successor(
        self, old_key_id: str, *, suite: str | None = None, exclude: Sequence[str] = ()
    ) -> str | None:
        rows = self._run(
            "SELECT n.id FROM encryption_keys n JOIN encryption_keys o ON o.id = :old "
            "WHERE n.suite = coalesce(CAST(:suite AS text), o.suite) AND n.status = 'active' "
            "AND n.id <> o.id AND n.attestation IS NOT NULL AND n.rotate_after > now() "
            "AND NOT (n.id = ANY (CAST(:exclude AS text[]))) "
            "ORDER BY n.usage_count, n.id LIMIT 1",
            old=old_key_id,
            suite=suite,
            exclude=list(exclude),
        )
        return str(rows[0][0]) if rows else None

    # -- writes: SECURITY DEFINER functions (sql/migrations/0010) --

    def begin_run(
        self, rotation_id: int, *, new_key_id: str, actor: str | None, request_id: str | None
    ) -> RotationRun:
        rows = self._run(
            f"SELECT {ROTATION_COLUMNS} FROM rotation_begin(:id, :new, :actor, :req)",
            id=rotation_id,
            new=new_key_id,
            actor=None if actor is None else actor[:256],
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return rotation_run(rows[0])

    def record_rewrap(
        self,
        rotation_id: int,
        document_id: str,
        *,
        new_key_id: str,
        encrypted_version_id: str | None,
        encrypted_size: int,
        actor: str | None,
        request_id: str | None,
    ) -> bool:
        rows = self._run(
            "SELECT rotation_record_rewrap(:id, :d, :k, :v, :n, :actor, :req)",
            id=rotation_id,
            d=document_id,
            k=new_key_id,
            v=encrypted_version_id,
            n=encrypted_size,
            actor=None if actor is None else actor[:256],
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return bool(rows[0][0])

    def record_reencrypt(
        self,
        rotation_id: int,
        document_id: str,
        *,
        new_key_id: str,
        encrypted_version_id: str | None,
        encrypted_size: int,
        from_kdf: str,
        to_kdf: str,
        actor: str | None,
        request_id: str | None,
    ) -> bool:
        rows = self._run(
            "SELECT rotation_record_reencrypt(:id, :d, :k, :v, :n, :fk, :tk, :actor, :req)",
            id=rotation_id,
            d=document_id,
            k=new_key_id,
            v=encrypted_version_id,
            n=encrypted_size,
            fk=from_kdf,
            tk=to_kdf,
            actor=None if actor is None else actor[:256],
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return bool(rows[0][0])

    def finish_run(
        self, rotation_id: int, *, actor: str | None, request_id: str | None
    ) -> RotationRun:
        rows = self._run(
            f"SELECT {ROTATION_COLUMNS} FROM rotation_finish(:id, :actor, :req)",
            id=rotation_id,
            actor=None if actor is None else actor[:256],
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return rotation_run(rows[0])
