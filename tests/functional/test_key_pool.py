"""The key pool's rules (pqfile.keys: KeyPool, KeyCustody, RotationRuns) over in-memory
storage: the same code the Lambda functions and the CLI run against PostgreSQL and KMS."""

from __future__ import annotations

import pytest

from pqfile.crypto import kem
from pqfile.errors import CustodyError, KeyNotFoundError, KeyNotUsableError, NoActiveKeyError
from pqfile.keys.model import IllegalTransitionError, KeyStatus, Purpose
from pqfile.keys.policy import PoolPolicy
from pqfile.keys.pool import KeyPool
from tests.functional.fakes import (
    FakeAttestor,
    FakeAudit,
    FakeDocuments,
    FakeKeyStorage,
    FakeKeyStore,
    FakeProtector,
)


def _pool(**policy: int) -> KeyPool:
    return KeyPool(FakeKeyStorage(), FakeProtector(), attestor=FakeAttestor(),
                   policy=PoolPolicy(**policy), actor="test")  # fmt: skip


def _operations(pool: KeyPool) -> list[str]:
    audit = pool.storage.audit
    assert isinstance(audit, FakeAudit)
    return [row["operation"] for row in audit.rows]


def test_refill_tops_up_below_the_floor_and_audits_each_key() -> None:
    pool = _pool(target_active=4, floor_active=2)
    created = pool.refill(kem.Suite.XWING)
    assert len(created) == 4 and pool.refill("xwing") == []
    pool.revoke(created[0].key_id, "test")
    pool.revoke(created[1].key_id, "test")
    pool.revoke(created[2].key_id, "test")
    assert len(pool.refill("xwing")) == 3  # 1 < floor 2 -> back to 4
    assert _operations(pool).count("key.create") == 7
    summary = pool.status_summary()
    assert summary["suites"]["xwing"]["counts"]["active"] == 4
    assert summary["suites"]["mlkem768"]["counts"]["active"] == 0
    assert summary["rotations"] == {"queued": 0, "running": 0, "completed": 0, "failed": 0}


def test_selection_takes_the_least_used_active_key_under_its_caps() -> None:
    pool = _pool(target_active=3, floor_active=3, max_documents=2)
    keys = {k.key_id for k in pool.refill("mlkem768")}
    picked = [pool.select_key_record("mlkem768").key_id for _ in range(6)]
    assert set(picked) == keys and all(picked.count(k) == 2 for k in keys)
    with pytest.raises(NoActiveKeyError):  # every key at its document cap
        pool.select_key_record("mlkem768")
    with pytest.raises(NoActiveKeyError):
        pool.select_encryption_key(kem.Suite.XWING)


def test_custody_binds_the_seed_to_its_row_and_refuses_revoked_keys() -> None:
    pool = _pool(target_active=2, floor_active=2)
    a, b = pool.refill("xwing")
    secret = pool.load_decryption_key(a.key_id)
    assert secret.public_key().key_id == a.key_id
    assert pool.load_secret_key(a.key_id, Purpose.REWRAP) is secret  # cached
    pool.revoke(a.key_id, "lost laptop")
    for purpose in Purpose:
        with pytest.raises(KeyNotUsableError, match="revoked"):
            pool.load_secret_key(a.key_id, purpose)
    assert pool.cache.get(a.key_id) is None
    with pytest.raises(IllegalTransitionError):
        pool.revoke(a.key_id, "again")
    with pytest.raises(KeyNotFoundError):
        pool.load_decryption_key("00" * 16)
    # a wrapped seed copied onto another row does not unwrap (the encryption context)
    repo = pool.storage.keys
    repo.wrapped[b.key_id] = repo.wrapped[a.key_id]  # type: ignore[attr-defined]
    with pytest.raises(CustodyError):
        pool.load_decryption_key(b.key_id)


def test_expired_keys_decrypt_but_never_encrypt() -> None:
    pool = _pool(target_active=1, floor_active=1)
    (key,) = pool.refill("xwing")
    pool.expire(key.key_id)
    assert pool.load_decryption_key(key.key_id).public_key().key_id == key.key_id
    with pytest.raises(KeyNotUsableError):
        pool.load_secret_key(key.key_id, Purpose.ENCRYPT)
    with pytest.raises(NoActiveKeyError):
        pool.select_key_record("xwing")


