"""The ingest use cases with fakes of the ports and the real PQF cipher."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading

import pytest

from pqfile.crypto import envelope, kem
from pqfile.errors import (
    DocumentNotFoundError,
    DocumentTooLargeError,
    InvalidEventError,
    KeyNotUsableError,
)
from pqfile.usecases import ingest
from pqfile.usecases.events import encrypted_key_for, parse_object_created
from pqfile.usecases.retrieve import RetrieveRequest, retrieve_document
from tests.functional.fakes import ENCRYPTED, UPLOADS, event_for, make_pipeline, run_workflow


def _upload(p, key: str, data: bytes):
    return p.blobs.put(UPLOADS, key, data)


@pytest.mark.parametrize("size", [0, 1, 1024, 64 * 1024, 64 * 1024 + 1, 3 * 1024 * 1024 + 7])
def test_round_trip_sizes(size: int) -> None:
    p = make_pipeline()
    data = os.urandom(size)
    info = _upload(p, "uploads/a/doc.bin", data)
    state = run_workflow(p, event_for(info))
    assert state["status"] == "SUCCEEDED", state.get("error")
    doc_id = state["document"]["document_id"]
    # plaintext gone, one package under encrypted/
    assert p.blobs.keys(UPLOADS) == []
    assert p.blobs.keys(ENCRYPTED) == [encrypted_key_for(doc_id)]
    package = p.blobs.data(ENCRYPTED, encrypted_key_for(doc_id))
    header = envelope.read_header(package)
    assert header.key_id == p.documents.get(doc_id).key_id
    out = retrieve_document(p, RetrieveRequest(doc_id, None, None, "alice"))
    assert out["delivery"] == "inline"
    assert base64.b64decode(out["content_base64"]) == data
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    assert [(r["operation"], r["outcome"]) for r in p.audit.rows] == [
        ("document.encrypt", "success"),
        ("document.decrypt", "attempt"),
        ("document.decrypt", "success"),
    ]
    assert p.audit.rows[0]["details"]["result"] == "stored"


@pytest.mark.parametrize(
    "key",
    [
        "uploads/a/with space.txt",
        "uploads/a/ünïcødé/文件.pdf",
        "uploads/a/a+b%20c&d=e?f#g.txt",
        "uploads/a/deep/er/tilde~!$'()*,;:@.bin",
    ],
)
def test_odd_keys(key: str) -> None:
    p = make_pipeline()
    info = _upload(p, key, b"hello")
    state = run_workflow(p, event_for(info))
    assert state["status"] == "SUCCEEDED", state.get("error")
    assert p.blobs.keys(UPLOADS) == []
    row = p.documents.get(state["document"]["document_id"])
    assert row.source_key == key


def test_s3_notification_keys_are_url_decoded() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/a/with space+plus.txt", b"x")
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": UPLOADS},
                    "object": {
                        "key": "uploads/a/with+space%2Bplus.txt",
                        "size": 1,
                        "eTag": info.etag,
                        "versionId": info.version_id,
                    },
                },
            }
        ]
    }
    fetched = ingest.fetch_document(p, event)
    assert fetched.source.key == "uploads/a/with space+plus.txt"


def test_eventbridge_keys_are_not_decoded() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/a/100%25+real.txt", b"x")
    fetched = ingest.fetch_document(p, event_for(info))
    assert fetched.source.key == "uploads/a/100%25+real.txt"


def test_replayed_event_is_a_duplicate() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/a/a.txt", b"abc" * 1000)
    event = event_for(info)
    states = [run_workflow(p, event, execution=f"e{i}") for i in range(3)]
    assert [s["status"] for s in states] == ["SUCCEEDED"] * 3
    assert len(p.documents.rows) == 1
    assert p.blobs.keys(ENCRYPTED) == [encrypted_key_for(states[0]["document"]["document_id"])]
    assert len(p.blobs.objects[(ENCRYPTED, p.blobs.keys(ENCRYPTED)[0])]) == 1
    assert [r["details"]["result"] for r in p.audit.rows] == ["stored", "duplicate", "duplicate"]


def test_concurrent_duplicates_leave_one_package() -> None:
    p = make_pipeline()
    data = os.urandom(200_000)
    info = _upload(p, "uploads/a/c.bin", data)
    event = event_for(info)
    barrier = threading.Barrier(3)
    results: list[dict] = []

    def go(i: int) -> None:
        barrier.wait()
        results.append(run_workflow(p, event, execution=f"c{i}"))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r["status"] == "SUCCEEDED" for r in results), [r.get("error") for r in results]
    assert len(p.documents.rows) == 1
    (doc_id,) = p.documents.rows
    versions = p.blobs.objects[(ENCRYPTED, encrypted_key_for(doc_id))]
    assert len(versions) == 1
    assert p.blobs.keys(UPLOADS) == []
    outcomes = sorted(r["details"]["result"] for r in p.audit.rows)
    assert outcomes.count("stored") == 1 and len(outcomes) == 3
    out = retrieve_document(p, RetrieveRequest(doc_id, None, None, "bob"))
    assert base64.b64decode(out["content_base64"]) == data


def test_a_refused_cleanup_of_a_redundant_package_keeps_the_committed_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On AWS only the shred role may delete under encrypted/: when the store step's
    clean-up of its redundant version is refused, the document stays stored on the winner."""
    from pqfile.errors import StorageError

    p = make_pipeline()
    data = os.urandom(50_000)
    info = _upload(p, "uploads/a/r.bin", data)
    event = event_for(info)
    first = run_workflow(p, event, execution="r0")
    assert first["status"] == "SUCCEEDED"
    (doc_id,) = p.documents.rows
    committed = p.documents.rows[doc_id].encrypted_version_id

    def refuse(bucket, key, version_id) -> None:
        if bucket == ENCRYPTED:
            raise StorageError(f"delete s3://{bucket}/{key}: AccessDenied")

    monkeypatch.setattr(p.blobs, "delete_version", refuse)
    # A concurrent execution's package: a second version of the same package object,
    # reaching StoreDocument after the first execution committed.
    record = p.documents.rows[doc_id]
    package = p.blobs.data(ENCRYPTED, record.encrypted_key, committed)
    redundant = p.blobs.put(ENCRYPTED, record.encrypted_key, package)
    assert redundant.version_id != committed
    source = parse_object_created(event, uploads_bucket=UPLOADS)
    result = ingest.store_document(p, doc_id, source, redundant)
    assert result.outcome == "duplicate"
    assert p.documents.rows[doc_id].encrypted_version_id == committed
    out = retrieve_document(p, RetrieveRequest(doc_id, None, None, "bob"))
    assert base64.b64decode(out["content_base64"]) == data


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e["detail"]["bucket"].update(name="other-bucket"), "uploads bucket"),
        (lambda e: e["detail"]["object"].update(key="elsewhere/x.txt"), "outside"),
        (lambda e: e["detail"]["object"].update(key="uploads/a/folder/"), "folder"),
        (lambda e: e.update(source="aws.ec2"), "aws.s3"),
        (lambda e: e.update({"detail-type": "Object Deleted"}), "Object Created"),
        (lambda e: e["detail"].pop("object"), "lacks"),
    ],
)
def test_foreign_events_are_refused(mutate, message: str) -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/a/x.txt", b"x")
    event = event_for(info)
    mutate(event)
    with pytest.raises(InvalidEventError, match=message):
        ingest.fetch_document(p, event)
    state = run_workflow(p, event)
    assert state["status"] == "FAILED"
    assert state["failure"]["error_type"] == "InvalidEventError"
    assert p.blobs.tags == {}  # foreign objects are never touched
    assert p.audit.rows[-1]["outcome"] == "failure"
    assert p.blobs.keys(UPLOADS) == ["uploads/a/x.txt"]


