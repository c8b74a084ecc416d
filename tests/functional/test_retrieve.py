"""Retrieve with fakes: refusals are audited, success is byte-identical, large ones by URL."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from pqfile.errors import (
    DecryptionError,
    DocumentNotFoundError,
    InvalidEventError,
    KeyNotUsableError,
)
from pqfile.usecases.events import encrypted_key_for
from pqfile.usecases.retrieve import identify_actor, retrieve_payload
from tests.functional.fakes import ENCRYPTED, UPLOADS, event_for, make_pipeline, run_workflow


def _ingest(p, data: bytes, key: str = "uploads/a/r.bin") -> str:
    info = p.blobs.put(UPLOADS, key, data)
    state = run_workflow(p, event_for(info))
    assert state["status"] == "SUCCEEDED", state.get("error")
    return state["document"]["document_id"]


def test_inline_round_trip_and_audit() -> None:
    p = make_pipeline()
    data = os.urandom(5000)
    doc = _ingest(p, data)
    out = retrieve_payload(p, {"document_id": doc}, claimed_by="alice", request_id="req-1")
    assert base64.b64decode(out["content_base64"]) == data
    assert out["size"] == 5000 and out["sha256"] == hashlib.sha256(data).hexdigest()
    row = p.audit.rows[-1]
    # The declared name is a detail; the actor is left to the database (the retrieve role,
    # or the verified caller once there is one).
    assert (row["operation"], row["outcome"], row["actor"], row["request_id"]) == (
        "document.decrypt", "success", None, "req-1")
    assert row["details"]["claimed_by"] == "alice"
    assert row["key_id"] == p.documents.get(doc).key_id


def test_by_encrypted_bucket_and_key() -> None:
    p = make_pipeline()
    doc = _ingest(p, b"by key")
    out = retrieve_payload(p, {"bucket": ENCRYPTED, "key": encrypted_key_for(doc)}, claimed_by="a")
    assert base64.b64decode(out["content_base64"]) == b"by key"


def test_large_documents_come_back_by_presigned_url() -> None:
    p = make_pipeline(inline_limit=1000, presign_seconds=120)
    data = os.urandom(300_000)
    doc = _ingest(p, data)
    out = retrieve_payload(p, {"document_id": doc}, claimed_by="carol")
    assert out["delivery"] == "url" and "content_base64" not in out
    assert out["expires_in"] == 120 and out["key"].startswith(f"retrievals/{doc}/")
    assert p.blobs.data(ENCRYPTED, out["key"]) == data
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    # the copy is written with SSE-KMS
    assert p.blobs.objects[(ENCRYPTED, out["key"])][0]["kms"] is not None


def test_unknown_document_is_refused_and_audited() -> None:
    p = make_pipeline()
    with pytest.raises(DocumentNotFoundError):
        retrieve_payload(p, {"document_id": "f" * 32}, claimed_by="mallory")
    row = p.audit.rows[-1]
    assert (row["outcome"], row["actor"], row["details"]["reason"]) == (
        "refused", None, "DocumentNotFoundError")
    assert row["details"]["claimed_by"] == "mallory"


def test_revoked_key_is_refused_and_audited() -> None:
    p = make_pipeline()
    doc = _ingest(p, b"secret")
    p.keys.status[p.documents.get(doc).key_id] = "revoked"
    with pytest.raises(KeyNotUsableError):
        retrieve_payload(p, {"document_id": doc}, claimed_by="dave")
    row = p.audit.rows[-1]
    assert row["outcome"] == "refused" and row["details"]["reason"] == "KeyNotUsableError"
    assert row["document_id"] == doc


@pytest.mark.parametrize("where", ["header", "body", "truncate"])
@pytest.mark.parametrize("inline_limit", [4 * 1024 * 1024, 10])
def test_tampered_package_is_refused_and_nothing_released(where: str, inline_limit: int) -> None:
    p = make_pipeline(inline_limit=inline_limit)
    doc = _ingest(p, os.urandom(150_000))
    key = encrypted_key_for(doc)
    entry = p.blobs.objects[(ENCRYPTED, key)][0]
    data = bytearray(entry["data"])
    if where == "header":
        data[60] ^= 1
    elif where == "body":
        data[-100] ^= 1
    else:
        del data[-17:]
    entry["data"] = bytes(data)
    with pytest.raises((DecryptionError, Exception)) as info:
        retrieve_payload(p, {"document_id": doc}, claimed_by="eve")
    assert info.type.__name__ in {"DecryptionError", "MalformedPackageError", "LimitExceededError"}
    assert p.blobs.keys(ENCRYPTED, "retrievals/") == []  # no copy released
    assert p.audit.rows[-1]["outcome"] == "refused"


def test_malformed_payload_is_refused_and_audited() -> None:
    p = make_pipeline()
    with pytest.raises(InvalidEventError):
        retrieve_payload(p, {"nothing": 1}, claimed_by="x")
    assert p.audit.rows[-1]["outcome"] == "refused"
    assert p.audit.rows[-1]["details"]["claimed_by"] == "x"
    with pytest.raises(InvalidEventError):
        retrieve_payload(p, {"nothing": 1})
    assert "claimed_by" not in p.audit.rows[-1]["details"]  # nothing claimed, nothing kept


def test_actor_order() -> None:
    cc = {"custom": {"requested_by": "c"}}
    assert identify_actor({"requested_by": "p"}, client_context=cc) == "c"
    assert identify_actor({"requested_by": "p"}, cognito_identity_id="id-1") == "cognito:id-1"
    assert identify_actor({"requested_by": "p"}) == "p"
    assert identify_actor({}) is None  # nothing declared: no claimed_by at all
    assert identify_actor({"requested_by": "\n"}) is None
    assert identify_actor({"requested_by": "a\nb"}) == "ab"


def test_content_type_comes_back_from_the_authenticated_context() -> None:
    p = make_pipeline()
    info = p.blobs.put(UPLOADS, "uploads/a/t.txt", b"text", content_type="text/plain")
    assert run_workflow(p, event_for(info))["status"] == "SUCCEEDED"
    (doc,) = p.documents.rows
    out = retrieve_payload(p, {"document_id": doc}, claimed_by="a")
    assert out["content_type"] == "text/plain"
