"""``encryption_keys`` and ``key_requests`` (ports.KeyRepository): the key pool's rows.

Reads are SELECTs; every write is one call to a SECURITY DEFINER function of
sql/migrations/0010 and 0013 (key_select, key_create, key_queue_rotation, key_revoke,
key_expire, key_request, key_complete_request, rotation_queue; key_shred for the shred
role, PostgresShredRepository), which checks the caller's role, the transition and its
invariants and appends the audit row in the same transaction. The rules the pool applies
before calling them are in pqfile.keys; only the roles that unwrap may read
``wrapped_seed`` (0009, 0010).
"""

# SQL text only ever interpolates this module's constant column lists; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pqfile.adapters.postgres.connection import Runner
from pqfile.keys.audit_chain import MAX_REQUEST_ID_CHARS, bounded_text
from pqfile.keys.model import KeyRecord, KeyStatus, NewKey, SealedSeed, SelectedKey
from pqfile.ports import CompromiseCandidate, KeyRequest, ShredCandidate, ShredOutcome

KEY_COLUMNS = (
    "id, suite, public_key, kms_key_arn, status, usage_count, bytes_encrypted, created_at, "
    "activated_at, rotate_after, rotation_queued_at, expired_at, revoked_at, revoke_reason, "
    "last_used_at, attestation"
)

# The least-used active, attested key of a suite, one use counted (key_select: SKIP LOCKED
# lets concurrent callers take the next key instead of queueing; the status is checked
# again on the locked row). The public key and attestation come back for the caller to
# verify; public keys never change, so callers parse each once.
_SELECT_KEY_SQL = (
    "SELECT id, suite, usage_count, bytes_encrypted, public_key, attestation "
    "FROM key_select(:suite, :nbytes, :max_documents, :max_bytes, :wait, "
    "CAST(:exclude AS text[]))"
)


def key_record(r: Sequence[Any]) -> KeyRecord:
    """A row of ``KEY_COLUMNS`` as a KeyRecord."""
    return KeyRecord(
        key_id=r[0],
        suite=r[1],
        public_key=bytes(r[2]),
        kms_key_arn=r[3],
        status=KeyStatus.from_name(r[4]),
        usage_count=int(r[5]),
        bytes_encrypted=int(r[6]),
        created_at=r[7],
        activated_at=r[8],
        rotate_after=r[9],
        rotation_queued_at=r[10],
        expired_at=r[11],
        revoked_at=r[12],
        revoke_reason=r[13],
        last_used_at=r[14],
        attestation=None if r[15] is None else bytes(r[15]),
    )


def _claim(actor: str | None) -> str | None:
    # Only a claim (a person's name, kept as `claimed_by`): the database decides the actor.
    return None if actor is None else actor[:256]


