"""Migration 0013 on PostgreSQL, as each role: what a shred lists and commits, the seed
destroyed for good, tombstones append-only, and the refusals (docs/KEYS.md, "Shredding")."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pqfile.adapters.postgres.connection import (
    Database,
    ImmutableRowError,
    PermissionDeniedError,
)
from pqfile.adapters.postgres.keys import PostgresShredRepository
from pqfile.keys.model import IllegalTransitionError
from tests.fixtures.postgres import OPERATOR, REWRAP, SHRED, role_url

pytestmark = pytest.mark.integration

ARN = "arn:aws:kms:us-east-1:123456789012:key/test"


@pytest.fixture
def dbs(db_url: str) -> Iterator[dict[str, Database]]:
    opened = {
        "owner": Database.from_url(db_url),
        OPERATOR: Database.from_url(role_url(db_url, OPERATOR)),
        SHRED: Database.from_url(role_url(db_url, SHRED)),
        REWRAP: Database.from_url(role_url(db_url, REWRAP)),
    }
    yield opened
    for db in opened.values():
        db.close()


def _key(owner: Database, n: int) -> str:
    key_id = f"{n:032x}"
    owner.run(
        "INSERT INTO encryption_keys (id, suite, public_key, wrapped_seed, kms_key_arn, "
        "rotate_after, attestation) VALUES (:id, 'xwing', :pk, :ws, :arn, "
        "now() + interval '30 days', :att)",
        id=key_id, pk=b"\x01" * 1216, ws=b"\x02" * 64, arn=ARN, att=b"\x03" * 32,
    )  # fmt: skip
    return key_id


def _document(owner: Database, document_id: str, key_id: str) -> None:
    owner.run(
        "INSERT INTO documents (document_id, source_bucket, source_key, source_etag, key_id, "
        "suite, status, encrypted_bucket, encrypted_key, encrypted_version_id, tenant) VALUES "
        "(:d, 'up', :src, 'e', :k, 'xwing', 'stored', 'enc', :enc, 'v1', 'a')",
        d=document_id, src=f"uploads/a/{document_id}", k=key_id,
        enc=f"encrypted/{document_id}.pqf",
    )  # fmt: skip


def _request_shred(operator: Database, key_id: str) -> int:
    return int(
        operator.run("SELECT key_request(:k, 'shred', 'erase', 'ops', NULL)", k=key_id)[0][0]
    )


def test_shred_lists_lost_and_moved_documents_then_destroys_the_seed(
    dbs: dict[str, Database],
) -> None:
    owner = dbs["owner"]
    key_a, key_b = _key(owner, 1), _key(owner, 2)
    _document(owner, "lost-1", key_a)
    _document(owner, "moved-1", key_b)  # rotated from A to B earlier:
    owner.run(
        "SELECT audit_internal('document.rewrap', 'success', NULL, 'moved-1', :b, NULL, "
        "CAST(:d AS jsonb))",
        b=key_b, d=json.dumps({"from_key_id": key_a, "rotation_id": 1}),
    )  # fmt: skip
    owner.run("INSERT INTO key_rotations (old_key_id, reason) VALUES (:a, 'age')", a=key_a)
    request = _request_shred(dbs[OPERATOR], key_a)
    # the queued run is superseded: its documents are not rewrapped first
    assert owner.run("SELECT status FROM key_rotations WHERE old_key_id = :a", a=key_a) == [
        ["failed"]
    ]
    assert owner.run("SELECT status FROM encryption_keys WHERE id = :a", a=key_a) == [
        ["rotation_queued"]
    ]

    repo = PostgresShredRepository(dbs[SHRED])
    (pending,) = repo.pending_shreds()
    assert (pending.request_id, pending.key_id) == (request, key_a)
    assert pending.suite == "xwing"  # for the Key Revoked event
    candidates = {c.document_id: c for c in repo.shred_candidates(request)}
    assert set(candidates) == {"lost-1", "moved-1"}
    assert candidates["lost-1"].lost and not candidates["moved-1"].lost
    assert candidates["lost-1"].key == "encrypted/lost-1.pqf"

    outcome = repo.shred(request, versions_deleted=2, request_id="req-1")
    assert outcome.lost == (("lost-1", "a"),)
    (row,) = owner.run(
        "SELECT status, wrapped_seed IS NULL, shredded_at = :at FROM encryption_keys "
        "WHERE id = :a",
        a=key_a, at=outcome.shredded_at,
    )  # fmt: skip
    assert row == ["shredded", True, True]
    assert owner.run("SELECT status FROM documents WHERE document_id = 'moved-1'") == [
        ["stored"]
    ]
    assert owner.run(
        "SELECT status, encrypted_version_id FROM documents WHERE document_id = 'lost-1'"
    ) == [["shredded", None]]
    assert owner.run(
        "SELECT key_id, tenant, request_id, reason, requested_by, shredded_by "
        "FROM document_tombstones"
    ) == [[key_a, "a", request, "erase", OPERATOR, SHRED]]
    assert repo.pending_shreds() == []

    # final: the seed never comes back, nothing about the key changes, tombstones stay
    with pytest.raises(IllegalTransitionError, match="shredded"):
        owner.run("UPDATE encryption_keys SET wrapped_seed = :s WHERE id = :a", s=b"x" * 64,
                  a=key_a)  # fmt: skip
    with pytest.raises(IllegalTransitionError, match="shredded"):
        owner.run("UPDATE encryption_keys SET status = 'revoked', revoke_reason = 'x' "
                  "WHERE id = :a", a=key_a)  # fmt: skip
    with pytest.raises(ImmutableRowError):  # only a shred may drop a seed
        owner.run("UPDATE encryption_keys SET wrapped_seed = NULL WHERE id = :b", b=key_b)
    with pytest.raises(ImmutableRowError, match="append-only"):
        owner.run("DELETE FROM document_tombstones")
    with pytest.raises(IllegalTransitionError, match="no pending shred"):
        repo.shred(request, versions_deleted=0, request_id=None)
    with pytest.raises(IllegalTransitionError, match="shredded"):
        _request_shred(dbs[OPERATOR], key_a)


def test_only_the_shred_role_shreds_and_never_during_a_running_rotation(
    dbs: dict[str, Database],
) -> None:
    owner = dbs["owner"]
    key_c, key_d = _key(owner, 3), _key(owner, 4)
    request = _request_shred(dbs[OPERATOR], key_c)
    for role in (OPERATOR, REWRAP):
        with pytest.raises(PermissionDeniedError):
            dbs[role].run("SELECT * FROM key_shred(:r, 0, NULL, NULL)", r=request)
        with pytest.raises(PermissionDeniedError):
            dbs[role].run("SELECT * FROM key_shred_candidates(:r)", r=request)
    # the shred role reads no seed
    with pytest.raises(PermissionDeniedError):
        dbs[SHRED].run("SELECT wrapped_seed FROM encryption_keys")
    # a rotation onto the key is running: its documents may be moving; refused, nothing done
    owner.run(
        "INSERT INTO key_rotations (old_key_id, new_key_id, reason, status) "
        "VALUES (:d, :c, 'age', 'running')",
        d=key_d, c=key_c,
    )  # fmt: skip
    repo = PostgresShredRepository(dbs[SHRED])
    with pytest.raises(IllegalTransitionError, match="running"):
        repo.shred(request, versions_deleted=0, request_id=None)
    assert owner.run("SELECT status FROM encryption_keys WHERE id = :c", c=key_c) == [
        ["rotation_queued"]
    ]
    owner.run("UPDATE key_rotations SET status = 'failed' WHERE old_key_id = :d", d=key_d)
    assert repo.shred(request, versions_deleted=0, request_id=None).lost == ()
    # the operator may not queue a rotation of a key with a pending shred
    key_e = _key(owner, 5)
    _request_shred(dbs[OPERATOR], key_e)
    with pytest.raises(IllegalTransitionError, match="pending shred"):
        dbs[OPERATOR].run("SELECT rotation_queue(:e, 'operator', NULL, NULL, NULL)", e=key_e)
