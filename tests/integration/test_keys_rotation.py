"""Rotation runs: a queued key's documents move to a new key, then the old key expires
(decrypt only); every step is audited and the chain still verifies. Each step runs as the
role of the function that makes it: maintain queues and refills, rewrap runs the run."""

from __future__ import annotations

import pytest

from pqfile.adapters.kms import KmsSeedProtector
from pqfile.adapters.kms_mac import KmsKeyAttestor
from pqfile.adapters.postgres.audit import PostgresAuditLog
from pqfile.adapters.postgres.connection import Database
from pqfile.adapters.postgres.documents import PostgresDocumentRepository
from pqfile.adapters.postgres.keystore import PostgresKeyStore
from pqfile.keys.model import KeyStatus, Purpose
from pqfile.keys.policy import PoolPolicy
from tests.fixtures.postgres import FETCH, MAINTAIN, RETRIEVE, REWRAP, SELECT_KEY, STORE, role_url

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]


def test_rotation_run_moves_documents_then_expires_the_old_key(
    db_url: str, protector: KmsSeedProtector, attestor: KmsKeyAttestor
) -> None:
    policy = PoolPolicy(target_active=2, floor_active=2)

    def keys(role: str) -> PostgresKeyStore:
        return PostgresKeyStore(
            Database.from_url(role_url(db_url, role)),
            protector,
            attestor=attestor,
            policy=policy,
            actor="rotator",
        )

    def docs(role: str) -> PostgresDocumentRepository:
        return PostgresDocumentRepository(Database.from_url(role_url(db_url, role)))

    maintain, rewrap, select = keys(MAINTAIN), keys(REWRAP), keys(SELECT_KEY)
    fetch, select_docs, store = docs(FETCH), docs(SELECT_KEY), docs(STORE)
    old, spare = maintain.refill("xwing")
    for i in range(6):
        fetch.begin(
            document_id=f"d{i}",
            source_bucket="b",
            source_key=f"uploads/a/k{i}",
            source_version_id="v",
            source_etag=None,
            plaintext_size=100,
            tenant="a",
        )
        key = select.select_key_record("xwing", plaintext_size=100)
        select_docs.assign_key(f"d{i}", key.key_id)
        stored, _ = store.mark_stored(
            f"d{i}",
            encrypted_bucket="enc",
            encrypted_key=f"encrypted/d{i}.pqf",
            encrypted_version_id="v1",
            encrypted_size=200,
        )
        assert stored.status == "stored"
    # both keys are past their age (as the owner: nobody else may move rotate_after)
    owner = Database.from_url(db_url)
    owner.run("UPDATE encryption_keys SET rotate_after = now() - interval '1 second'")
    assert sorted(maintain.queue_due_for_rotation()) == sorted(
        [(old.key_id, "age"), (spare.key_id, "age")]
    )
    fresh = maintain.refill("xwing")
    assert len(fresh) == 2
    runs = rewrap.rotations("queued")
    assert len(runs) == 2
    run = rewrap.begin_rotation(runs[0].rotation_id)
    assert run.status == "running" and run.new_key_id in {k.key_id for k in fresh}
    assert run.documents_total == 3
    assert rewrap.begin_rotation(run.rotation_id) == run  # idempotent

    work = rewrap.documents_on_key(run.old_key_id)
    assert len(work) == 3
    # the first two are rewrapped; finishing now fails and keeps the old key decrypting
    for doc in work[:2]:
        assert rewrap.record_rewrap(
            run.rotation_id, doc, encrypted_version_id="v2", encrypted_size=200
        )
    assert not rewrap.record_rewrap(
        run.rotation_id, work[0], encrypted_version_id="v3", encrypted_size=1
    )  # replay: already moved
    failed = rewrap.finish_rotation(run.rotation_id)
    assert failed.status == "failed" and failed.documents_failed == 1
    assert rewrap.get_key(run.old_key_id).status is KeyStatus.ROTATION_QUEUED

    # a second run for the same key finishes the job
    owner.run(
        "INSERT INTO key_rotations (old_key_id, reason) VALUES (:k, 'retry')", k=run.old_key_id
    )
    retry = rewrap.begin_rotation(rewrap.rotations("queued")[-1].rotation_id)
    assert retry.documents_total == 1
    (last,) = rewrap.documents_on_key(retry.old_key_id)
    assert rewrap.record_rewrap(
        retry.rotation_id, last, encrypted_version_id="v2", encrypted_size=200
    )
    done = rewrap.finish_rotation(retry.rotation_id)
    assert done.status == "completed" and done.documents_rewrapped == 1
    assert rewrap.get_key(run.old_key_id).status is KeyStatus.EXPIRED
    assert {select_docs.get_document(d).key_id for d in work} <= {
        run.new_key_id,
        retry.new_key_id,
    }

    retrieve = PostgresKeyStore(Database.from_url(role_url(db_url, RETRIEVE)), protector)
    assert retrieve.load_secret_key(run.old_key_id, Purpose.DECRYPT)  # expired: decrypt only
    log = PostgresAuditLog(owner)
    rows = list(log.tail(100))
    ops = [r["operation"] for r in rows]
    assert ops.count("document.rewrap") == 3
    assert ops.count("key.rotation_finished") == 2 and "key.expire" in ops
    by_op = {r["operation"]: r["actor"] for r in rows}
    assert by_op["key.create"] == MAINTAIN and by_op["key.rotation_queued"] == MAINTAIN
    assert by_op["document.rewrap"] == REWRAP and by_op["key.expire"] == REWRAP
    assert log.verify_chain().ok
    owner.close()


def test_rewrap_cannot_start_a_run_onto_a_key_it_did_not_verify(
    db_url: str, protector: KmsSeedProtector, attestor: KmsKeyAttestor
) -> None:
    """rotation_begin takes the new key the function chose, and checks it is an active,
    attested key of the same suite: not the old key, not a key of another suite."""
    from pqfile.errors import NoActiveKeyError

    maintain = PostgresKeyStore(
        Database.from_url(role_url(db_url, MAINTAIN)), protector, attestor=attestor
    )
    old, other = maintain.create_keys("xwing", 2)
    (ml,) = maintain.create_keys("mlkem768", 1)
    owner = Database.from_url(db_url)
    owner.run("INSERT INTO key_rotations (old_key_id, reason) VALUES (:k, 'age')", k=old.key_id)
    rid = owner.run("SELECT max(id) FROM key_rotations")[0][0]
    owner.close()
    db = Database.from_url(role_url(db_url, REWRAP))
    for bad in (old.key_id, ml.key_id, "00" * 16):
        with pytest.raises(NoActiveKeyError):
            db.run("SELECT * FROM rotation_begin(:id, :k, NULL, NULL)", id=rid, k=bad)
    row = db.run("SELECT status, new_key_id FROM rotation_begin(:id, :k, NULL, NULL)",
                 id=rid, k=other.key_id)  # fmt: skip
    assert row == [["running", other.key_id]]
    db.close()
