"""Rotation runs (docs/KEYS.md, "Rotation"): the state rules of one key's rotation.

A run is opened ``queued`` when its key is queued for rotation (:mod:`pqfile.keys.pool`) or
an operator requests the key's revocation. It may carry a target suite (``to_suite``; None:
the old key's suite) and ``allow_downgrade`` (:func:`check_suite_move`). ``begin`` moves it
to ``running`` with a new key: the least-used active key of the target suite whose
attestation verifies; beginning a started run returns it unchanged. ``targets`` spreads a
batch of documents over the target suite's pool (least used first, as ingest picks keys).
``record_rewrap`` points one document at the key it was rewrapped to, only while the run is
running. ``finish`` ends a running run: ``completed`` (and the old key expired, decrypt
only) once no document uses the old key, else ``failed`` (the old key keeps decrypting; a
new run can finish the job).

These checks are made early, here; the database makes them again and is the authority
(sql/migrations/0010 and 0014: rotation_begin, rotation_record_rewrap, rotation_finish,
rotation_suite_check), and
appends each change's audit row in the same transaction as the change.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pqfile.crypto.kem import Suite
from pqfile.crypto.keyschedule import Kdf
from pqfile.errors import NoActiveKeyError, PQFileError
from pqfile.ports import RotationStatus

if TYPE_CHECKING:
    from pqfile.ports import KeyStorage

#: (key id, suite, public key, attestation) -> whether the attestation verifies.
AttestationCheck = Callable[[str, str, bytes, bytes | None], bool]
#: Candidate new keys tried before a run gives up (each failed one is skipped).
MAX_SUCCESSOR_TRIES = 8
#: Pool keys a batch of documents is spread over (the least used of the target suite).
MAX_TARGET_KEYS = 32

#: Suites in order of strength (``Suite.rank``, FORMAT.md §8): a move down is a downgrade.
SUITE_STRENGTH: dict[str, int] = {s.value: s.rank for s in Suite}


class SuiteMoveRefusedError(PQFileError):
    """A run's target suite is a downgrade it does not allow."""


class Move(enum.StrEnum):
    """How one document moves to its target key (docs/KEYS.md, "When to use which")."""

    REWRAP = "rewrap"  # a new header for the same data key; the body is copied
    REENCRYPT = "reencrypt"  # a fresh data key: the body is decrypted and encrypted again


def check_suite_move(from_suite: str, to_suite: str, *, allow_downgrade: bool = False) -> None:
    """Refuse a move from ``from_suite`` to a weaker ``to_suite`` unless
    ``allow_downgrade``. Same rule as rotation_suite_check (0015). A move across hash
    families is allowed: :func:`choose_move` makes it a re-encryption."""
    if from_suite not in SUITE_STRENGTH or to_suite not in SUITE_STRENGTH:
        raise SuiteMoveRefusedError(f"unknown suite {from_suite!r} or {to_suite!r}")
    if SUITE_STRENGTH[to_suite] < SUITE_STRENGTH[from_suite] and not allow_downgrade:
        raise SuiteMoveRefusedError(
            f"moving {from_suite} to {to_suite} is a downgrade: the run must allow it "
            "(--allow-downgrade)"
        )