def test_upload_outside_a_tenant_folder_is_kept_tagged_and_audited() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/loose.txt", b"no tenant")
    state = run_workflow(p, event_for(info))
    assert state["status"] == "FAILED"
    assert state["failure"]["error_type"] == "OutsideTenantError"
    assert p.blobs.data(UPLOADS, info.key, info.version_id) == b"no tenant"  # kept
    tags = p.blobs.tags[(UPLOADS, info.key, info.version_id)]
    assert tags == {"pqfile-status": "failed", "pqfile-error": "OutsideTenantError"}
    row = p.audit.rows[-1]
    assert row["outcome"] == "failure" and row["details"]["error"] == "OutsideTenantError"
    assert p.documents.rows == {}  # no tenant, no document


def test_documents_keep_their_tenant_and_the_audit_names_the_uploader() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/acme/r.txt", b"x")
    event = event_for(info)
    event["detail"].update({"requester": "123456789012", "source-ip-address": "198.51.100.7"})
    assert run_workflow(p, event)["status"] == "SUCCEEDED"
    (record,) = p.documents.rows.values()
    assert record.tenant == "acme"
    details = p.audit.rows[-1]["details"]
    assert (details["tenant"], details["requester"], details["source_ip"]) == (
        "acme",
        "123456789012",
        "198.51.100.7",
    )


