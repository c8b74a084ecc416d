"""Rotation runs (docs/KEYS.md, "Rotation"): the state rules of one key's rotation.

A run is opened ``queued`` when its key is queued for rotation (:mod:`pqfile.keys.pool`) or
an operator requests the key's revocation. ``begin`` moves it to ``running`` with a new
key: the least-used active key of the same suite whose attestation verifies; beginning a
started run returns it unchanged. ``record_rewrap`` points one document at the new key,
only while the run is running. ``finish`` ends a running run: ``completed`` (and the old
key expired, decrypt only) once no document uses the old key, else ``failed`` (the old key
keeps decrypting; a new run can finish the job).

These checks are made early, here; the database makes them again and is the authority
(sql/migrations/0010: rotation_begin, rotation_record_rewrap, rotation_finish), and
appends each change's audit row in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pqfile.errors import NoActiveKeyError, PQFileError
from pqfile.ports import RotationStatus

if TYPE_CHECKING:
    from pqfile.ports import KeyStorage

#: (key id, suite, public key, attestation) -> whether the attestation verifies.
AttestationCheck = Callable[[str, str, bytes, bytes | None], bool]
#: Candidate new keys tried before a run gives up (each failed one is skipped).
MAX_SUCCESSOR_TRIES = 8


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
    """Begins, records and finishes rotation runs over the key storage."""

    def __init__(
        self, storage: KeyStorage, check_attestation: AttestationCheck, *, actor: str | None = None
    ) -> None:
        self._storage = storage
        self._check = check_attestation
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
        """Pick the new key (least-used active key of the same suite, attestation verified)
        and start the run. Idempotent: a run already started is returned as it is."""
        run = _require(self._storage.rotations.get_run(rotation_id), rotation_id)
        if run.status != RotationStatus.QUEUED:
            return run
        new_key_id = self._successor(run.old_key_id)
        return self._storage.rotations.begin_run(
            rotation_id, new_key_id=new_key_id, actor=actor or self._actor, request_id=request_id
        )

    def _successor(self, old_key_id: str) -> str:
        skipped: list[str] = []
        for _ in range(MAX_SUCCESSOR_TRIES):
            candidate = self._storage.rotations.successor(old_key_id, exclude=skipped)
            if candidate is None:
                break
            record = self._storage.keys.get_key(candidate)
            if record is not None and self._check(
                record.key_id, record.suite, record.public_key, record.attestation
            ):
                return candidate
            skipped.append(candidate)
        raise NoActiveKeyError(f"no active key to rotate {old_key_id} onto")

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
        run = self._storage.rotations.get_run(rotation_id)
        if run is None or run.status != RotationStatus.RUNNING or run.new_key_id is None:
            raise PQFileError(f"rotation run {rotation_id} is not running")
        return self._storage.rotations.record_rewrap(
            rotation_id,
            document_id,
            encrypted_version_id=encrypted_version_id,
            encrypted_size=encrypted_size,
            actor=actor or self._actor,
            request_id=request_id,
        )

    def finish(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRun:
        """Complete the run and expire the old key once no document uses it; else mark the
        run failed (the old key keeps decrypting)."""
        run = _require(self._storage.rotations.get_run(rotation_id), rotation_id)
        if run.status != RotationStatus.RUNNING:
            return run
        return self._storage.rotations.finish_run(
            rotation_id, actor=actor or self._actor, request_id=request_id
        )


def _require(run: RotationRun | None, rotation_id: int) -> RotationRun:
    if run is None:
        raise PQFileError(f"no rotation run {rotation_id}")
    return run
