"""Migration 0015 on PostgreSQL, as each role: a compromised key's documents are never
rewrapped, only re-encrypted (audited with both KDFs); a compromise completes only once no
document is on the key, audits the versions deleted and revokes it; suite moves across hash
families are no longer refused, downgrades still are (docs/KEYS.md, "Compromise")."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pqfile.adapters.postgres.connection import Database, PermissionDeniedError
from pqfile.adapters.postgres.keys import PostgresShredRepository
from tests.fixtures.postgres import OPERATOR, REWRAP, SHRED, role_url
from tests.integration.test_shred_sql import _document, _key

pytestmark = pytest.mark.integration


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


def _reencrypt(rewrap: Database, rid: int, document_id: str, new: str, version: str) -> bool:
    rows = rewrap.run(
        "SELECT rotation_record_reencrypt(:r, :d, :n, :v, 10, 'hkdf-sha256', 'hkdf-sha256', "
        "NULL, NULL)", r=rid, d=document_id, n=new, v=version,
    )  # fmt: skip
    return bool(rows[0][0])


def _running_run(owner: Database, old: str, new: str) -> int:
    rid = int(owner.run("SELECT id FROM key_rotations WHERE old_key_id = :k", k=old)[0][0])
    owner.run("SELECT id FROM rotation_begin(:r, :n, 'tests', NULL)", r=rid, n=new)
    return rid


def _audit(owner: Database, operation: str) -> list[tuple[str | None, dict[str, object]]]:
    rows = owner.run("SELECT document_id, details FROM access_logs WHERE operation = :o "
                     "ORDER BY seq", o=operation)  # fmt: skip
    return [(r[0], r[1] if isinstance(r[1], dict) else json.loads(r[1])) for r in rows]


def test_a_compromise_reencrypts_purges_and_revokes(dbs: dict[str, Database]) -> None:
    owner, rewrap = dbs["owner"], dbs[REWRAP]
    old, new = _key(owner, 11), _key(owner, 12)
    _document(owner, "c-1", old)
    _document(owner, "c-2", old)
    request = int(dbs[OPERATOR].run(
        "SELECT key_request(:k, 'compromise', 'leaked', 'ops', NULL)", k=old)[0][0])  # fmt: skip
    rid = _running_run(owner, old, new)
    # never a rewrap: the exposed data key would stay
    with pytest.raises(Exception, match="compromised"):
        rewrap.run("SELECT rotation_record_rewrap(:r, 'c-1', :n, 'v2', 10, NULL, NULL)",
                   r=rid, n=new)  # fmt: skip
    with pytest.raises(Exception, match="KDF"):
        rewrap.run("SELECT rotation_record_reencrypt(:r, 'c-1', :n, 'v2', 10, 'md5', "
                   "'hkdf-sha256', NULL, NULL)", r=rid, n=new)  # fmt: skip
    assert _reencrypt(rewrap, rid, "c-1", new, "v2") is True
    shred = PostgresShredRepository(dbs[SHRED])
    # one document still on the key: nothing listed, nothing completed
    assert shred.compromise_candidates(request) == []
    assert shred.complete_compromise(request, deleted={}, request_id=None) is False
    rewrap.run("SELECT rotation_record_reencrypt(:r, 'c-2', :n, 'v2', 10, 'hkdf-sha256', "
               "'hkdf-sha256', NULL, NULL)", r=rid, n=new)  # fmt: skip
    assert _reencrypt(rewrap, rid, "c-2", new, "v3") is False  # already moved
    # the run is still running: not yet (FinishRotation runs before ShredKeys)
    assert shred.complete_compromise(request, deleted={"c-1": 2}, request_id=None) is False
    rewrap.run("SELECT id FROM rotation_finish(:r, NULL, NULL)", r=rid)
    (reenc, *_) = _audit(owner, "document.reencrypt")
    assert reenc[0] == "c-1" and reenc[1]["compromise"] is True
    assert (reenc[1]["from_key_id"], reenc[1]["to_key_id"]) == (old, new)
    assert [pending.key_id for pending in shred.pending_compromises()] == [old]
    candidates = shred.compromise_candidates(request)
    assert [(c.document_id, c.keep_version_id) for c in candidates] == [
        ("c-1", "v2"),
        ("c-2", "v2"),
    ]
    # only the shred role completes it, and only with a count per document
    with pytest.raises(PermissionDeniedError):
        rewrap.run("SELECT key_compromise_complete(:r, CAST('{}' AS jsonb), NULL, NULL)",
                   r=request)  # fmt: skip
    with pytest.raises(Exception, match="out of range"):
        shred.complete_compromise(request, deleted={"c-1": -1}, request_id=None)
    with pytest.raises(Exception, match="no document"):
        shred.complete_compromise(request, deleted={"nope": 1}, request_id=None)
    assert shred.complete_compromise(request, deleted={"c-1": 2, "c-2": 1},
                                     request_id="exec-1") is True  # fmt: skip
    assert owner.run("SELECT status, revoke_reason FROM encryption_keys WHERE id = :k",
                     k=old) == [["revoked", "leaked"]]  # fmt: skip
    assert owner.run("SELECT status FROM key_requests WHERE id = :r", r=request) == [["completed"]]
    purged = _audit(owner, "document.versions_deleted")
    assert [(d, det["versions_deleted"]) for d, det in purged] == [("c-1", 2), ("c-2", 1)]
    (revoke,) = [det for _, det in _audit(owner, "key.revoke") if det.get("request") == request]
    assert revoke["compromise"] is True and revoke["versions_deleted"] == 3
    assert shred.pending_compromises() == []


def test_suite_check_allows_hash_families_and_keeps_the_downgrade_guard(
    dbs: dict[str, Database],
) -> None:
    owner = dbs["owner"]
    owner.run("SELECT rotation_suite_check('xwing', 'mlkem1024', false)")
    owner.run("SELECT rotation_suite_check('mlkem1024', 'xwing', true)")
    with pytest.raises(Exception, match="downgrade"):
        owner.run("SELECT rotation_suite_check('mlkem1024', 'xwing', false)")