def test_the_uploader_is_only_what_the_event_says_capped() -> None:
    from pqfile.usecases.events import uploader_of

    assert uploader_of({"Records": []}) == {}
    assert uploader_of({"detail": {"requester": "r" * 1000, "source-ip-address": 5}}) == {
        "requester": "r" * 256
    }
    assert uploader_of({"detail": {"requester": "a\nb"}}) == {}


def test_object_deleted_before_fetch() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/a/gone.txt", b"x")
    p.blobs.delete_version(UPLOADS, info.key, info.version_id)
    with pytest.raises(DocumentNotFoundError):
        ingest.fetch_document(p, event_for(info))
    state = run_workflow(p, event_for(info))
    assert state["failure"]["step"] == "FetchDocument"
    assert state["failure"]["error_type"] == "DocumentNotFoundError"


def test_size_mismatch_is_refused() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/a/s.txt", b"xyz")
    event = event_for(info)
    event["detail"]["object"]["size"] = 4
    with pytest.raises(DocumentNotFoundError, match="changed"):
        ingest.fetch_document(p, event)


def test_too_large_is_refused() -> None:
    p = make_pipeline(max_document_size=10)
    info = _upload(p, "uploads/a/big.txt", b"x" * 11)
    with pytest.raises(DocumentTooLargeError, match=r"11 bytes.*allows 10 bytes"):
        ingest.fetch_document(p, event_for(info))


def test_too_large_fails_at_fetch_kept_tagged_and_audited_with_its_reason() -> None:
    p = make_pipeline(max_document_size=10)
    info = _upload(p, "uploads/a/big.txt", b"x" * 11)
    state = run_workflow(p, event_for(info), execution="too-large")
    assert state["status"] == "FAILED"
    assert state["failure"]["step"] == "FetchDocument"
    assert state["failure"]["error_type"] == "DocumentTooLargeError"
    # Nothing selected or written: refused before any work.
    assert p.blobs.keys(ENCRYPTED) == []
    assert p.blobs.data(UPLOADS, info.key, info.version_id) == b"x" * 11
    tags = p.blobs.tags[(UPLOADS, info.key, info.version_id)]
    assert tags == {"pqfile-status": "failed", "pqfile-error": "DocumentTooLargeError"}
    failed = p.audit.rows[-1]
    assert failed["outcome"] == "failure"
    assert failed["details"]["error"] == "DocumentTooLargeError"
    assert failed["details"]["upload_kept"] is True


def test_too_large_by_the_event_is_refused_before_looking_at_the_object() -> None:
    p = make_pipeline(max_document_size=10)
    info = _upload(p, "uploads/a/small.txt", b"x")
    event = event_for(info)
    event["detail"]["object"]["size"] = 11  # what S3 said: no HEAD, no row
    p.blobs.delete_version(UPLOADS, info.key, info.version_id)
    with pytest.raises(DocumentTooLargeError):
        ingest.fetch_document(p, event)