def choose_move(package_kdf: Kdf, to_suite: str, *, compromised: bool) -> Move:
    """Rewrap or re-encrypt one document, decided from its package header's KDF byte (not
    from its key's suite: an mlkem1024 package rewrapped down to xwing keeps KDF 0x01):

    - a compromised old key: always re-encrypt (a rewrap keeps the exposed data key);
    - a target suite whose key schedule the package does not have (a SHA-256 package into
      the CNSA suite): re-encrypt;
    - otherwise rewrap.
    """
    if compromised:
        return Move.REENCRYPT
    if to_suite not in SUITE_STRENGTH:
        raise SuiteMoveRefusedError(f"unknown suite {to_suite!r}")
    if Suite(to_suite) is Suite.MLKEM1024 and package_kdf is not Kdf.HKDF_SHA384:
        return Move.REENCRYPT
    return Move.REWRAP


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
    #: The suite documents move to (None: the old key's suite).
    to_suite: str | None = None
    allow_downgrade: bool = False


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

    def get(self, rotation_id: int) -> RotationRun:
        """One run; raise PQFileError when there is none."""
        return _require(self._storage.rotations.get_run(rotation_id), rotation_id)

    def documents_on_key(self, key_id: str, limit: int = 100) -> list[str]:
        """Ids of documents still encrypted to ``key_id`` (a rotation's work list)."""
        return self._storage.rotations.documents_on_key(key_id, limit)

    def documents_to_rewrap(
        self, key_id: str, *, after: str | None, limit: int
    ) -> list[tuple[str, bool]]:
        """(document id, whether its package is stored) of the documents on ``key_id``
        after ``after`` in document id order: one batch of a run, from its cursor."""
        return self._storage.rotations.documents_after(key_id, after, limit)

    def target_suite(self, run: RotationRun) -> str:
        """The suite the run's documents move to, checked (SuiteMoveRefusedError)."""
        old = self._storage.keys.get_key(run.old_key_id)
        if old is None:
            raise PQFileError(f"no key {run.old_key_id}")
        target = run.to_suite or old.suite
        check_suite_move(old.suite, target, allow_downgrade=run.allow_downgrade)
        return target

    def targets(self, run: RotationRun, count: int) -> list[str]:
        """A target key for each of ``count`` documents: spread over the least-used active
        keys of the run's target suite whose attestation verifies, each document to the key
        with the fewest uses so far (counting this batch), as ingest picks keys."""
        if count <= 0:
            return []
        suite = self.target_suite(run)
        loads: list[tuple[int, str]] = []
        for key_id, uses in self._storage.rotations.pool_keys(
            suite, exclude=run.old_key_id, limit=MAX_TARGET_KEYS
        ):
            record = self._storage.keys.get_key(key_id)
            if record is not None and self._check(
                record.key_id, record.suite, record.public_key, record.attestation
            ):
                loads.append((uses, key_id))
        if not loads:
            raise NoActiveKeyError(f"no active {suite} key to rotate {run.old_key_id} onto")
        heapq.heapify(loads)
        chosen: list[str] = []
        for _ in range(count):
            uses, key_id = heapq.heappop(loads)
            chosen.append(key_id)
            heapq.heappush(loads, (uses + 1, key_id))
        return chosen

    def begin(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRun:
        """Pick the new key (least-used active key of the same suite, attestation verified)
        and start the run. Idempotent: a run already started is returned as it is."""
        run = _require(self._storage.rotations.get_run(rotation_id), rotation_id)
        if run.status != RotationStatus.QUEUED:
            return run
        new_key_id = self._successor(run.old_key_id, self.target_suite(run))
        return self._storage.rotations.begin_run(
            rotation_id, new_key_id=new_key_id, actor=actor or self._actor, request_id=request_id
        )

    def _successor(self, old_key_id: str, suite: str) -> str:
        skipped: list[str] = []
        for _ in range(MAX_SUCCESSOR_TRIES):
            candidate = self._storage.rotations.successor(old_key_id, suite=suite, exclude=skipped)
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
        new_key_id: str | None = None,
        actor: str | None = None,
        request_id: str | None = None,
    ) -> bool:
        """Point a rewrapped document at ``new_key_id`` (default: the run's first new key);
        False if it was already moved."""
        run = self._storage.rotations.get_run(rotation_id)
        if run is None or run.status != RotationStatus.RUNNING or run.new_key_id is None:
            raise PQFileError(f"rotation run {rotation_id} is not running")
        return self._storage.rotations.record_rewrap(
            rotation_id,
            document_id,
            new_key_id=new_key_id or run.new_key_id,
            encrypted_version_id=encrypted_version_id,
            encrypted_size=encrypted_size,
            actor=actor or self._actor,
            request_id=request_id,
        )

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
        actor: str | None = None,
        request_id: str | None = None,
    ) -> bool:
        """Point a re-encrypted document at ``new_key_id`` and its new version (audited
        ``document.reencrypt``); False if it was already moved."""
        run = self._storage.rotations.get_run(rotation_id)
        if run is None or run.status != RotationStatus.RUNNING or run.new_key_id is None:
            raise PQFileError(f"rotation run {rotation_id} is not running")
        return self._storage.rotations.record_reencrypt(
            rotation_id,
            document_id,
            new_key_id=new_key_id,
            encrypted_version_id=encrypted_version_id,
            encrypted_size=encrypted_size,
            from_kdf=from_kdf,
            to_kdf=to_kdf,
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