def test_a_rotation_run_moves_documents_then_expires_the_old_key() -> None:
    documents = FakeDocuments()
    pool = KeyPool(FakeKeyStorage(documents=documents), FakeProtector(), attestor=FakeAttestor(),
                   policy=PoolPolicy(target_active=1, floor_active=1, max_documents=2))  # fmt: skip
    (old,) = pool.refill("xwing")
    for i in range(2):
        documents.begin(document_id=f"d{i}", source_bucket="b", source_key=f"uploads/a/k{i}",
                        source_version_id="v", source_etag=None, plaintext_size=10,
                        tenant="a")  # fmt: skip
        documents.assign_key(f"d{i}", pool.select_key_record("xwing").key_id)
        documents.mark_stored(f"d{i}", encrypted_bucket="e", encrypted_key=f"encrypted/d{i}",
                              encrypted_version_id="v1", encrypted_size=99)  # fmt: skip
    assert pool.queue_due_for_rotation() == [(old.key_id, "document_cap")]
    assert pool.get_key(old.key_id).status is KeyStatus.ROTATION_QUEUED
    (new,) = pool.refill("xwing")
    (queued,) = pool.rotations("queued")
    run = pool.begin_rotation(queued.rotation_id)
    assert (run.status, run.new_key_id, run.documents_total) == ("running", new.key_id, 2)
    assert pool.begin_rotation(run.rotation_id) == run  # idempotent
    assert pool.record_rewrap(run.rotation_id, "d0", encrypted_version_id="v2",
                              encrypted_size=99)  # fmt: skip
    assert not pool.record_rewrap(run.rotation_id, "d0", encrypted_version_id="v3",
                                  encrypted_size=1)  # fmt: skip
    failed = pool.finish_rotation(run.rotation_id)
    assert (failed.status, failed.documents_failed) == ("failed", 1)
    assert pool.get_key(old.key_id).status is KeyStatus.ROTATION_QUEUED  # still decrypts
    with pytest.raises(Exception, match="not running"):
        pool.record_rewrap(run.rotation_id, "d1", encrypted_version_id="v2", encrypted_size=1)

    # a second run for the same key finishes the job
    pool.storage.rotations.open_run(old.key_id, "retry")
    retry = pool.begin_rotation(pool.rotations("queued")[-1].rotation_id)
    assert retry.documents_total == 1
    assert pool.record_rewrap(retry.rotation_id, "d1", encrypted_version_id="v2",
                              encrypted_size=99)  # fmt: skip
    done = pool.finish_rotation(retry.rotation_id)
    assert (done.status, done.documents_rewrapped) == ("completed", 1)
    assert pool.get_key(old.key_id).status is KeyStatus.EXPIRED
    assert pool.get_key(new.key_id).usage_count == 2  # one use per document moved onto it
    assert {documents.get(d).key_id for d in ("d0", "d1")} == {new.key_id}  # type: ignore[union-attr]
    ops = _operations(pool)
    assert ops.count("document.rewrap") == 2 and ops.count("key.rotation_finished") == 2
    assert ops[-2:] == ["key.expire", "key.rotation_finished"]


def test_a_kms_refusal_during_refill_creates_no_key() -> None:
    protector = FakeProtector()
    pool = KeyPool(FakeKeyStorage(), protector, attestor=FakeAttestor(),
                   policy=PoolPolicy(target_active=3, floor_active=3))  # fmt: skip
    real_wrap = protector.wrap
    calls = []

    def wrap_twice_then_fail(seed: bytes, context: object) -> tuple[bytes, str]:
        calls.append(1)
        if len(calls) > 2:
            raise CustodyError("injected: KMS refused")
        return real_wrap(seed, context)  # type: ignore[arg-type]

    protector.wrap = wrap_twice_then_fail  # type: ignore[method-assign]
    with pytest.raises(CustodyError):
        pool.refill("xwing")
    assert pool.list_keys() == [] and _operations(pool) == []


# --- attestation (finding 2: a key planted by SQL is never used) -----------------------------