def test_encrypt_uploads_in_the_planned_part_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if S3 allowed one part: a 9 MiB document then needs a 10 MiB part, not the 8 MiB
    # configured (at scale: 10,000 parts and a document past 78 GiB).
    from pqfile.usecases import parts

    monkeypatch.setattr(parts, "S3_MAX_PARTS", 1)
    p = make_pipeline()
    assert p.settings.storage.part_size == 8 * 1024 * 1024
    info = _upload(p, "uploads/a/parts.bin", os.urandom(9 * 1024 * 1024))
    state = run_workflow(p, event_for(info))
    assert state["status"] == "SUCCEEDED", state.get("error")
    ((bucket, _key),) = p.blobs.part_sizes
    assert bucket == ENCRYPTED
    assert list(p.blobs.part_sizes.values()) == [10 * 1024 * 1024]


def _assert_failed_then_rerun(p, info, step: str, error: str, heal) -> None:
    event = event_for(info)
    state = run_workflow(p, event, execution="fail")
    assert state["status"] == "FAILED"
    assert state["failure"]["step"] == step
    assert state["failure"]["error_type"] == error
    # plaintext kept and tagged; failure audited
    assert p.blobs.data(UPLOADS, info.key, info.version_id) is not None
    assert p.blobs.tags[(UPLOADS, info.key, info.version_id)]["pqfile-status"] == "failed"
    failed = p.audit.rows[-1]
    assert failed["outcome"] == "failure" and failed["details"]["step"] == step
    heal()
    again = run_workflow(p, event, execution="rerun")
    assert again["status"] == "SUCCEEDED", again.get("error")
    assert p.blobs.keys(UPLOADS) == []
    assert p.audit.rows[-1]["details"]["result"] == "stored"


def test_database_down_at_store_then_rerun() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/a/db.txt", b"payload")
    real = p.documents.mark_stored

    def down(*a, **k):
        from pqfile.errors import TransientError

        raise TransientError("database: connection refused")

    p.documents.mark_stored = down  # type: ignore[method-assign]

    def heal() -> None:
        p.documents.mark_stored = real  # type: ignore[method-assign]

    _assert_failed_then_rerun(p, info, "StoreDocument", "TransientError", heal)
    assert p.documents.rows[next(iter(p.documents.rows))].status == "stored"


def test_s3_put_failing_during_encrypt_aborts_then_rerun() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/a/s3.txt", b"payload" * 100)
    p.blobs.fail_writes = True

    def heal() -> None:
        p.blobs.fail_writes = False

    _assert_failed_then_rerun(p, info, "EncryptDocument", "StorageError", heal)
    assert p.blobs.aborted == 1


def test_empty_pool_fails_select_key_then_rerun_after_refill() -> None:
    # SelectKey never refills (only the rotate-keys workflow creates keys): an empty pool
    # is a NoActiveKeyError, the upload is kept and audited, a refill makes the re-run pass.
    p = make_pipeline()
    p.keys.status = {k: "revoked" for k in p.keys.status}
    info = _upload(p, "uploads/a/empty.txt", b"payload")

    def heal() -> None:
        p.keys.refill(kem.Suite.XWING, actor="rotation")

    _assert_failed_then_rerun(p, info, "SelectKey", "NoActiveKeyError", heal)
    assert p.keys.refills == 1  # the heal's, none from the pipeline


def test_rerun_after_failure_reuses_the_recorded_key() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/a/k.txt", b"k")
    p.blobs.fail_writes = True
    first = run_workflow(p, event_for(info))
    p.blobs.fail_writes = False
    second = run_workflow(p, event_for(info))
    assert first["key"] == second["key"]


def test_package_binds_document_id() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/a/bind.txt", b"bind")
    state = run_workflow(p, event_for(info))
    doc_id = state["document"]["document_id"]
    package = p.blobs.data(ENCRYPTED, encrypted_key_for(doc_id))
    sk = p.keys.secrets[p.documents.get(doc_id).key_id]
    with pytest.raises(Exception):
        envelope.decrypt_stream(
            io.BytesIO(package), io.BytesIO(), sk, expected_document_id="0" * 32
        )


