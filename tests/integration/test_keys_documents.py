"""The document index as the pipeline's roles see it: idempotent on the source identity."""

from __future__ import annotations

from typing import Any

import pytest

from pqfile.adapters.kms import KmsSeedProtector
from pqfile.adapters.postgres.connection import Database, PermissionDeniedError
from pqfile.adapters.postgres.documents import PostgresDocumentRepository
from pqfile.adapters.postgres.keystore import PostgresKeyStore
from pqfile.errors import DocumentNotFoundError
from tests.fixtures.postgres import INGEST, RETRIEVE, ROTATE, role_url

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]


def _begin(repo: PostgresDocumentRepository, doc_id: str, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "document_id": doc_id,
        "source_bucket": "uploads-bucket",
        "source_key": "uploads/report.pdf",
        "source_version_id": "v1",
        "source_etag": '"etag1"',
        "plaintext_size": 1234,
    }
    args.update(kw)
    return repo.begin(**args)


def test_replayed_event_finds_its_document(db_url: str, custody_kms: tuple[Any, str]) -> None:
    client, kms_key_id = custody_kms
    admin = PostgresKeyStore(
        Database.from_url(role_url(db_url, ROTATE)), KmsSeedProtector(client, kms_key_id)
    )
    (key,) = admin.create_keys("xwing", 1)
    repo = PostgresDocumentRepository(Database.from_url(role_url(db_url, INGEST)))

    first = _begin(repo, "doc-1")
    assert first.status == "pending" and first.plaintext_size == 1234
    replay = _begin(repo, "doc-other-id")  # same source object, new id: the first wins
    assert replay == first
    other_version = _begin(repo, "doc-2", source_version_id="v2")
    assert other_version.document_id == "doc-2"
    unversioned = _begin(repo, "doc-3", source_version_id=None, source_etag='"e3"')
    assert repo.find_by_source("uploads-bucket", "uploads/report.pdf", None, '"e3"') == unversioned
    assert repo.find_by_source("uploads-bucket", "uploads/report.pdf", "v1", None) == first

    assigned = repo.assign_key("doc-1", key.key_id, "xwing")
    assert assigned.key_id == key.key_id
    assert repo.assign_key("doc-1", "00" * 16, "xwing").key_id == key.key_id  # first wins

    stored, did = repo.mark_stored(
        "doc-1",
        encrypted_bucket="enc",
        encrypted_key="encrypted/doc-1.pqf",
        encrypted_version_id="ev1",
        encrypted_size=2000,
    )
    assert did and stored.status == "stored" and stored.encrypted_size == 2000
    again, did_again = repo.mark_stored(
        "doc-1",
        encrypted_bucket="enc",
        encrypted_key="encrypted/other.pqf",
        encrypted_version_id="ev2",
        encrypted_size=1,
    )
    assert not did_again and again.encrypted_key == "encrypted/doc-1.pqf"
    repo.mark_failed("doc-1", "late failure")  # ignored: already stored
    assert repo.get_document("doc-1").status == "stored"
    repo.mark_failed("doc-2", "boom")
    assert repo.get_document("doc-2").status == "failed"
    repo.mark_plaintext_deleted("doc-1")
    assert repo.find_by_encrypted_object("enc", "encrypted/doc-1.pqf") == repo.get("doc-1")
    assert repo.get("nope") is None
    with pytest.raises(DocumentNotFoundError):
        repo.get_document("nope")

    reader = PostgresDocumentRepository(Database.from_url(role_url(db_url, RETRIEVE)))
    assert reader.get_document("doc-1").key_id == key.key_id
    with pytest.raises(PermissionDeniedError):
        _begin(reader, "doc-9", source_version_id="v9")
    with pytest.raises(PermissionDeniedError):
        reader.mark_failed("doc-3", "not allowed")
