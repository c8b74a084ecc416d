"""Pure key-pool policy: what each status allows, refill arithmetic, rotation reasons, the
unwrapped-key cache and the audit chain's canonical encoding."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import pytest

from pqfile.errors import KeyNotUsableError
from pqfile.keys.audit_chain import (
    GENESIS_HASH,
    MAX_DETAIL_FIELD_BYTES,
    MAX_DETAILS_BYTES,
    AuditRow,
    bounded_details,
    canonical_details,
    compute_hash,
    encode_row,
    verify_rows,
)
from pqfile.keys.cache import UnwrappedKeyCache
from pqfile.keys.model import KeyRecord, KeyStatus, Purpose, usable_for
from pqfile.keys.policy import PoolPolicy, RotationReason, usage_spread

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def _key(
    key_id: str, usage: int = 0, status: KeyStatus = KeyStatus.ACTIVE, **kw: object
) -> KeyRecord:
    fields: dict[str, object] = {
        "key_id": key_id,
        "suite": "xwing",
        "public_key": b"",
        "kms_key_arn": "arn",
        "status": status,
        "usage_count": usage,
        "bytes_encrypted": 0,
        "created_at": NOW - dt.timedelta(days=1),
        "activated_at": NOW - dt.timedelta(days=1),
        "rotate_after": NOW + dt.timedelta(days=29),
        "attestation": b"m" * 32,
    }
    fields.update(kw)
    return KeyRecord(**fields)  # type: ignore[arg-type]


def test_what_each_status_allows() -> None:
    assert usable_for(KeyStatus.EXPIRED, Purpose.DECRYPT)
    assert not usable_for(KeyStatus.EXPIRED, Purpose.ENCRYPT)
    assert not any(usable_for(KeyStatus.REVOKED, p) for p in Purpose)
    with pytest.raises(KeyNotUsableError, match="revoked"):
        _key("a", status=KeyStatus.REVOKED).require(Purpose.DECRYPT)


@pytest.mark.parametrize(("active", "expected"), [(0, 100), (79, 21), (80, 0), (100, 0), (120, 0)])
def test_refill_counts(active: int, expected: int) -> None:
    assert PoolPolicy().keys_to_create(active) == expected


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        PoolPolicy(target_active=10, floor_active=11)
    with pytest.raises(ValueError):
        PoolPolicy(max_age=dt.timedelta(0))
    assert PoolPolicy().max_age == dt.timedelta(days=30)


def test_rotation_reasons() -> None:
    policy = PoolPolicy(max_documents=10, max_bytes=1000)
    assert policy.rotation_reason(_key("a"), NOW) is None
    assert policy.rotation_reason(_key("a", rotate_after=NOW), NOW) is RotationReason.AGE
    assert policy.rotation_reason(_key("a", usage=10), NOW) is RotationReason.DOCUMENT_CAP
    assert policy.rotation_reason(_key("a", bytes_encrypted=1000), NOW) is RotationReason.BYTES_CAP
    assert policy.rotation_reason(_key("a", usage=99, status=KeyStatus.EXPIRED), NOW) is None
    # keys created before attestation (migration 0010) are rotated away, never selected
    assert policy.rotation_reason(_key("a", attestation=None), NOW) is RotationReason.UNATTESTED
    assert policy.rotation_reason(_key("a", attestation=None, usage=10), NOW) is (
        RotationReason.DOCUMENT_CAP
    )
    due = policy.due_for_rotation([_key("a"), _key("b", usage=11)], NOW)
    assert [(k.key_id, r) for k, r in due] == [("b", RotationReason.DOCUMENT_CAP)]


def test_usage_spread() -> None:
    assert usage_spread([]).ratio is None
    assert usage_spread([0, 5]).ratio is None
    spread = usage_spread([80, 81, 96])
    assert (spread.min_usage, spread.max_usage, spread.total_usage) == (80, 96, 257)
    assert spread.ratio == pytest.approx(1.2)


def test_cache_ttl_cap_and_repr() -> None:
    now = [0.0]
    cache: UnwrappedKeyCache[bytes] = UnwrappedKeyCache(
        ttl_seconds=10, max_entries=2, clock=lambda: now[0]
    )
    cache.put("a", b"secret-a")
    cache.put("b", b"secret-b")
    assert cache.get("a") == b"secret-a"  # a is now most recently used
    cache.put("c", b"secret-c")  # evicts b
    assert cache.get("b") is None and cache.get("c") == b"secret-c"
    now[0] = 10.0
    assert cache.get("a") is None and len(cache) == 0  # c expired too: purged on the way
    assert "secret" not in repr(cache)
    cache.put("c", b"secret-c")
    cache.discard("c")
    assert len(cache) == 0
    with pytest.raises(ValueError):
        UnwrappedKeyCache(ttl_seconds=0)


def test_cache_purges_expired_secrets_on_put_and_get() -> None:
    # Finding 7: an expired secret must not stay in memory until its key is asked for again.
    now = [0.0]
    cache: UnwrappedKeyCache[bytes] = UnwrappedKeyCache(
        ttl_seconds=10, max_entries=100, clock=lambda: now[0], purge_batch=4
    )
    for i in range(10):
        cache.put(f"k{i}", b"secret")
    assert cache.get("k0") == b"secret"  # recently used, but its time still runs out
    now[0] = 10.0
    cache.put("fresh", b"secret")  # purges at most 4 expired entries, oldest first
    assert len(cache) == 7 and "k0" not in cache._entries
    assert cache.get("other") is None  # every call purges: 4 more
    assert len(cache) == 3
    cache.get("other")
    assert len(cache) == 1 and cache.get("fresh") == b"secret"  # only the live entry left
    now[0] = 20.0
    assert cache.get("nothing") is None and len(cache) == 0
    # a re-put restarts the key's time to live (and its place in the purge order)
    cache.put("a", b"1")
    cache.put("b", b"2")
    now[0] = 25.0
    cache.put("a", b"1")
    now[0] = 31.0
    cache.get("x")
    assert cache.get("a") == b"1" and cache.get("b") is None
    with pytest.raises(ValueError):
        UnwrappedKeyCache(purge_batch=0)


def _jsonb_size(value: object) -> int:
    import json

    return len(json.dumps(value, separators=(", ", ": "), ensure_ascii=False).encode())


def test_bounded_details_fit_the_database_caps() -> None:
    small = {"reason": "DecryptionError", "size": 12, "nested": {"a": [1, 2]}}
    assert bounded_details(small) == small  # nothing to do
    assert bounded_details(None) is None
    big = {
        "huge": "x" * 10_000,
        "wide": "ü" * 2_000,
        "list": list(range(1_000)),
        "k" * 100: "long key",
        **{f"f{i}": "y" * 900 for i in range(8)},
    }
    out = bounded_details(big)
    assert out is not None
    assert len(canonical_details(out).encode()) <= MAX_DETAILS_BYTES  # type: ignore[union-attr]
    assert all(_jsonb_size(v) <= MAX_DETAIL_FIELD_BYTES for v in out.values())
    assert all(len(k) <= 64 for k in out)
    assert out["truncated"] is True
    cut = bounded_details({"key": "z" * 5000})
    assert cut is not None and str(cut["key"]).startswith("zzz")
    assert str(cut["key"]).endswith("[5000 chars, truncated]")


def _row(seq: int, prev: bytes, **kw: object) -> AuditRow:
    base: dict[str, object] = {
        "seq": seq,
        "occurred_at": NOW + dt.timedelta(microseconds=seq),
        "operation": "encrypt",
        "outcome": "success",
        "actor": "me",
        "document_id": f"doc-{seq}",
        "key_id": None,
        "request_id": None,
        "details": canonical_details({"b": 1, "a": "x"}),
        "prev_hash": prev,
        "row_hash": b"",
    }
    base.update(kw)
    row = AuditRow(**base)  # type: ignore[arg-type]
    return dataclasses.replace(row, row_hash=compute_hash(row))


def _chain(n: int) -> list[AuditRow]:
    rows: list[AuditRow] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        rows.append(_row(seq, prev))
        prev = rows[-1].row_hash
    return rows


def test_canonical_encoding_is_pinned() -> None:
    encoded = encode_row(
        seq=1,
        occurred_at=dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        operation="encrypt",
        outcome="success",
        actor="a",
        document_id=None,
        key_id="k",
        request_id=None,
        details='{"a":1}',
        prev_hash=bytes(32),
    )
    assert encoded.startswith(
        b"pqfile/audit/v1\x00\x00\x00\x011\x00\x00\x00\x1b2026-01-02T03:04:05.000006Z"
    )
    assert b"\x00\x00\x00\x01a\xff\xff\xff\xff\x00\x00\x00\x01k\xff\xff\xff\xff" in encoded
    assert encoded.endswith(b"\x00\x00\x00\x20" + bytes(32))
    assert canonical_details({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert canonical_details(None) is None
    assert len(hashlib.sha256(encoded).digest()) == 32


def test_verify_rows_pure() -> None:
    rows = _chain(5)
    assert verify_rows(rows, (5, rows[-1].row_hash)).ok
    assert verify_rows(rows[:2] + rows[3:]).broken_seq == 3  # deleted
    edited = [*rows[:2], dataclasses.replace(rows[2], actor="x"), *rows[3:]]
    assert verify_rows(edited).broken_seq == 3
    assert verify_rows(rows[:4], (5, rows[-1].row_hash)).broken_seq == 5  # tail deleted
    assert verify_rows(rows, (4, rows[3].row_hash)).broken_seq == 5  # beyond head
    report = verify_rows(rows, (5, b"\x00" * 32))
    assert not report.ok and report.broken_seq == 5
    with pytest.raises(ValueError):
        compute_hash(dataclasses.replace(rows[0], occurred_at=dt.datetime(2026, 1, 1)))


def test_verify_rows_with_anchors() -> None:
    rows = _chain(5)
    assert verify_rows(rows, anchors={3: rows[2].row_hash}).ok
    assert verify_rows(rows, anchors={3: b"\x01" * 32}).broken_seq == 3
    assert verify_rows(rows[:2], anchors={4: rows[3].row_hash}).broken_seq == 4


def test_v2_encoding_adds_the_database_role() -> None:
    common: dict[str, object] = {
        "seq": 7,
        "occurred_at": NOW,
        "operation": "decrypt",
        "outcome": "success",
        "actor": "a",
        "document_id": None,
        "key_id": None,
        "request_id": None,
        "details": None,
        "prev_hash": bytes(32),
    }
    v1 = encode_row(**common)  # type: ignore[arg-type]
    v2 = encode_row(**common, db_role="pqfile_ingest")  # type: ignore[arg-type]
    assert v1.startswith(b"pqfile/audit/v1") and v2.startswith(b"pqfile/audit/v2")
    assert v2[len(b"pqfile/audit/v2") :].endswith(
        b"\x00\x00\x00\x0dpqfile_ingest" + b"\x00\x00\x00\x20" + bytes(32)
    )
    assert v1[len(b"pqfile/audit/v1") :] + b"" != v2[len(b"pqfile/audit/v2") :]
    rows = [_row(1, GENESIS_HASH, db_role="pqfile_ingest")]
    assert verify_rows(rows).ok
    assert verify_rows([dataclasses.replace(rows[0], db_role=None)]).broken_seq == 1