def test_plaintext_deleted_by_a_concurrent_winner_before_fetch_and_encrypt() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/a/race.txt", b"race")
    event = event_for(info)
    # Execution B fetched and selected a key, then A ran to completion.
    fetched = ingest.fetch_document(p, event)
    choice = ingest.select_key(p, fetched.document_id)
    assert run_workflow(p, event, execution="A")["status"] == "SUCCEEDED"
    # B's encrypt finds the plaintext gone: it reuses A's package instead of failing
    written = ingest.encrypt_document(p, fetched.document_id, fetched.source, choice.key_id)
    stored = ingest.store_document(p, fetched.document_id, fetched.source, written)
    assert stored.outcome == "duplicate"
    assert len(p.blobs.objects[(ENCRYPTED, encrypted_key_for(fetched.document_id))]) == 1
    # and a fetch after the deletion is a duplicate, not a failure
    assert ingest.fetch_document(p, event).status == "stored"


def test_store_refuses_a_package_that_is_not_this_documents() -> None:
    from pqfile.errors import StorageError

    p = make_pipeline()
    a = _upload(p, "uploads/a/a.bin", b"a")
    b = _upload(p, "uploads/a/b.bin", b"b")
    fa = ingest.fetch_document(p, event_for(a))
    fb = ingest.fetch_document(p, event_for(b))
    ka = ingest.select_key(p, fa.document_id)
    kb = ingest.select_key(p, fb.document_id)
    ingest.encrypt_document(p, fa.document_id, fa.source, ka.key_id)
    written_b = ingest.encrypt_document(p, fb.document_id, fb.source, kb.key_id)
    with pytest.raises(StorageError, match="not this document"):
        ingest.store_document(p, fa.document_id, fa.source, written_b)
    assert p.blobs.keys(UPLOADS) == ["uploads/a/a.bin", "uploads/a/b.bin"]  # nothing deleted


