"""The document index as the pipeline's roles see it: idempotent on the source identity,
each write made by the one step whose role may make it, and never onto a dead key."""

from __future__ import annotations

from typing import Any

import pytest

from pqfile.adapters.kms import KmsSeedProtector
from pqfile.adapters.kms_mac import KmsKeyAttestor
from pqfile.adapters.postgres.connection import Database, PermissionDeniedError
from pqfile.adapters.postgres.documents import PostgresDocumentRepository
from pqfile.adapters.postgres.keystore import PostgresKeyStore
from pqfile.errors import DocumentNotFoundError, KeyNotUsableError
from tests.fixtures.postgres import (
    FETCH,
    MAINTAIN,
    OPERATOR,
    RECORD_FAILURE,
    RETRIEVE,
    SELECT_KEY,
    STORE,
    role_url,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]


def _begin(repo: PostgresDocumentRepository, doc_id: str, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "document_id": doc_id,
        "source_bucket": "uploads-bucket",
        "source_key": "uploads/a/report.pdf",
        "source_version_id": "v1",
        "source_etag": '"etag1"',
        "plaintext_size": 1234,
        "tenant": "a",
    }
    args.update(kw)
    return repo.begin(**args)


def _repo(db_url: str, role: str) -> PostgresDocumentRepository:
    return PostgresDocumentRepository(Database.from_url(role_url(db_url, role)))


def test_replayed_event_finds_its_document(
    db_url: str, protector: KmsSeedProtector, attestor: KmsKeyAttestor
) -> None:
    admin = PostgresKeyStore(
        Database.from_url(role_url(db_url, MAINTAIN)), protector, attestor=attestor
    )
    key, other_key = admin.create_keys("xwing", 2)
    fetch, select, store = _repo(db_url, FETCH), _repo(db_url, SELECT_KEY), _repo(db_url, STORE)
    failure = _repo(db_url, RECORD_FAILURE)

    first = _begin(fetch, "doc-1", content_type="application/pdf")
    assert first.status == "pending" and first.plaintext_size == 1234
    assert first.source_content_type == "application/pdf"  # kept on the row (0016)
    replay = _begin(fetch, "doc-other-id")  # same source object, new id: the first wins
    assert replay == first
    other_version = _begin(fetch, "doc-2", source_version_id="v2")
    assert other_version.document_id == "doc-2"
    unversioned = _begin(fetch, "doc-3", source_version_id=None, source_etag='"e3"')
    source = ("uploads-bucket", "uploads/a/report.pdf")
    assert fetch.find_by_source(*source, None, '"e3"') == unversioned
    assert fetch.find_by_source(*source, "v1", None) == first

    assigned = select.assign_key("doc-1", key.key_id)
    assert (assigned.key_id, assigned.suite) == (key.key_id, "xwing")
    assert select.assign_key("doc-1", other_key.key_id).key_id == key.key_id  # first wins
    with pytest.raises(KeyNotUsableError):
        select.assign_key("doc-2", "00" * 16)  # no such key: never assigned

    stored, did = store.mark_stored(
        "doc-1",
        encrypted_bucket="enc",
        encrypted_key="encrypted/doc-1.pqf",
        encrypted_version_id="ev1",
        encrypted_size=2000,
    )
    assert did and stored.status == "stored" and stored.encrypted_size == 2000
    again, did_again = store.mark_stored(
        "doc-1",
        encrypted_bucket="enc",
        encrypted_key="encrypted/other.pqf",
        encrypted_version_id="ev2",
        encrypted_size=1,
    )
    assert not did_again and again.encrypted_key == "encrypted/doc-1.pqf"
    failure.record_failure("doc-1", error="late failure", details={"step": "x"})
    assert fetch.get_document("doc-1").status == "stored"  # ignored: already stored
    seq = failure.record_failure("doc-2", error="boom", details={"step": "EncryptDocument"})
    assert fetch.get_document("doc-2").status == "failed" and seq > 0
    store.mark_plaintext_deleted("doc-1")
    assert store.find_by_encrypted_object("enc", "encrypted/doc-1.pqf") == store.get("doc-1")
    # by the upload: only the stored one of its three documents (doc-2 failed, doc-3 pending)
    assert store.find_stored_by_source(*source) == store.get("doc-1")
    assert store.find_stored_by_source("uploads-bucket", "uploads/a/other.pdf") is None
    # by the upload's version: that version's stored document only
    assert store.find_stored_by_source(*source, "v1") == store.get("doc-1")
    assert store.find_stored_by_source(*source, "v2") is None  # doc-2 failed
    assert store.find_stored_by_source(*source, "v9") is None
    assert store.get_document("doc-1").stored_at is not None
    assert fetch.get("nope") is None
    with pytest.raises(DocumentNotFoundError):
        fetch.get_document("nope")

    reader = _repo(db_url, RETRIEVE)
    assert reader.get_document("doc-1").key_id == key.key_id
    with pytest.raises(PermissionDeniedError):
        _begin(reader, "doc-9", source_version_id="v9")
    with pytest.raises(PermissionDeniedError):
        reader.record_failure("doc-3", error="not allowed", details={})
    for role, attempt in (
        (FETCH, lambda r: r.assign_key("doc-3", key.key_id)),
        (SELECT_KEY, lambda r: r.mark_stored("doc-3", encrypted_bucket="e", encrypted_key="k",
                                             encrypted_version_id=None, encrypted_size=1)),
        (STORE, lambda r: _begin(r, "doc-8", source_version_id="v8")),
        (RECORD_FAILURE, lambda r: r.mark_plaintext_deleted("doc-1")),
    ):  # fmt: skip
        with pytest.raises(PermissionDeniedError):
            attempt(_repo(db_url, role))


def test_a_dead_key_is_replaced_and_never_stored_to(
    db_url: str, protector: KmsSeedProtector, attestor: KmsKeyAttestor
) -> None:
    admin = PostgresKeyStore(
        Database.from_url(role_url(db_url, MAINTAIN)), protector, attestor=attestor
    )
    operator = PostgresKeyStore(Database.from_url(role_url(db_url, OPERATOR)), protector)
    dead, alive = admin.create_keys("xwing", 2)
    fetch, select, store = _repo(db_url, FETCH), _repo(db_url, SELECT_KEY), _repo(db_url, STORE)
    _begin(fetch, "doc-1")
    select.assign_key("doc-1", dead.key_id)
    operator.revoke(dead.key_id, "compromised")
    with pytest.raises(KeyNotUsableError):  # store refuses the revoked key
        store.mark_stored(
            "doc-1",
            encrypted_bucket="enc",
            encrypted_key="encrypted/doc-1.pqf",
            encrypted_version_id="ev1",
            encrypted_size=2000,
        )
    with pytest.raises(KeyNotUsableError):  # a revoked key is never assigned
        select.assign_key("doc-1", dead.key_id)
    # a replay's assignment replaces the dead key, then the document stores
    assert select.assign_key("doc-1", alive.key_id).key_id == alive.key_id
    stored, did = store.mark_stored(
        "doc-1",
        encrypted_bucket="enc",
        encrypted_key="encrypted/doc-1.pqf",
        encrypted_version_id="ev2",
        encrypted_size=2000,
    )
    assert did and stored.key_id == alive.key_id
