"""Rotation runs (docs/KEYS.md, "Rotation"): the state rules of one key's rotation.

A run is opened ``queued`` when its key is queued for rotation (:mod:`pqfile.keys.pool`).
``begin`` moves it to ``running`` with a new key: the least-used active key of the same
suite; beginning a started run returns it unchanged. ``record_rewrap`` points one document
at the new key, only while the run is running. ``finish`` ends a running run:
``completed`` (and the old key expired, decrypt only) once no document uses the old key,
else ``failed`` (the old key keeps decrypting; a new run can finish the job). Every change
is audited in the same transaction as the change itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pqfile.errors import NoActiveKeyError, PQFileError
from pqfile.keys.model import KeyStatus
from pqfile.ports import RotationStatus

if TYPE_CHECKING:
    from pqfile.ports import KeyStorage


@dataclass(frozen=True)
class RotationRun:
    """One row of ``key_rotations``."""

    rotation_id: int
    old_key_id: str
    new_key_id: str | None
    reason: str
    status: str  # a RotationStatus value
    documents_total: int
    documents_rewrapped: int
    documents_failed: int
    error: str | None


class RotationRuns:
    """Begins, records and finishes rotation runs over the key storage, audited."""

    def __init__(self, storage: KeyStorage, *, actor: str = "pqfile") -> None:
        self._storage = storage
        self._actor = actor

    def runs(self, status: str | None = None) -> list[RotationRun]:
        """The runs with ``status`` (all without), oldest first."""
        return self._storage.rotations.list_runs(status)

    def documents_on_key(self, key_id: str, limit: int = 100) -> list[str]:
        """Ids of documents still encrypted to ``key_id`` (a rotation's work list)."""
        return self._storage.rotations.documents_on_key(key_id, limit)

    def begin(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRun:
        """Pick the new key (least-used active key of the same suite) and start the run.
        Idempotent: a run already started is returned as it is."""
        with self._storage.transaction() as tx:
            run = _require(tx.rotations.lock_run(rotation_id), rotation_id)
            if run.status != RotationStatus.QUEUED:
                return run
            new_key_id = tx.rotations.successor(run.old_key_id)
            if new_key_id is None:
                raise NoActiveKeyError(f"no active key to rotate {run.old_key_id} onto")
            run = tx.rotations.start_run(
                rotation_id, status=RotationStatus.RUNNING, new_key_id=new_key_id
            )
            tx.audit.append(
                operation="key.rotation_started",
                outcome="success",
                actor=actor or self._actor,
                key_id=run.old_key_id,
                request_id=request_id,
                details={
                    "rotation_id": run.rotation_id,
                    "new_key_id": run.new_key_id,
                    "documents_total": run.documents_total,
                },
            )
        return run

    def record_rewrap(
        self,
        rotation_id: int,
        document_id: str,
        *,
        encrypted_version_id: str | None,
        encrypted_size: int,
        actor: str | None = None,
        request_id: str | None = None,
    ) -> bool:
        """Point a rewrapped document at the run's new key; False if it was already moved."""
        with self._storage.transaction() as tx:
            run = tx.rotations.get_run(rotation_id)
            if run is None or run.status != RotationStatus.RUNNING or run.new_key_id is None:
                raise PQFileError(f"rotation run {rotation_id} is not running")
            old, new = run.old_key_id, run.new_key_id
            plaintext_size = tx.rotations.move_document(
                document_id,
                old_key_id=old,
                new_key_id=new,
                encrypted_version_id=encrypted_version_id,
                encrypted_size=encrypted_size,
            )
            if plaintext_size is None:
                return False
            tx.keys.count_use(new, plaintext_size)
            tx.rotations.count_rewrapped(rotation_id)
            tx.audit.append(
                operation="document.rewrap",
                outcome="success",
                actor=actor or self._actor,
                document_id=document_id,
                key_id=new,
                request_id=request_id,
                details={"rotation_id": rotation_id, "from_key_id": old},
            )
        return True

    def finish(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRun:
        """Complete the run and expire the old key once no document uses it; else mark the
        run failed (the old key keeps decrypting)."""
        actor = actor or self._actor
        with self._storage.transaction() as tx:
            run = _require(tx.rotations.lock_run(rotation_id), rotation_id)
            if run.status != RotationStatus.RUNNING:
                return run
            left = tx.rotations.count_documents_on(run.old_key_id)
            if left:
                status, error = RotationStatus.FAILED, f"{left} document(s) still use the old key"
            else:
                status, error = RotationStatus.COMPLETED, None
                tx.keys.set_status_if(
                    run.old_key_id,
                    current=(KeyStatus.ACTIVE, KeyStatus.ROTATION_QUEUED),
                    status=KeyStatus.EXPIRED,
                )
            run = tx.rotations.close_run(
                rotation_id, status=status, error=error, documents_left=left
            )
            if status is RotationStatus.COMPLETED:
                tx.audit.append(
                    operation="key.expire",
                    outcome="success",
                    actor=actor,
                    key_id=run.old_key_id,
                    request_id=request_id,
                    details={"rotation_id": rotation_id, "to": "expired"},
                )
            tx.audit.append(
                operation="key.rotation_finished",
                outcome="success" if status is RotationStatus.COMPLETED else "failure",
                actor=actor,
                key_id=run.old_key_id,
                request_id=request_id,
                details={
                    "rotation_id": rotation_id,
                    "new_key_id": run.new_key_id,
                    "documents_rewrapped": run.documents_rewrapped,
                    "documents_left": left,
                },
            )
        return run


def _require(run: RotationRun | None, rotation_id: int) -> RotationRun:
    if run is None:
        raise PQFileError(f"no rotation run {rotation_id}")
    return run
