"""``key_rotations`` (ports.RotationRepository): rotation runs and the documents they move.

SQL only; the run's state rules are in pqfile.keys.rotation_runs.
"""

# SQL text only ever interpolates this module's constant column lists; values are bound.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pqfile.adapters.postgres.connection import PermissionDeniedError, Runner
from pqfile.keys.rotation_runs import RotationRun
from pqfile.ports import RotationStatus

ROTATION_COLUMNS = (
    "id, old_key_id, new_key_id, reason, status, documents_total, documents_rewrapped, "
    "documents_failed, error"
)


def rotation_run(r: Sequence[Any]) -> RotationRun:
    """A row of ``ROTATION_COLUMNS`` as a RotationRun."""
    return RotationRun(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), int(r[6]), int(r[7]), r[8])


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

    # -- in a transaction --

    def open_run(self, old_key_id: str, reason: str) -> None:
        self._run(
            "INSERT INTO key_rotations (old_key_id, reason) VALUES (:id, :reason)",
            id=old_key_id,
            reason=reason,
        )

    def get_run(self, rotation_id: int) -> RotationRun | None:
        rows = self._run(
            f"SELECT {ROTATION_COLUMNS} FROM key_rotations WHERE id = :id", id=rotation_id
        )
        return rotation_run(rows[0]) if rows else None

    def lock_run(self, rotation_id: int) -> RotationRun | None:
        rows = self._run(
            f"SELECT {ROTATION_COLUMNS} FROM key_rotations WHERE id = :id FOR UPDATE",
            id=rotation_id,
        )
        return rotation_run(rows[0]) if rows else None

    def successor(self, old_key_id: str) -> str | None:
        rows = self._run(
            "SELECT n.id FROM encryption_keys n JOIN encryption_keys o ON o.id = :old "
            "WHERE n.suite = o.suite AND n.status = 'active' AND n.id <> o.id "
            "AND n.rotate_after > now() ORDER BY n.usage_count, n.id LIMIT 1",
            old=old_key_id,
        )
        return str(rows[0][0]) if rows else None

    def start_run(
        self, rotation_id: int, *, status: RotationStatus, new_key_id: str
    ) -> RotationRun:
        rows = self._run(
            "UPDATE key_rotations AS r SET status = :st, new_key_id = :new, "
            "started_at = now(), updated_at = now(), documents_total = "
            "(SELECT count(*) FROM documents WHERE key_id = r.old_key_id) "
            f"WHERE id = :id RETURNING {ROTATION_COLUMNS}",
            st=status.value,
            new=new_key_id,
            id=rotation_id,
        )
        return rotation_run(rows[0])

    def move_document(
        self,
        document_id: str,
        *,
        old_key_id: str,
        new_key_id: str,
        encrypted_version_id: str | None,
        encrypted_size: int,
    ) -> int | None:
        rows = self._run(
            "UPDATE documents SET key_id = :new, encrypted_version_id = :v, "
            "encrypted_size = :n, updated_at = now() "
            "WHERE document_id = :d AND key_id = :old RETURNING plaintext_size",
            new=new_key_id,
            old=old_key_id,
            v=encrypted_version_id,
            n=encrypted_size,
            d=document_id,
        )
        return int(rows[0][0] or 0) if rows else None

    def count_rewrapped(self, rotation_id: int) -> None:
        self._run(
            "UPDATE key_rotations SET documents_rewrapped = documents_rewrapped + 1, "
            "updated_at = now() WHERE id = :id",
            id=rotation_id,
        )

    def count_documents_on(self, key_id: str) -> int:
        rows = self._run("SELECT count(*) FROM documents WHERE key_id = :k", k=key_id)
        return int(rows[0][0])

    def close_run(
        self, rotation_id: int, *, status: RotationStatus, error: str | None, documents_left: int
    ) -> RotationRun:
        rows = self._run(
            "UPDATE key_rotations SET status = :st, error = :err, updated_at = now(), "
            "completed_at = CASE WHEN :st = 'completed' THEN now() END, "
            "documents_failed = :left "
            f"WHERE id = :id RETURNING {ROTATION_COLUMNS}",
            st=status.value,
            err=error,
            left=documents_left,
            id=rotation_id,
        )
        return rotation_run(rows[0])
