"""Rotation runs: a queued key's documents move to a new key, then the old key expires
(decrypt only); every step is audited and the chain still verifies."""

from __future__ import annotations

from typing import Any

import pytest

from pqfile.adapters.kms import KmsSeedProtector
from pqfile.adapters.postgres.audit import PostgresAuditLog
from pqfile.adapters.postgres.connection import Database
from pqfile.adapters.postgres.documents import PostgresDocumentRepository
from pqfile.adapters.postgres.keystore import PostgresKeyStore
from pqfile.keys.model import KeyStatus, Purpose
from pqfile.keys.policy import PoolPolicy
from tests.fixtures.postgres import INGEST, RETRIEVE, ROTATE, role_url

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]


def test_rotation_run_moves_documents_then_expires_the_old_key(
    db_url: str, custody_kms: tuple[Any, str]
) -> None:
    client, kms_key_id = custody_kms
    protector = KmsSeedProtector(client, kms_key_id)
    rotate = PostgresKeyStore(
        Database.from_url(role_url(db_url, ROTATE)),
        protector,
        policy=PoolPolicy(target_active=2, floor_active=2, max_documents=3),
        actor="rotator",
    )
    old, spare = rotate.refill("xwing")
    ingest = PostgresKeyStore(
        Database.from_url(role_url(db_url, INGEST)), protector, policy=rotate.policy
    )
    docs = PostgresDocumentRepository(Database.from_url(role_url(db_url, INGEST)))
    for i in range(6):
        key = ingest.select_key_record("xwing", plaintext_size=100)
        docs.begin(
            document_id=f"d{i}",
            source_bucket="b",
            source_key=f"k{i}",
            source_version_id="v",
            source_etag=None,
            plaintext_size=100,
        )
        docs.assign_key(f"d{i}", key.key_id, "xwing")
    # both keys hit the 3-document cap: queue both, refill two fresh ones
    assert sorted(k for k, _ in rotate.queue_due_for_rotation()) == sorted(
        [old.key_id, spare.key_id]
    )
    fresh = rotate.refill("xwing")
    assert len(fresh) == 2
    runs = rotate.rotations("queued")
    assert len(runs) == 2
    run = rotate.begin_rotation(runs[0].rotation_id)
    assert run.status == "running" and run.new_key_id in {k.key_id for k in fresh}
    assert run.documents_total == 3
    assert rotate.begin_rotation(run.rotation_id) == run  # idempotent

    work = rotate.documents_on_key(run.old_key_id)
    assert len(work) == 3
    # the first two are rewrapped; finishing now fails and keeps the old key decrypting
    for doc in work[:2]:
        assert rotate.record_rewrap(
            run.rotation_id, doc, encrypted_version_id="v2", encrypted_size=200
        )
    assert not rotate.record_rewrap(
        run.rotation_id, work[0], encrypted_version_id="v3", encrypted_size=1
    )  # replay: already moved
    failed = rotate.finish_rotation(run.rotation_id)
    assert failed.status == "failed" and failed.documents_failed == 1
    assert rotate.get_key(run.old_key_id).status is KeyStatus.ROTATION_QUEUED

    # a second run for the same key finishes the job
    owner = Database.from_url(db_url)
    owner.run(
        "INSERT INTO key_rotations (old_key_id, reason) VALUES (:k, 'retry')", k=run.old_key_id
    )
    retry = rotate.begin_rotation(rotate.rotations("queued")[-1].rotation_id)
    assert retry.documents_total == 1
    (last,) = rotate.documents_on_key(retry.old_key_id)
    assert rotate.record_rewrap(
        retry.rotation_id, last, encrypted_version_id="v2", encrypted_size=200
    )
    done = rotate.finish_rotation(retry.rotation_id)
    assert done.status == "completed" and done.documents_rewrapped == 1
    assert rotate.get_key(run.old_key_id).status is KeyStatus.EXPIRED
    assert {docs.get_document(d).key_id for d in work} <= {run.new_key_id, retry.new_key_id}

    retrieve = PostgresKeyStore(Database.from_url(role_url(db_url, RETRIEVE)), protector)
    assert retrieve.load_secret_key(run.old_key_id, Purpose.DECRYPT)  # expired: decrypt only
    log = PostgresAuditLog(owner)
    ops = [r["operation"] for r in log.tail(100)]
    assert ops.count("document.rewrap") == 3
    assert ops.count("key.rotation_finished") == 2 and "key.expire" in ops
    assert log.verify_chain().ok
    owner.close()