class PostgresKeyRepository:
    """ports.KeyRepository on a Database (autocommit) or a Session (in a transaction)."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner.run

    def now(self) -> dt.datetime:
        now: dt.datetime = self._run("SELECT now()")[0][0]
        return now

    def take_least_used(
        self,
        suite: str,
        *,
        nbytes: int,
        max_documents: int,
        max_bytes: int,
        wait: bool,
        exclude: Sequence[str] = (),
    ) -> SelectedKey | None:
        rows = self._run(
            _SELECT_KEY_SQL,
            suite=suite,
            nbytes=nbytes,
            max_documents=max_documents,
            max_bytes=max_bytes,
            wait=wait,
            exclude=list(exclude),
        )
        if not rows:
            return None
        r = rows[0]
        return SelectedKey(
            r[0], r[1], int(r[2]), int(r[3]), bytes(r[4]), None if r[5] is None else bytes(r[5])
        )

    def count_selectable(
        self, suite: str, *, max_documents: int, max_bytes: int, exclude: Sequence[str] = ()
    ) -> int:
        rows = self._run(
            "SELECT count(*) FROM encryption_keys WHERE suite = :suite AND status = 'active' "
            "AND rotate_after > now() AND attestation IS NOT NULL "
            "AND usage_count < :max_documents AND bytes_encrypted < :max_bytes "
            "AND NOT (id = ANY (CAST(:exclude AS text[])))",
            suite=suite,
            max_documents=max_documents,
            max_bytes=max_bytes,
            exclude=list(exclude),
        )
        return int(rows[0][0])

    def get_key(self, key_id: str) -> KeyRecord | None:
        rows = self._run(f"SELECT {KEY_COLUMNS} FROM encryption_keys WHERE id = :id", id=key_id)
        return key_record(rows[0]) if rows else None

    def list_keys(
        self, suite: str | None = None, status: KeyStatus | None = None
    ) -> list[KeyRecord]:
        rows = self._run(
            f"SELECT {KEY_COLUMNS} FROM encryption_keys "
            "WHERE (CAST(:suite AS text) IS NULL OR suite = CAST(:suite AS text)) "
            "AND (CAST(:status AS text) IS NULL OR status = CAST(:status AS text)) "
            "ORDER BY suite, created_at, id",
            suite=suite,
            status=None if status is None else status.value,
        )
        return [key_record(r) for r in rows]

    def sealed_seed(self, key_id: str) -> SealedSeed | None:
        rows = self._run(
            "SELECT suite, status, wrapped_seed FROM encryption_keys WHERE id = :id", id=key_id
        )
        if not rows:
            return None
        # A shredded key holds no seed (NULL, sql/migrations/0013): its status refuses it.
        seed = b"" if rows[0][2] is None else bytes(rows[0][2])
        return SealedSeed(rows[0][0], KeyStatus.from_name(rows[0][1]), seed)

    def status_counts(self) -> list[tuple[str, str, int, float]]:
        rows = self._run(
            "SELECT suite, status, count(*), "
            "EXTRACT(EPOCH FROM now() - min(created_at))::float8 FROM encryption_keys "
            "GROUP BY suite, status ORDER BY suite, status"
        )
        return [(str(r[0]), str(r[1]), int(r[2]), float(r[3])) for r in rows]

    def active_usage(self) -> list[tuple[str, int]]:
        rows = self._run("SELECT suite, usage_count FROM encryption_keys WHERE status = 'active'")
        return [(str(r[0]), int(r[1])) for r in rows]

    def lock_pool(self, suite: str) -> None:
        self._run("SELECT pg_advisory_xact_lock(hashtext(:k))", k=f"pqfile:refill:{suite}")

    def count_active(self, suite: str) -> int:
        rows = self._run(
            "SELECT count(*) FROM encryption_keys WHERE suite = :suite AND status = 'active' "
            "AND attestation IS NOT NULL",
            suite=suite,
        )
        return int(rows[0][0])

    # -- writes: SECURITY DEFINER functions (sql/migrations/0010) --

    def create_key(
        self,
        key: NewKey,
        *,
        attestation: bytes,
        max_age: dt.timedelta,
        actor: str | None,
        request_id: str | None,
    ) -> KeyRecord:
        self._run(
            "SELECT key_create(:id, :suite, :pk, :ws, :arn, :att, "
            "CAST(:age AS double precision), :actor, :req)",
            id=key.key_id,
            suite=key.suite,
            pk=key.public_key,
            ws=key.wrapped_seed,
            arn=key.kms_key_arn,
            att=attestation,
            age=max_age.total_seconds(),
            actor=_claim(actor),
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        record = self.get_key(key.key_id)
        assert record is not None  # just inserted, in this transaction
        return record

    def queue_rotation(
        self,
        key_id: str,
        reason: str,
        *,
        max_documents: int,
        max_bytes: int,
        actor: str | None,
        request_id: str | None,
    ) -> bool:
        rows = self._run(
            "SELECT key_queue_rotation(:id, :reason, :maxd, :maxb, :actor, :req)",
            id=key_id,
            reason=reason,
            maxd=max_documents,
            maxb=max_bytes,
            actor=_claim(actor),
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return bool(rows[0][0])

    def revoke(
        self, key_id: str, reason: str, *, actor: str | None, request_id: str | None
    ) -> KeyStatus:
        rows = self._run(
            "SELECT key_revoke(:id, :reason, :actor, :req)",
            id=key_id,
            reason=reason,
            actor=_claim(actor),
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return KeyStatus.from_name(rows[0][0])

    def expire(self, key_id: str, *, actor: str | None, request_id: str | None) -> KeyStatus:
        rows = self._run(
            "SELECT key_expire(:id, :actor, :req)",
            id=key_id,
            actor=_claim(actor),
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return KeyStatus.from_name(rows[0][0])

    def request(
        self, key_id: str, kind: str, reason: str, *, actor: str | None, request_id: str | None
    ) -> int:
        rows = self._run(
            "SELECT key_request(:id, :kind, :reason, :actor, :req)",
            id=key_id,
            kind=kind,
            reason=reason,
            actor=_claim(actor),
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return int(rows[0][0])

    def pending_requests(self, key_id: str | None = None) -> list[KeyRequest]:
        rows = self._run(
            "SELECT id, key_id, kind, reason, requested_by FROM key_requests "
            "WHERE status = 'pending' AND (CAST(:k AS text) IS NULL OR key_id = CAST(:k AS text)) "
            "ORDER BY id",
            k=key_id,
        )
        return [KeyRequest(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows]

    def complete_request(
        self, request: int, *, actor: str | None, request_id: str | None
    ) -> bool:
        rows = self._run(
            "SELECT key_complete_request(:id, :actor, :req)",
            id=request,
            actor=_claim(actor),
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return bool(rows[0][0])

    # -- operators: queue a rotation now (sql/migrations/0013) --

    def queue_rotation_now(
        self,
        key_id: str,
        reason: str,
        *,
        to_suite: str | None,
        actor: str | None,
        request_id: str | None,
    ) -> int:
        """``rotation_queue``: the key's open run (or a new one), with its target suite."""
        rows = self._run(
            "SELECT rotation_queue(:id, :reason, :to_suite, :actor, :req)",
            id=key_id,
            reason=reason,
            to_suite=to_suite,
            actor=_claim(actor),
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return int(rows[0][0])

    def set_rotation_target(
        self,
        rotation_id: int,
        to_suite: str | None,
        *,
        allow_downgrade: bool,
        actor: str | None,
        request_id: str | None,
    ) -> None:
        """``rotation_set_target`` (0014): a queued run's target suite and whether it may
        move to a weaker suite; the database checks the move."""
        self._run(
            "SELECT id FROM rotation_set_target(:id, :to_suite, :down, :actor, :req)",
            id=rotation_id,
            to_suite=to_suite,
            down=allow_downgrade,
            actor=_claim(actor),
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )


def _request_with_suite(r: Sequence[Any]) -> KeyRequest:
    return KeyRequest(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), suite=str(r[5]))


