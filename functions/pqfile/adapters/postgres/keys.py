"""``encryption_keys`` (ports.KeyRepository): the key pool's rows, SQL only.

The rules (which key to hand out, when to refill or rotate, custody) are in pqfile.keys;
the database adds its own guards (sql/migrations/0002_keys.sql: status transitions,
immutable key material, timestamps) and grants (0005, 0009: only the roles that unwrap
may read ``wrapped_seed``).
"""

# SQL text only ever interpolates this module's constant column lists; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from pqfile.adapters.postgres.connection import Runner
from pqfile.keys.model import KeyRecord, KeyStatus, NewKey, SealedSeed, SelectedKey

KEY_COLUMNS = (
    "id, suite, public_key, kms_key_arn, status, usage_count, bytes_encrypted, created_at, "
    "activated_at, rotate_after, rotation_queued_at, expired_at, revoked_at, revoke_reason, "
    "last_used_at"
)

# Least-used active key of a suite; SKIP LOCKED lets concurrent callers take the next one
# instead of queueing behind each other. The outer status check re-validates the row after
# the lock (a key revoked meanwhile is never handed out). Few columns come back: this is
# the hot path; public keys never change, so callers take them from a per-process cache.
_SELECT_KEY_SQL = """
UPDATE encryption_keys AS k
   SET usage_count = k.usage_count + 1,
       bytes_encrypted = k.bytes_encrypted + :nbytes,
       last_used_at = now()
 WHERE k.id = (
         SELECT c.id FROM encryption_keys AS c
          WHERE c.suite = :suite AND c.status = 'active' AND c.rotate_after > now()
            AND c.usage_count < :max_documents AND c.bytes_encrypted < :max_bytes
          ORDER BY c.usage_count, c.id
          LIMIT 1
          FOR UPDATE SKIP LOCKED)
   AND k.status = 'active'
RETURNING k.id, k.suite, k.usage_count, k.bytes_encrypted
"""

_SELECT_KEY_WAIT_SQL = _SELECT_KEY_SQL.replace("FOR UPDATE SKIP LOCKED", "FOR UPDATE")


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
    )


class PostgresKeyRepository:
    """ports.KeyRepository on a Database (autocommit) or a Session (in a transaction)."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner.run

    def now(self) -> dt.datetime:
        now: dt.datetime = self._run("SELECT now()")[0][0]
        return now

    def take_least_used(
        self, suite: str, *, nbytes: int, max_documents: int, max_bytes: int, wait: bool
    ) -> SelectedKey | None:
        rows = self._run(
            _SELECT_KEY_WAIT_SQL if wait else _SELECT_KEY_SQL,
            suite=suite,
            nbytes=nbytes,
            max_documents=max_documents,
            max_bytes=max_bytes,
        )
        if not rows:
            return None
        r = rows[0]
        return SelectedKey(r[0], r[1], int(r[2]), int(r[3]))

    def count_selectable(self, suite: str, *, max_documents: int, max_bytes: int) -> int:
        rows = self._run(
            "SELECT count(*) FROM encryption_keys WHERE suite = :suite AND status = 'active' "
            "AND rotate_after > now() AND usage_count < :max_documents "
            "AND bytes_encrypted < :max_bytes",
            suite=suite,
            max_documents=max_documents,
            max_bytes=max_bytes,
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
        return SealedSeed(rows[0][0], KeyStatus.from_name(rows[0][1]), bytes(rows[0][2]))

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

    # -- in a transaction --

    def lock_pool(self, suite: str) -> None:
        self._run("SELECT pg_advisory_xact_lock(hashtext(:k))", k=f"pqfile:refill:{suite}")

    def count_active(self, suite: str) -> int:
        rows = self._run(
            "SELECT count(*) FROM encryption_keys WHERE suite = :suite AND status = 'active'",
            suite=suite,
        )
        return int(rows[0][0])

    def insert_key(self, key: NewKey, *, max_age: dt.timedelta) -> KeyRecord:
        rows = self._run(
            "INSERT INTO encryption_keys (id, suite, public_key, wrapped_seed, kms_key_arn, "
            "rotate_after) VALUES (:id, :suite, :pk, :ws, :arn, now() + "
            "make_interval(secs => :age)) "
            f"RETURNING {KEY_COLUMNS}",
            id=key.key_id,
            suite=key.suite,
            pk=key.public_key,
            ws=key.wrapped_seed,
            arn=key.kms_key_arn,
            age=max_age.total_seconds(),
        )
        return key_record(rows[0])

    def lock_status(self, key_id: str) -> KeyStatus | None:
        rows = self._run("SELECT status FROM encryption_keys WHERE id = :id FOR UPDATE", id=key_id)
        return KeyStatus.from_name(rows[0][0]) if rows else None

    def set_status(self, key_id: str, status: KeyStatus, *, reason: str | None) -> KeyRecord:
        rows = self._run(
            "UPDATE encryption_keys SET status = :status, "
            "revoke_reason = coalesce(CAST(:reason AS text), revoke_reason) "
            f"WHERE id = :id RETURNING {KEY_COLUMNS}",
            status=status.value,
            reason=reason,
            id=key_id,
        )
        return key_record(rows[0])

    def set_status_if(
        self, key_id: str, *, current: Sequence[KeyStatus], status: KeyStatus
    ) -> bool:
        rows = self._run(
            "UPDATE encryption_keys SET status = :status "
            "WHERE id = :id AND status = ANY(CAST(:current AS text[])) RETURNING id",
            status=status.value,
            id=key_id,
            current=[s.value for s in current],
        )
        return bool(rows)

    def count_use(self, key_id: str, nbytes: int) -> None:
        self._run(
            "UPDATE encryption_keys SET usage_count = usage_count + 1, "
            "bytes_encrypted = bytes_encrypted + :b, last_used_at = now() WHERE id = :id",
            b=nbytes,
            id=key_id,
        )
