"""Key pool against a real PostgreSQL and KMS on moto: selection under concurrency,
refill, rotation queueing, status reporting, least privilege of the ingest role."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest

from pqfile.adapters.kms import KmsSeedProtector
from pqfile.adapters.postgres.audit import PostgresAuditLog
from pqfile.adapters.postgres.connection import Database, PermissionDeniedError
from pqfile.adapters.postgres.keystore import PostgresKeyStore
from pqfile.cli import main as cli_main
from pqfile.crypto import kem
from pqfile.errors import NoActiveKeyError
from pqfile.keys.model import IllegalTransitionError, KeyStatus
from pqfile.keys.policy import PoolPolicy
from tests.fixtures.postgres import INGEST, ROTATE, role_url
from tests.fixtures.threads import run_threads

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]


def _store(url: str, protector: KmsSeedProtector, **policy: Any) -> PostgresKeyStore:
    return PostgresKeyStore(
        Database.from_url(url), protector, policy=PoolPolicy(**policy), actor="test"
    )


def test_concurrent_selection_is_even_and_loses_no_update(
    db_url: str, protector: KmsSeedProtector
) -> None:
    admin = _store(role_url(db_url, ROTATE), protector)
    assert len(admin.refill(kem.Suite.XWING)) == 100

    ingest_db = Database.from_url(role_url(db_url, INGEST))
    ingest = PostgresKeyStore(ingest_db, protector)
    threads, per_thread = 8, 1000
    picked: list[Counter[str]] = [Counter() for _ in range(threads)]
    start = threading.Barrier(threads)

    def work(i: int) -> None:
        start.wait()
        for _ in range(per_thread):
            picked[i][ingest.select_key_record(kem.Suite.XWING, plaintext_size=10).key_id] += 1

    workers, errors = run_threads(work, threads, timeout=300)
    assert not any(w.is_alive() for w in workers), "deadlock: workers still running"
    assert not errors, errors
    ingest_db.close()

    total = sum(picked, Counter())
    usage = {k.key_id: k.usage_count for k in admin.list_keys("xwing")}
    assert sum(usage.values()) == threads * per_thread  # no lost update
    assert dict(total) == {k: v for k, v in usage.items() if v}  # what we saw is what counted
    assert len(usage) == 100
    assert max(usage.values()) / min(usage.values()) <= 1.2
    bytes_total = sum(k.bytes_encrypted for k in admin.list_keys("xwing"))
    assert bytes_total == threads * per_thread * 10


def test_only_active_keys_are_handed_out(db_url: str, protector: KmsSeedProtector) -> None:
    admin = _store(role_url(db_url, ROTATE), protector)
    keys = admin.create_keys("mlkem768", 6)
    admin.revoke(keys[0].key_id, "compromised in test")
    admin.expire(keys[1].key_id)
    admin.expire(keys[2].key_id)
    admin.revoke(keys[2].key_id, "expired, then revoked")
    owner = Database.from_url(db_url)
    owner.run(
        "UPDATE encryption_keys SET status = 'rotation_queued' WHERE id = :id", id=keys[3].key_id
    )
    owner.close()
    allowed = {keys[4].key_id, keys[5].key_id}
    ingest = _store(role_url(db_url, INGEST), protector)
    seen = {ingest.select_key_record("mlkem768").key_id for _ in range(50)}
    assert seen == allowed
    public = ingest.select_encryption_key(kem.Suite.MLKEM768)
    assert public.key_id in allowed and public.suite is kem.Suite.MLKEM768


def test_no_active_key(db_url: str, protector: KmsSeedProtector) -> None:
    ingest = _store(role_url(db_url, INGEST), protector)
    with pytest.raises(NoActiveKeyError):
        ingest.select_key_record("xwing")


def test_usage_cap_and_age_exclude_and_queue_keys(db_url: str, protector: KmsSeedProtector) -> None:
    admin = _store(
        role_url(db_url, ROTATE), protector, target_active=3, floor_active=3, max_documents=2
    )
    created = admin.refill("xwing")
    assert len(created) == 3
    ingest = _store(role_url(db_url, INGEST), protector, max_documents=2)
    for _ in range(6):
        ingest.select_key_record("xwing")
    with pytest.raises(NoActiveKeyError):  # every key at its document cap
        ingest.select_key_record("xwing")
    queued = admin.queue_due_for_rotation()
    assert sorted(queued) == sorted((k.key_id, "document_cap") for k in created)
    assert {k.status for k in admin.list_keys("xwing")} == {KeyStatus.ROTATION_QUEUED}
    owner = Database.from_url(db_url)
    rotations = owner.run("SELECT old_key_id, reason, status FROM key_rotations")
    assert len(rotations) == 3 and {r[2] for r in rotations} == {"queued"}
    # refill replaces them; age-based queueing
    fresh = admin.refill("xwing")
    assert len(fresh) == 3
    owner.run(
        "UPDATE encryption_keys SET rotate_after = now() - interval '1 second' WHERE id = :id",
        id=fresh[0].key_id,
    )
    owner.close()
    assert admin.queue_due_for_rotation() == [(fresh[0].key_id, "age")]
    assert ingest.select_key_record("xwing").key_id != fresh[0].key_id


def test_refill_respects_floor_and_target(db_url: str, protector: KmsSeedProtector) -> None:
    admin = _store(role_url(db_url, ROTATE), protector, target_active=10, floor_active=7)
    assert len(admin.refill("xwing")) == 10
    assert admin.refill("xwing") == []
    for key in admin.list_keys("xwing")[:4]:
        admin.revoke(key.key_id, "test")
    assert len(admin.refill("xwing")) == 4  # 6 < floor 7 -> back to 10
    summary = admin.status_summary()["suites"]["xwing"]
    assert summary["counts"] == {"active": 10, "rotation_queued": 0, "expired": 0, "revoked": 4}
    assert summary["oldest_active_age_seconds"] is not None
    assert summary["usage"]["active_keys"] == 10
    assert admin.status_summary()["rotations"] == {
        "queued": 0,
        "running": 0,
        "completed": 0,
        "failed": 0,
    }
    ingest = _store(role_url(db_url, INGEST), protector)
    assert ingest.status_summary()["rotations"] is None  # no access to rotation runs


def test_lifecycle_changes_are_audited(db_url: str, protector: KmsSeedProtector) -> None:
    admin = _store(role_url(db_url, ROTATE), protector)
    (key,) = admin.create_keys("xwing", 1, actor="alice", request_id="req-1")
    admin.revoke(key.key_id, "lost laptop", actor="bob")
    with pytest.raises(IllegalTransitionError):
        admin.revoke(key.key_id, "again", actor="bob")
    with pytest.raises(IllegalTransitionError):
        admin.expire(key.key_id, actor="bob")
    owner = Database.from_url(db_url)
    rows = list(PostgresAuditLog(owner).tail(10))
    ops = [(r["operation"], r["actor"], r["key_id"]) for r in rows]
    assert ops == [("key.create", "alice", key.key_id), ("key.revoke", "bob", key.key_id)]
    assert rows[1]["details"] == {"from": "active", "to": "revoked", "reason": "lost laptop"}
    assert PostgresAuditLog(owner).verify_chain().ok
    owner.close()


def test_ingest_role_cannot_manage_keys(db_url: str, protector: KmsSeedProtector) -> None:
    admin = _store(role_url(db_url, ROTATE), protector)
    (key,) = admin.create_keys("xwing", 1)
    ingest = _store(role_url(db_url, INGEST), protector)
    with pytest.raises(PermissionDeniedError):
        ingest.create_keys("xwing", 1)
    with pytest.raises(PermissionDeniedError):
        ingest.revoke(key.key_id, "not allowed")
    db = Database.from_url(role_url(db_url, INGEST))
    db.run("SELECT id FROM encryption_keys FOR UPDATE SKIP LOCKED")  # selection may lock
    with pytest.raises(PermissionDeniedError, match="permission denied"):
        db.run("SELECT wrapped_seed FROM encryption_keys")  # ingest never unwraps
    with pytest.raises(PermissionDeniedError, match="permission denied"):
        db.run("SELECT * FROM encryption_keys")
    assert ingest.get_key(key.key_id).key_id == key.key_id  # every other column is readable
    with pytest.raises(PermissionDeniedError, match="permission denied"):
        db.run("UPDATE encryption_keys SET rotate_after = now()")
    with pytest.raises(PermissionDeniedError, match="permission denied"):
        db.run("UPDATE encryption_keys SET status = 'active'")
    db.close()


def test_cli_keys_status_refill_revoke(
    db_url: str,
    custody_kms: tuple[Any, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, kms_key_id = custody_kms
    monkeypatch.setenv("PQFILE_DATABASE_URL", db_url)
    monkeypatch.setenv("PQFILE_KMS_KEY_ID", kms_key_id)
    monkeypatch.setenv("AWS_ENDPOINT_URL", client.meta.endpoint_url)
    monkeypatch.setenv("PQFILE_ACTOR", "cli-test")
    from pqfile.adapters import aws

    aws.reset_clients()
    try:
        assert (
            cli_main(["keys", "refill", "--suite", "mlkem768", "--target", "5", "--floor", "3"])
            == 0
        )
        assert "mlkem768: created 5 key(s)" in capsys.readouterr().out
        assert cli_main(["keys", "status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["suites"]["mlkem768"]["counts"]["active"] == 5
        assert status["suites"]["xwing"]["counts"]["active"] == 0
        assert cli_main(["keys", "status"]) == 0
        assert "mlkem768" in capsys.readouterr().out
        owner = Database.from_url(db_url)
        key_id = owner.run("SELECT min(id) FROM encryption_keys")[0][0]
        owner.close()
        assert cli_main(["keys", "revoke", key_id, "--reason", "test revoke"]) == 0
        assert f"revoked {key_id}" in capsys.readouterr().out
        assert cli_main(["keys", "revoke", key_id, "--reason", "twice"]) == 1
        assert "already revoked" in capsys.readouterr().err
    finally:
        aws.reset_clients()


def test_pool_smaller_than_callers_never_reports_an_empty_pool(
    db_url: str, protector: KmsSeedProtector
) -> None:
    admin = _store(role_url(db_url, ROTATE), protector)
    (only,) = admin.create_keys("xwing", 1)
    ingest = PostgresKeyStore(Database.from_url(role_url(db_url, INGEST)), protector)

    def work(_: int) -> None:
        for _ in range(50):
            assert ingest.select_key_record("xwing").key_id == only.key_id

    errors = run_threads(work, 8, timeout=120).errors
    assert not errors, errors
    assert admin.get_key(only.key_id).usage_count == 400