class PostgresShredRepository:
    """ports.ShredRepository as ``pqfile_shred`` (sql/migrations/0013, 0015): it reads what a
    shred or a compromise purges and commits it with key_shred() or
    key_compromise_complete(); nothing else."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner.run

    def pending_shreds(self) -> list[KeyRequest]:
        rows = self._run(
            "SELECT q.id, q.key_id, q.kind, q.reason, q.requested_by, k.suite "
            "FROM key_requests q JOIN encryption_keys k ON k.id = q.key_id "
            "WHERE q.status = 'pending' AND q.kind = 'shred' ORDER BY q.id"
        )
        return [_request_with_suite(r) for r in rows]

    def shred_candidates(self, request: int) -> list[ShredCandidate]:
        rows = self._run(
            "SELECT document_id, encrypted_bucket, encrypted_key, lost "
            "FROM key_shred_candidates(:r)",
            r=request,
        )
        return [ShredCandidate(str(r[0]), str(r[1]), str(r[2]), bool(r[3])) for r in rows]

    def shred(
        self, request: int, *, versions_deleted: int, request_id: str | None
    ) -> ShredOutcome:
        rows = self._run(
            "SELECT document_id, tenant FROM key_shred(:r, :n, NULL, :req)",
            r=request,
            n=versions_deleted,
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        at = self._run(
            "SELECT k.shredded_at FROM encryption_keys k JOIN key_requests q ON q.key_id = k.id "
            "WHERE q.id = :r",
            r=request,
        )
        shredded_at: dt.datetime = at[0][0]
        return ShredOutcome(tuple((str(r[0]), str(r[1])) for r in rows), shredded_at)

    def pending_compromises(self) -> list[KeyRequest]:
        rows = self._run(
            "SELECT q.id, q.key_id, q.kind, q.reason, q.requested_by, k.suite "
            "FROM key_requests q JOIN encryption_keys k ON k.id = q.key_id "
            "WHERE q.status = 'pending' AND q.kind = 'compromise' ORDER BY q.id"
        )
        return [_request_with_suite(r) for r in rows]

    def compromise_candidates(self, request: int) -> list[CompromiseCandidate]:
        rows = self._run(
            "SELECT document_id, encrypted_bucket, encrypted_key, keep_version_id "
            "FROM key_compromise_candidates(:r)",
            r=request,
        )
        return [CompromiseCandidate(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    def complete_compromise(
        self, request: int, *, deleted: Mapping[str, int], request_id: str | None
    ) -> bool:
        rows = self._run(
            "SELECT key_compromise_complete(:r, CAST(:d AS jsonb), NULL, :req)",
            r=request,
            d=json.dumps({str(k): int(v) for k, v in deleted.items()}),
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return bool(rows[0][0])


def rotation_overview(runner: Runner, rotation_ids: Sequence[int] | None = None) -> list[
    dict[str, Any]
]:
    """Rotation runs for an operator's progress and summary (`pqfile keys rotate`): the
    given ids, or every queued and running run. SELECT on key_rotations only."""
    rows = runner.run(
        "SELECT id, old_key_id, new_key_id, reason, status, to_suite, documents_total, "
        "documents_rewrapped, documents_failed, error FROM key_rotations "
        "WHERE (CAST(:ids AS bigint[]) IS NULL AND status IN ('queued', 'running')) "
        "OR id = ANY (CAST(:ids AS bigint[])) ORDER BY id",
        ids=None if rotation_ids is None else list(rotation_ids),
    )
    names = ("rotation_id", "old_key_id", "new_key_id", "reason", "status", "to_suite",
             "documents_total", "documents_rewrapped", "documents_failed", "error")  # fmt: skip
    return [dict(zip(names, r, strict=True)) for r in rows]