def test_select_key_handler_publishes_an_empty_pool(monkeypatch, capsys) -> None:
    # The key-pool-low alarm's metric: KeyPoolActiveKeys = 0 (service, suite) on an empty
    # pool; the handler raises NoActiveKeyError for the workflow's retrier.
    import json
    from types import SimpleNamespace

    from pqfile import wiring
    from pqfile.errors import NoActiveKeyError
    from pqfile.handlers import select_key

    p = make_pipeline()
    p.keys.status = {k: "revoked" for k in p.keys.status}
    info = _upload(p, "uploads/a/empty-metric.txt", b"x")
    fetched = ingest.fetch_document(p, event_for(info))
    monkeypatch.setattr(wiring.pipeline, "_value", p)
    context = SimpleNamespace(function_name="select-key", memory_limit_in_mb=256,
                              invoked_function_arn="arn:aws:lambda:us-east-1:1:function:s",
                              aws_request_id="r")  # fmt: skip
    capsys.readouterr()
    with pytest.raises(NoActiveKeyError):
        select_key.handler({"document_id": fetched.document_id}, context)
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()
            if line.startswith("{")]  # fmt: skip
    (metric,) = [d for d in docs if "KeyPoolActiveKeys" in d]
    (directive,) = metric["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "PQFile"
    assert sorted(directive["Dimensions"][0]) == ["service", "suite"]
    assert (metric["service"], metric["suite"]) == ("pqfile", "xwing")
    assert metric["KeyPoolActiveKeys"] in (0, 0.0, [0.0])
    assert p.keys.refills == 0


# --- fail-safe on keys (issue 9, finding 1) -------------------------------------------------


def test_a_replay_after_revocation_reselects_and_loses_nothing() -> None:
    # Encrypt fails -> RecordFailure -> the key is revoked -> the operator replays the upload
    # (docs/OPERATIONS.md): the document must end stored on a new active key, retrievable,
    # and its plaintext deleted only then.
    p = make_pipeline()
    data = os.urandom(100_000)
    info = _upload(p, "uploads/a/revoked-then-replayed.bin", data)
    p.blobs.fail_writes = True
    first = run_workflow(p, event_for(info), execution="first")
    assert first["status"] == "FAILED" and first["failure"]["step"] == "EncryptDocument"
    doc_id, old_key = first["document"]["document_id"], first["key"]["key_id"]
    assert p.documents.get(doc_id).status == "failed"
    p.keys.revoke(old_key, "compromised", actor="operator")
    p.blobs.fail_writes = False
    assert p.blobs.data(UPLOADS, info.key, info.version_id) == data  # still there
    again = run_workflow(p, event_for(info), execution="replay")
    assert again["status"] == "SUCCEEDED", again.get("error")
    new_key = again["key"]["key_id"]
    assert new_key != old_key and p.keys.status[new_key] == "active"
    row = p.documents.get(doc_id)
    assert (row.status, row.key_id) == ("stored", new_key)
    package = p.blobs.data(ENCRYPTED, row.encrypted_key, row.encrypted_version_id)
    assert envelope.read_header(package).key_id == new_key
    out = retrieve_document(p, RetrieveRequest(doc_id, None, None, "alice"))
    assert base64.b64decode(out["content_base64"]) == data
    assert p.blobs.keys(UPLOADS) == [] and doc_id in p.documents.plaintext_deleted


def test_encrypt_refuses_a_key_revoked_after_selection() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/a/revoked-before-encrypt.txt", b"keep me")
    fetched = ingest.fetch_document(p, event_for(info))
    choice = ingest.select_key(p, fetched.document_id)
    p.keys.revoke(choice.key_id, "compromised", actor="operator")
    with pytest.raises(KeyNotUsableError):
        ingest.encrypt_document(p, fetched.document_id, fetched.source, choice.key_id)
    assert p.blobs.keys(ENCRYPTED) == []  # nothing written to the revoked key
    assert p.blobs.keys(UPLOADS) == [info.key]


def test_store_refuses_a_key_revoked_after_encryption_and_keeps_the_plaintext() -> None:
    p = make_pipeline()
    info = _upload(p, "uploads/a/revoked-before-store.txt", b"keep me too")
    fetched = ingest.fetch_document(p, event_for(info))
    choice = ingest.select_key(p, fetched.document_id)
    written = ingest.encrypt_document(p, fetched.document_id, fetched.source, choice.key_id)
    p.keys.revoke(choice.key_id, "compromised", actor="operator")
    with pytest.raises(KeyNotUsableError):
        ingest.store_document(p, fetched.document_id, fetched.source, written)
    assert p.documents.get(fetched.document_id).status == "pending"
    assert p.blobs.keys(UPLOADS) == [info.key]
    # the replay selects a new key, and only then is the plaintext deleted
    state = run_workflow(p, event_for(info), execution="replay")
    assert state["status"] == "SUCCEEDED" and state["key"]["key_id"] != choice.key_id
    assert p.blobs.keys(UPLOADS) == []


def test_encrypt_refuses_a_planted_key() -> None:
    # A key row inserted with SQL (its secret known to whoever planted it) carries no valid
    # attestation: selection skips it and the encrypt step's lookup refuses it.
    from pqfile.errors import CustodyError

    p = make_pipeline()
    planted = p.keys.plant(forged=True)
    p.keys.status = {k: "revoked" for k in p.keys.status if k != planted}
    info = _upload(p, "uploads/a/planted.txt", b"not for you")
    state = run_workflow(p, event_for(info))
    assert state["status"] == "FAILED" and state["failure"]["error_type"] == "NoActiveKeyError"
    fetched = ingest.fetch_document(p, event_for(info))
    # Even put on the row directly (as a stolen select_key credential could: the database
    # cannot check a KMS MAC), the planted key is never encrypted to.
    p.documents.assign_key(fetched.document_id, planted)
    with pytest.raises(CustodyError):
        ingest.encrypt_document(p, fetched.document_id, fetched.source, planted)
    assert p.blobs.keys(ENCRYPTED) == []


# --- the suite of a document: PQFILE_SUITE_BY_PREFIX (issue 11, CNSA) -----------------------


def test_uploads_under_a_mapped_prefix_get_a_key_of_its_suite() -> None:
    # The longest matching prefix of tenant/key chooses the suite; other uploads get the
    # default. Each document's key, row and package header carry that suite.
    p = make_pipeline(
        suite_by_prefix=(("acme/cnsa/", "mlkem1024"), ("acme/", "mlkem768")),
    )
    cnsa_keys = {p.keys._add(kem.Suite.MLKEM1024) for _ in range(2)}
    mlkem768_keys = {p.keys._add(kem.Suite.MLKEM768) for _ in range(2)}
    expected = {
        "uploads/acme/cnsa/secret.pdf": kem.Suite.MLKEM1024,
        "uploads/acme/cnsa/deeper/more.pdf": kem.Suite.MLKEM1024,
        "uploads/acme/plain.pdf": kem.Suite.MLKEM768,
        "uploads/acme-corp/cnsa/x.pdf": kem.Suite.XWING,
        "uploads/beta/acme/cnsa/x.pdf": kem.Suite.XWING,
    }
    for key, suite in expected.items():
        data = os.urandom(1000)
        state = run_workflow(p, event_for(_upload(p, key, data)), execution=key)
        assert state["status"] == "SUCCEEDED", state.get("error")
        doc_id = state["document"]["document_id"]
        row = p.documents.get(doc_id)
        assert row.suite == suite.value, key
        assert p.keys.get_key(row.key_id).suite == suite.value
        if suite is kem.Suite.MLKEM1024:
            assert row.key_id in cnsa_keys
        elif suite is kem.Suite.MLKEM768:
            assert row.key_id in mlkem768_keys
        header = envelope.read_header(p.blobs.data(ENCRYPTED, encrypted_key_for(doc_id)))
        assert header.suite is suite and header.key_id == row.key_id
        out = retrieve_document(p, RetrieveRequest(doc_id, None, None, "alice"))
        assert base64.b64decode(out["content_base64"]) == data


def test_an_empty_pool_of_the_mapped_suite_is_not_filled_from_another(
    monkeypatch, capsys
) -> None:
    # No mlkem1024 key: SelectKey fails (the workflow retries, the upload is kept), it never
    # falls back to the default suite, and the pool-size metric names the suite it wanted.
    import json
    from types import SimpleNamespace

    from pqfile import wiring
    from pqfile.errors import NoActiveKeyError
    from pqfile.handlers import select_key

    p = make_pipeline(suite_by_prefix=(("acme/", "mlkem1024"),))
    info = _upload(p, "uploads/acme/x.pdf", b"x")
    fetched = ingest.fetch_document(p, event_for(info))
    assert ingest.suite_wanted(p, fetched.document_id) == "mlkem1024"
    monkeypatch.setattr(wiring.pipeline, "_value", p)
    context = SimpleNamespace(function_name="select-key", memory_limit_in_mb=256,
                              invoked_function_arn="arn:aws:lambda:us-east-1:1:function:s",
                              aws_request_id="r")  # fmt: skip
    capsys.readouterr()
    with pytest.raises(NoActiveKeyError, match="mlkem1024"):
        select_key.handler({"document_id": fetched.document_id}, context)
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()
            if line.startswith("{")]  # fmt: skip
    (metric,) = [d for d in docs if "KeyPoolActiveKeys" in d]
    assert metric["suite"] == "mlkem1024"
    assert p.documents.get(fetched.document_id).key_id is None
    assert p.blobs.keys(UPLOADS) == ["uploads/acme/x.pdf"]
    # Once the mlkem1024 pool is refilled, the same document gets a key of that suite.
    p.keys.refill(kem.Suite.MLKEM1024, actor="rotation")
    choice = ingest.select_key(p, fetched.document_id)
    assert choice.suite == "mlkem1024"