def test_a_planted_key_is_skipped_logged_and_never_used(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeKeyStore(count=1)
    (good,) = store.list_keys()
    forged = store.plant(forged=True)  # a MAC the attacker made up
    bare = store.plant(forged=False)  # no attestation at all (as before migration 0010)
    with caplog.at_level("ERROR"):
        picked = {store.select_key_record("xwing").key_id for _ in range(20)}
    assert picked == {good.key_id}
    assert any("KEY ATTESTATION FAILED" in r.getMessage() and forged in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert all(store.secrets[forged].seed.hex() not in r.getMessage() for r in caplog.records)
    verifications = store.attestor.verifications  # type: ignore[attr-defined]
    for _ in range(10):
        store.select_key_record("xwing")
    assert store.attestor.verifications == verifications  # type: ignore[attr-defined]
    # the encrypt step's lookup refuses both, whatever their status says
    for planted in (forged, bare):
        with pytest.raises(CustodyError):
            store.encryption_key(planted)
    assert store.encryption_key(good.key_id).key_id == good.key_id
    # a pool of planted keys only is an empty pool
    store.status[good.key_id] = "revoked"
    with pytest.raises(NoActiveKeyError):
        store.select_encryption_key("xwing")


def test_the_encrypt_lookup_refuses_a_key_that_no_longer_encrypts() -> None:
    store = FakeKeyStore(count=1)
    (key,) = store.list_keys()
    for status in ("rotation_queued", "expired", "revoked"):
        store.status[key.key_id] = status
        with pytest.raises(KeyNotUsableError):
            store.encryption_key(key.key_id)
    with pytest.raises(KeyNotFoundError):
        store.encryption_key("00" * 16)


def test_maintain_rotates_unattested_keys_away_and_refills() -> None:
    store = FakeKeyStore(count=0)
    old = store.plant(forged=False)  # a key from before migration 0010
    assert store.queue_due_for_rotation() == [(old, "unattested")]
    assert len(store.refill("xwing")) == 2  # it no longer counts as an active key
    (run,) = store.rotations("queued")
    begun = store.begin_rotation(run.rotation_id)
    assert begun.new_key_id in {k.key_id for k in store.list_keys(status=KeyStatus.ACTIVE)}


def test_a_rotation_never_moves_documents_onto_a_planted_key() -> None:
    store = FakeKeyStore(count=1)
    (old,) = store.list_keys()
    store.storage.rotations.open_run(old.key_id, "age")  # type: ignore[attr-defined]
    store.status[old.key_id] = "rotation_queued"
    planted = store.plant(forged=True)  # least used, so the first candidate
    (run,) = store.rotations("queued")
    with pytest.raises(NoActiveKeyError):
        store.begin_rotation(run.rotation_id)  # the only candidate fails its attestation
    fresh = store._add(kem.Suite.XWING)
    begun = store.begin_rotation(run.rotation_id)
    assert begun.new_key_id == fresh != planted


def test_an_operator_request_stops_the_key_and_the_workflow_completes_it() -> None:
    store = FakeKeyStore(count=2)
    a, _b = store.list_keys()
    request_id = store.request(a.key_id, "revoke", "lost laptop", actor="alice")
    assert store.get_key(a.key_id).status is KeyStatus.ROTATION_QUEUED  # no longer encrypts
    (run,) = store.rotations("queued")
    assert run.old_key_id == a.key_id and run.reason == "request:revoke"
    assert store.complete_requests(a.key_id) == [request_id]  # no document on it
    assert store.get_key(a.key_id).status is KeyStatus.REVOKED
    assert store.complete_requests(a.key_id) == []
    with pytest.raises(ValueError):
        store.request(_b.key_id, "revoke", " ")
    with pytest.raises(ValueError):
        store.request(_b.key_id, "delete-everything", "why not")


def test_only_the_suites_the_deployment_keeps_can_be_below_floor() -> None:
    pool = _pool(target_active=4, floor_active=2)
    pool.refill(kem.Suite.XWING)
    every = pool.status_summary()["suites"]
    assert every["mlkem768"]["below_floor"] and every["mlkem768"]["kept"]
    kept = pool.status_summary(kept_suites=["xwing"])["suites"]
    assert not kept["xwing"]["below_floor"] and kept["xwing"]["kept"]
    assert not kept["mlkem768"]["below_floor"] and not kept["mlkem768"]["kept"]
    assert not kept["mlkem1024"]["kept"]
    empty = pool.status_summary(kept_suites=["xwing", "mlkem1024"])["suites"]
    assert empty["mlkem1024"]["below_floor"] and empty["mlkem1024"]["kept"]
