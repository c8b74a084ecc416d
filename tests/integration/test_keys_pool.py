"""Key pool against a real PostgreSQL and KMS on moto: selection under concurrency,
refill, rotation queueing, status reporting, each function's role limited to its job."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest

from pqfile.adapters.kms import KmsSeedProtector
from pqfile.adapters.kms_mac import KmsKeyAttestor
from pqfile.adapters.postgres.audit import PostgresAuditLog
from pqfile.adapters.postgres.connection import Database, PermissionDeniedError
from pqfile.adapters.postgres.keystore import PostgresKeyStore
from pqfile.cli import main as cli_main
from pqfile.crypto import kem
from pqfile.errors import NoActiveKeyError
from pqfile.keys.model import IllegalTransitionError, KeyStatus
from pqfile.keys.policy import PoolPolicy
from tests.fixtures.postgres import AUDITOR, MAINTAIN, OPERATOR, REWRAP, SELECT_KEY, role_url
from tests.fixtures.threads import run_threads

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]


@pytest.fixture
def store(db_url: str, protector: KmsSeedProtector, attestor: KmsKeyAttestor) -> Any:
    """``store(role, **policy)``: the key pool as that role (KMS seeds and attestation)."""

    def make(role: str, **policy: Any) -> PostgresKeyStore:
        return PostgresKeyStore(
            Database.from_url(role_url(db_url, role)),
            protector,
            attestor=attestor,
            policy=PoolPolicy(**policy),
            actor="test",
        )

    return make


def test_concurrent_selection_is_even_and_loses_no_update(db_url: str, store: Any) -> None:
    admin = store(MAINTAIN)
    assert len(admin.refill(kem.Suite.XWING)) == 100

    ingest = store(SELECT_KEY)
    ingest_db = ingest.storage._db
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


def test_only_active_keys_are_handed_out(db_url: str, store: Any) -> None:
    admin = store(MAINTAIN)
    operator = store(OPERATOR)
    keys = admin.create_keys("mlkem768", 6)
    operator.revoke(keys[0].key_id, "compromised in test")
    operator.expire(keys[1].key_id)
    operator.expire(keys[2].key_id)
    operator.revoke(keys[2].key_id, "expired, then revoked")
    owner = Database.from_url(db_url)
    owner.run(
        "UPDATE encryption_keys SET status = 'rotation_queued' WHERE id = :id", id=keys[3].key_id
    )
    owner.close()
    allowed = {keys[4].key_id, keys[5].key_id}
    ingest = store(SELECT_KEY)
    seen = {ingest.select_key_record("mlkem768").key_id for _ in range(50)}
    assert seen == allowed
    public = ingest.select_encryption_key(kem.Suite.MLKEM768)
    assert public.key_id in allowed and public.suite is kem.Suite.MLKEM768


def test_no_active_key(store: Any) -> None:
    with pytest.raises(NoActiveKeyError):
        store(SELECT_KEY).select_key_record("xwing")


def test_usage_cap_and_age_exclude_and_queue_keys(db_url: str, store: Any) -> None:
    admin = store(MAINTAIN, target_active=3, floor_active=3, max_documents=1000)
    created = admin.refill("xwing")
    assert len(created) == 3
    ingest = store(SELECT_KEY, max_documents=2)
    for _ in range(6):
        ingest.select_key_record("xwing")
    with pytest.raises(NoActiveKeyError):  # every key at its document cap
        ingest.select_key_record("xwing")
    # Queueing by a usage cap: the database refuses caps under 1,000 documents (a stolen
    # maintain credential cannot drain the pool with a cap of 1), so the keys get there.
    owner = Database.from_url(db_url)
    owner.run("UPDATE encryption_keys SET usage_count = 1000")
    queued = admin.queue_due_for_rotation()
    assert sorted(queued) == sorted((k.key_id, "document_cap") for k in created)
    assert {k.status for k in admin.list_keys("xwing")} == {KeyStatus.ROTATION_QUEUED}
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


def test_refill_respects_floor_and_target(store: Any) -> None:
    admin = store(MAINTAIN, target_active=10, floor_active=7)
    assert len(admin.refill("xwing")) == 10
    assert admin.refill("xwing") == []
    for key in admin.list_keys("xwing")[:4]:
        store(OPERATOR).revoke(key.key_id, "test")
    assert len(admin.refill("xwing")) == 4  # 6 < floor 7 -> back to 10
    summary = admin.status_summary()["suites"]["xwing"]
    assert summary["counts"] == {
        "active": 10,
        "rotation_queued": 0,
        "expired": 0,
        "revoked": 4,
        "shredded": 0,
    }
    assert summary["oldest_active_age_seconds"] is not None
    assert summary["usage"]["active_keys"] == 10
    assert admin.status_summary()["rotations"] == {
        "queued": 0,
        "running": 0,
        "completed": 0,
        "failed": 0,
    }
    assert store(SELECT_KEY).status_summary()["rotations"] is None  # no access to runs
    for role in (OPERATOR, AUDITOR, MAINTAIN):
        assert store(role).status_summary()["suites"]["xwing"]["counts"]["revoked"] == 4


def test_lifecycle_changes_are_audited(db_url: str, store: Any) -> None:
    admin, operator = store(MAINTAIN), store(OPERATOR)
    (key,) = admin.create_keys("xwing", 1, actor="alice", request_id="req-1")
    operator.revoke(key.key_id, "lost laptop", actor="bob")
    with pytest.raises(IllegalTransitionError):
        operator.revoke(key.key_id, "again", actor="bob")
    with pytest.raises(IllegalTransitionError):
        operator.expire(key.key_id, actor="bob")
    owner = Database.from_url(db_url)
    rows = list(PostgresAuditLog(owner).tail(10))
    ops = [(r["operation"], r["actor"], r["db_role"], r["key_id"]) for r in rows]
    # The database names the actor: a function role is itself (whatever it claims), a person
    # is the connected user, with the claimed name kept as a detail.
    assert ops == [
        ("key.create", MAINTAIN, MAINTAIN, key.key_id),
        ("key.revoke", OPERATOR, OPERATOR, key.key_id),
    ]
    assert rows[0]["request_id"] == "req-1" and "claimed_by" not in rows[0]["details"]
    assert rows[1]["details"] == {
        "from": "active",
        "to": "revoked",
        "reason": "lost laptop",
        "claimed_by": "bob",
    }
    assert PostgresAuditLog(owner).verify_chain().ok
    owner.close()


def test_function_roles_cannot_manage_keys(db_url: str, store: Any) -> None:
    admin = store(MAINTAIN)
    (key,) = admin.create_keys("xwing", 1)
    ingest = store(SELECT_KEY)
    with pytest.raises(PermissionDeniedError):
        ingest.create_keys("xwing", 1)
    for role in (SELECT_KEY, MAINTAIN, REWRAP):
        with pytest.raises(PermissionDeniedError):
            store(role).revoke(key.key_id, "not allowed")
        with pytest.raises(PermissionDeniedError):
            store(role).expire(key.key_id)
    with pytest.raises(PermissionDeniedError):
        store(REWRAP).create_keys("xwing", 1)  # only maintain creates keys
    db = Database.from_url(role_url(db_url, SELECT_KEY))
    with pytest.raises(PermissionDeniedError, match="permission denied"):
        db.run("SELECT id FROM encryption_keys FOR UPDATE SKIP LOCKED")  # only key_select locks
    with pytest.raises(PermissionDeniedError, match="permission denied"):
        db.run("SELECT wrapped_seed FROM encryption_keys")  # ingest never unwraps
    with pytest.raises(PermissionDeniedError, match="permission denied"):
        db.run("SELECT * FROM encryption_keys")
    assert ingest.get_key(key.key_id).key_id == key.key_id  # every other column is readable
    for statement in (
        "UPDATE encryption_keys SET rotate_after = now()",
        "UPDATE encryption_keys SET status = 'active'",
        "UPDATE encryption_keys SET usage_count = usage_count + 1000000",
    ):
        with pytest.raises(PermissionDeniedError, match="permission denied"):
            db.run(statement)
    db.close()


def test_cli_keys_status_refill_revoke(
    db_url: str,
    custody_kms: tuple[Any, str],
    attestation_kms_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, kms_key_id = custody_kms
    # refill runs as the maintain role (or the owner), with both KMS keys configured
    monkeypatch.setenv("PQFILE_DATABASE_URL", role_url(db_url, MAINTAIN))
    monkeypatch.setenv("PQFILE_KMS_KEY_ID", kms_key_id)
    monkeypatch.setenv("PQFILE_ATTESTATION_KEY_ID", attestation_kms_key)
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
        for role in (OPERATOR, AUDITOR):  # people and the auditor read the pool
            url = role_url(db_url, role)
            assert cli_main(["keys", "status", "--json", "--database-url", url]) == 0
            status = json.loads(capsys.readouterr().out)
            assert status["suites"]["mlkem768"]["counts"]["active"] == 5
            assert status["suites"]["xwing"]["counts"]["active"] == 0
            assert cli_main(["keys", "status", "--database-url", url]) == 0
            assert "mlkem768" in capsys.readouterr().out
        owner = Database.from_url(db_url)
        key_id, other = [r[0] for r in owner.run("SELECT id FROM encryption_keys ORDER BY id")][:2]
        owner.close()
        # revocation is an operator's: not the maintain role's
        assert cli_main(["keys", "revoke", key_id, "--now", "--reason", "test revoke"]) == 1
        assert "permission denied" in capsys.readouterr().err
        operator = ["--database-url", role_url(db_url, OPERATOR)]
        revoke = ["keys", "revoke", key_id, "--now", "--reason", "test revoke", *operator]
        assert cli_main(revoke) == 0
        assert f"revoked {key_id}" in capsys.readouterr().out
        twice = ["keys", "revoke", key_id, "--now", "--reason", "twice", *operator]
        assert cli_main(twice) == 1
        assert "already revoked" in capsys.readouterr().err
        assert cli_main(["keys", "request", other, "--reason", "rotate it out", *operator]) == 0
        assert "pending" in capsys.readouterr().out
        assert cli_main(["keys", "expire", other, *operator]) == 0
        assert f"expired {other}" in capsys.readouterr().out
        assert cli_main(["audit", "tail", "-n", "3", "--json", *operator]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["operation"] for r in rows] == ["key.revoke", "key.revoke_requested",
                                                   "key.expire"]  # fmt: skip
        assert {r["actor"] for r in rows} == {OPERATOR}
        assert {r["details"]["claimed_by"] for r in rows} == {"cli-test"}
    finally:
        aws.reset_clients()


def test_pool_smaller_than_callers_never_reports_an_empty_pool(store: Any) -> None:
    admin = store(MAINTAIN)
    (only,) = admin.create_keys("xwing", 1)
    ingest = store(SELECT_KEY)

    def work(_: int) -> None:
        for _ in range(50):
            assert ingest.select_key_record("xwing").key_id == only.key_id

    errors = run_threads(work, 8, timeout=120).errors
    assert not errors, errors
    assert admin.get_key(only.key_id).usage_count == 400
