"""Retrieve with fakes: identity first, deny by default, one answer for not-found and
not-allowed, an attempt row before any decryption, refusals audited, success byte-identical,
large ones by URL."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
from typing import Any

import pytest

from pqfile.auth import IdentityProofError
from pqfile.errors import (
    DecryptionError,
    DocumentNotFoundError,
    InvalidEventError,
    KeyNotUsableError,
    TransientError,
)
from pqfile.usecases.events import encrypted_key_for
from pqfile.usecases.retrieve import Retrieval, claimed_name, retrieve
from tests.functional.fakes import (
    ENCRYPTED,
    UPLOADS,
    event_for,
    make_retrieval,
    proof_for,
    run_workflow,
)

ALICE = "arn:aws:iam::123456789012:user/alice"
BOB = "arn:aws:iam::123456789012:user/bob"


def _ingest(r: Retrieval, data: bytes, key: str = "uploads/a/r.bin") -> str:
    p = r.pipeline
    info = p.blobs.put(UPLOADS, key, data)
    state = run_workflow(p, event_for(info))
    assert state["status"] == "SUCCEEDED", state.get("error")
    return str(state["document"]["document_id"])


def _world(**settings: Any) -> Retrieval:
    r = make_retrieval(**settings)
    r.access.grant(ALICE, tenant="a")  # type: ignore[attr-defined]
    return r


def _ask(r: Retrieval, payload: dict[str, Any], who: str | None = ALICE, **kw: Any) -> Any:
    if who is not None:
        try:
            proof = proof_for(who, payload)
        except InvalidEventError:  # a payload outside the canonical form's caps
            proof = {"principal": who, "request_sha256": "0" * 64}
        payload = {**payload, "identity_proof": proof}
    return retrieve(r, payload, **kw)


def _decrypt_rows(r: Retrieval) -> list[dict[str, Any]]:
    return [row for row in r.pipeline.audit.rows if row["operation"] == "document.decrypt"]  # type: ignore[attr-defined]


def test_inline_round_trip_attempt_then_success_with_the_verified_actor() -> None:
    r = _world()
    data = os.urandom(5000)
    doc = _ingest(r, data)
    out = _ask(r, {"document_id": doc, "requested_by": "auditor@example.com"},
               claimed_by="auditor@example.com", request_id="req-1")  # fmt: skip
    assert base64.b64decode(out["content_base64"]) == data
    assert out["size"] == 5000 and out["sha256"] == hashlib.sha256(data).hexdigest()
    attempt, success = _decrypt_rows(r)
    assert [(x["outcome"], x["actor"], x["request_id"]) for x in (attempt, success)] == [
        ("attempt", ALICE, "req-1"),
        ("success", ALICE, "req-1"),
    ]
    # what the caller declared never becomes the actor
    assert success["details"]["claimed_by"] == "auditor@example.com"
    assert success["details"]["sts_arn"] == ALICE
    assert success["key_id"] == r.pipeline.documents.get(doc).key_id


def test_by_encrypted_bucket_and_key() -> None:
    r = _world()
    doc = _ingest(r, b"by key")
    out = _ask(r, {"bucket": ENCRYPTED, "key": encrypted_key_for(doc)})
    assert base64.b64decode(out["content_base64"]) == b"by key"


def test_by_source_the_newest_stored_document_or_the_version_named() -> None:
    r = _world()
    first = _ingest(r, b"first version", key="uploads/a/report.pdf")
    newest = _ingest(r, b"second version", key="uploads/a/report.pdf")
    source = {"bucket": UPLOADS, "key": "uploads/a/report.pdf"}
    out = _ask(r, {"source": source})
    assert base64.b64decode(out["content_base64"]) == b"second version"
    assert out["document_id"] == newest
    attempt, success = _decrypt_rows(r)
    assert (attempt["outcome"], attempt["actor"], attempt["document_id"]) == (
        "attempt", ALICE, newest)  # fmt: skip
    assert success["outcome"] == "success"
    assert attempt["details"]["requested"] == {"source": {**source, "version_id": None}}
    # with its version id: that upload's document, not the newest
    version = r.pipeline.documents.get(first).source_version_id  # type: ignore[union-attr]
    assert version
    out = _ask(r, {"source": {**source, "version_id": version}})
    assert (out["document_id"], base64.b64decode(out["content_base64"])) == (
        first, b"first version")  # fmt: skip


def test_top_level_bucket_and_key_name_the_package_not_the_upload() -> None:
    r = _world()
    _ingest(r, b"kept", key="uploads/a/name.txt")
    with pytest.raises(DocumentNotFoundError):
        _ask(r, {"bucket": UPLOADS, "key": "uploads/a/name.txt"})


def test_by_source_not_allowed_and_not_found_look_the_same() -> None:
    r = _world()
    doc = _ingest(r, b"tenant a's", key="uploads/a/secret.bin")
    version = r.pipeline.documents.get(doc).source_version_id  # type: ignore[union-attr]
    answers = []
    for who, source in ((BOB, {"key": "uploads/a/secret.bin"}),
                        (ALICE, {"key": "uploads/a/missing.bin"}),
                        (ALICE, {"key": "uploads/a/secret.bin", "version_id": "nope"}),
                        (BOB, {"key": "uploads/a/secret.bin", "version_id": version})):  # fmt: skip
        with pytest.raises(DocumentNotFoundError) as info:
            _ask(r, {"source": {"bucket": UPLOADS, **source}}, who)
        answers.append((type(info.value).__name__, str(info.value)))
    assert len(set(answers)) == 1
    reasons = [(x["actor"], x["details"]["reason"], x["document_id"]) for x in _decrypt_rows(r)]
    assert reasons == [(BOB, "not_allowed", doc), (ALICE, "not_found", None),
                       (ALICE, "not_found", None), (BOB, "not_allowed", doc)]  # fmt: skip
    assert not any(x["outcome"] == "attempt" for x in _decrypt_rows(r))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"source": "s3://b/k"}, "source must be an object"),
        ({"source": ["b", "k"]}, "source must be an object"),
        ({"source": {"bucket": "b"}}, "source.key must be a non-empty string"),
        ({"source": {"key": "k"}}, "source.bucket must be a non-empty string"),
        ({"source": {"bucket": "b", "key": "k", "etag": "x"}}, "unknown source field(s): etag"),
        ({"source": {"bucket": "b" * 64, "key": "k"}}, "source.bucket is longer than 63"),
        ({"source": {"bucket": "b", "key": "k" * 1025}}, "source.key is longer than 1024"),
        ({"source": {"bucket": "b", "key": "k", "version_id": 7}},
         "source.version_id must be a non-empty string"),
        ({"source": {"bucket": "b", "key": "k", "version_id": "v" * 1025}},
         "source.version_id is longer than 1024"),
        ({"source": {"bucket": "b", "key": "k\n"}}, "source.key holds control characters"),
        ({"source": {"bucket": "b", "key": "k"}, "document_id": "d"}, "name the document one way"),
        ({"source": {"bucket": "b", "key": "k"}, "bucket": "b", "key": "k"},
         "name the document one way"),
    ],
)
def test_source_is_validated_strictly(payload: dict[str, Any], message: str) -> None:
    r = _world()
    with pytest.raises(InvalidEventError) as info:
        _ask(r, payload)
    assert message in str(info.value)
    assert "s3://b/k" not in str(info.value)  # never echoes the value
    (refused,) = _decrypt_rows(r)
    assert (refused["outcome"], refused["details"]["reason"]) == ("refused", "invalid_request")


def test_large_documents_come_back_by_presigned_url() -> None:
    r = _world(inline_limit=1000, presign_seconds=120)
    p = r.pipeline
    data = os.urandom(300_000)
    doc = _ingest(r, data)
    out = _ask(r, {"document_id": doc})
    assert out["delivery"] == "url" and "content_base64" not in out
    assert out["expires_in"] == 120 and out["key"].startswith(f"retrievals/{doc}/")
    assert p.blobs.data(ENCRYPTED, out["key"]) == data
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    # the copy is written with SSE-KMS
    assert p.blobs.objects[(ENCRYPTED, out["key"])][0]["kms"] is not None


def test_not_found_and_not_allowed_look_the_same_and_the_audit_tells_them_apart() -> None:
    r = _world()
    doc = _ingest(r, b"tenant a's")
    answers = []
    for who, payload in ((BOB, {"document_id": doc}), (ALICE, {"document_id": "f" * 32})):
        with pytest.raises(DocumentNotFoundError) as info:
            _ask(r, payload, who)
        answers.append((type(info.value).__name__, str(info.value)))
    assert answers[0] == answers[1]
    not_allowed, not_found = _decrypt_rows(r)
    assert (not_allowed["actor"], not_allowed["outcome"], not_allowed["details"]["reason"]) == (
        BOB,
        "refused",
        "not_allowed",
    )
    assert (not_found["actor"], not_found["details"]["reason"]) == (ALICE, "not_found")
    # nothing was read from KMS or S3 for either
    assert not any(x["outcome"] == "attempt" for x in _decrypt_rows(r))


def test_patterns_and_document_rules() -> None:
    r = make_retrieval()
    doc = _ingest(r, b"x")
    r.access.grant("arn:aws:iam::123456789012:user/*", tenant="a")  # type: ignore[attr-defined]
    assert _ask(r, {"document_id": doc}, BOB)["size"] == 1
    r2 = make_retrieval()
    doc2 = _ingest(r2, b"y")
    r2.access.grant(BOB, document_id=doc2)  # type: ignore[attr-defined]
    assert _ask(r2, {"document_id": doc2}, BOB)["size"] == 1
    with pytest.raises(DocumentNotFoundError):
        _ask(r2, {"document_id": doc2}, ALICE)


def test_no_proof_is_refused_and_audited_before_anything_is_read() -> None:
    r = _world()
    doc = _ingest(r, b"secret")
    with pytest.raises(IdentityProofError) as info:
        _ask(r, {"document_id": doc, "requested_by": "auditor@example.com"}, None,
             claimed_by="auditor@example.com")  # fmt: skip
    assert info.value.reason.value == "proof_missing"
    (row,) = _decrypt_rows(r)
    assert (row["outcome"], row["actor"], row["details"]["reason"]) == (
        "refused",
        None,
        "proof_missing",
    )
    assert row["details"]["claimed_by"] == "auditor@example.com"
    assert r.access.checks == []  # type: ignore[attr-defined]


def test_a_proof_for_another_document_is_refused() -> None:
    r = _world()
    doc = _ingest(r, b"secret")
    payload = {"document_id": doc, "identity_proof": proof_for(ALICE, {"document_id": "other"})}
    with pytest.raises(IdentityProofError, match="request_hash_mismatch"):
        retrieve(r, payload)


def test_sts_unavailable_is_transient_and_audited() -> None:
    r = _world()
    doc = _ingest(r, b"secret")
    r.identity.unavailable = True  # type: ignore[attr-defined]
    with pytest.raises(TransientError):
        _ask(r, {"document_id": doc})
    assert _decrypt_rows(r)[-1]["details"]["reason"] == "sts_unavailable"


def test_a_5_mb_payload_is_refused_with_a_clear_error_and_a_bounded_row() -> None:
    r = _world()
    huge = "x" * (5 * 1024 * 1024)
    for payload in ({"document_id": huge}, {"bucket": "b", "key": huge},
                    {"document_id": "d", "junk": huge}, {huge: 1}):  # fmt: skip
        with pytest.raises(InvalidEventError) as info:
            _ask(r, payload, claimed_by=claimed_name({"requested_by": huge}))
        assert len(str(info.value)) < 200
        row = _decrypt_rows(r)[-1]
        assert row["outcome"] == "refused" and row["details"]["reason"] == "invalid_request"
        assert len(repr(row)) < 2048
    with pytest.raises(InvalidEventError, match="document_id is longer than 128"):
        _ask(r, {"document_id": "d" * 129})


def test_revoked_key_is_refused_and_audited() -> None:
    r = _world()
    doc = _ingest(r, b"secret")
    r.pipeline.keys.status[r.pipeline.documents.get(doc).key_id] = "revoked"  # type: ignore[attr-defined]
    with pytest.raises(KeyNotUsableError):
        _ask(r, {"document_id": doc})
    attempt, row = _decrypt_rows(r)
    assert attempt["outcome"] == "attempt"
    assert row["outcome"] == "refused" and row["details"]["reason"] == "KeyNotUsableError"
    assert row["document_id"] == doc and row["actor"] == ALICE


def test_no_attempt_row_no_decryption() -> None:
    r = _world(inline_limit=10)
    doc = _ingest(r, os.urandom(5000))
    r.pipeline.audit.fail_outcomes.add("attempt")  # type: ignore[attr-defined]
    loads = []
    original = r.pipeline.keys.load_decryption_key
    r.pipeline.keys.load_decryption_key = lambda k: loads.append(k) or original(k)  # type: ignore[method-assign]
    with pytest.raises(TransientError):
        _ask(r, {"document_id": doc})
    assert loads == [] and r.pipeline.blobs.keys(ENCRYPTED, "retrievals/") == []  # type: ignore[attr-defined]


def test_url_copy_deleted_when_the_outcome_row_cannot_be_written() -> None:
    r = _world(inline_limit=10)
    doc = _ingest(r, os.urandom(5000))
    r.pipeline.audit.fail_outcomes.add("success")  # type: ignore[attr-defined]
    with pytest.raises(TransientError):
        _ask(r, {"document_id": doc})
    assert r.pipeline.blobs.keys(ENCRYPTED, "retrievals/") == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("where", ["header", "body", "truncate"])
@pytest.mark.parametrize("inline_limit", [4 * 1024 * 1024, 10])
def test_tampered_package_is_refused_and_nothing_released(where: str, inline_limit: int) -> None:
    r = _world(inline_limit=inline_limit)
    p = r.pipeline
    doc = _ingest(r, os.urandom(150_000))
    key = encrypted_key_for(doc)
    entry = p.blobs.objects[(ENCRYPTED, key)][0]  # type: ignore[attr-defined]
    data = bytearray(entry["data"])
    if where == "header":
        data[60] ^= 1
    elif where == "body":
        data[-100] ^= 1
    else:
        del data[-17:]
    entry["data"] = bytes(data)
    with pytest.raises((DecryptionError, Exception)) as info:
        _ask(r, {"document_id": doc})
    assert info.type.__name__ in {"DecryptionError", "MalformedPackageError", "LimitExceededError"}
    assert p.blobs.keys(ENCRYPTED, "retrievals/") == []  # type: ignore[attr-defined]
    assert _decrypt_rows(r)[-1]["outcome"] == "refused"


def test_malformed_payload_is_refused_and_audited() -> None:
    r = _world()
    with pytest.raises(InvalidEventError):
        _ask(r, {"nothing": 1}, claimed_by="x")
    assert _decrypt_rows(r)[-1]["outcome"] == "refused"
    assert _decrypt_rows(r)[-1]["details"]["claimed_by"] == "x"
    with pytest.raises(InvalidEventError):
        _ask(r, {"document_id": "d", "extra": 1})
    assert _decrypt_rows(r)[-1]["actor"] == ALICE  # verified, then refused
    with pytest.raises(InvalidEventError):
        retrieve(r, ["not", "an", "object"])
    assert "claimed_by" not in _decrypt_rows(r)[-1]["details"]  # nothing claimed, nothing kept


def test_claim_order() -> None:
    cc = {"custom": {"requested_by": "c"}}
    assert claimed_name({"requested_by": "p"}, client_context=cc) == "c"
    assert claimed_name({"requested_by": "p"}, cognito_identity_id="id-1") == "cognito:id-1"
    assert claimed_name({"requested_by": "p"}) == "p"
    assert claimed_name({}) is None  # nothing declared: no claimed_by at all
    assert claimed_name({"requested_by": "\n"}) is None
    assert claimed_name({"requested_by": "a\nb"}) == "ab"
    assert len(claimed_name({"requested_by": "y" * 10_000}) or "") == 256


def test_content_type_comes_back_from_the_authenticated_context() -> None:
    r = _world()
    p = r.pipeline
    info = p.blobs.put(UPLOADS, "uploads/a/t.txt", b"text", content_type="text/plain")
    assert run_workflow(p, event_for(info))["status"] == "SUCCEEDED"
    (doc,) = p.documents.rows  # type: ignore[attr-defined]
    out = _ask(r, {"document_id": doc})
    assert out["content_type"] == "text/plain"


# --- ranged retrieval (usecases/retrieve_range.py) ------------------------------------------


def test_a_range_decrypts_only_its_segments_and_is_audited_with_the_range() -> None:
    r = _world(segment_size=1024, inline_limit=4096)
    data = os.urandom(10 * 1024 + 5)
    doc = _ingest(r, data)
    blobs = r.pipeline.blobs
    for spec, want in (("bytes=1023-1024", data[1023:1025]), ("bytes=0-0", data[:1]),
                       ("bytes=-1", data[-1:]), ("bytes=10000-", data[10000:])):  # fmt: skip
        blobs.range_reads.clear()  # type: ignore[attr-defined]
        out = _ask(r, {"document_id": doc, "range": spec})
        assert base64.b64decode(out["content_base64"]) == want, spec
        assert out["size"] == len(want) and out["sha256"] == hashlib.sha256(want).hexdigest()
        # the header (one GET) and the covering segments (one GET), nothing else
        (_, h0, _), (_, _, blen) = blobs.range_reads  # type: ignore[attr-defined]
        assert h0 == 0 and blen <= 2 * (1024 + 16)
        attempt, success = _decrypt_rows(r)[-2:]
        assert attempt["details"]["requested"] == {"document_id": doc, "range": spec}
        assert success["details"]["range"] == out["range"]
    big = _ask(r, {"document_id": doc, "range": "bytes=0-"})  # longer than the inline limit
    assert big["delivery"] == "url" and big["size"] == len(data)
    assert big["range"] == f"bytes 0-{len(data) - 1}/{len(data)}"


def test_a_proof_for_one_range_does_not_serve_another() -> None:
    r = _world()
    doc = _ingest(r, os.urandom(3000))
    payload = {"document_id": doc, "range": "bytes=0-9"}
    proof = proof_for(ALICE, payload)
    with pytest.raises(IdentityProofError):
        retrieve(r, {**payload, "range": "bytes=0-2999", "identity_proof": proof})
    with pytest.raises(IdentityProofError):  # nor the whole document
        retrieve(r, {"document_id": doc, "identity_proof": proof})
    assert len(retrieve(r, {**payload, "identity_proof": proof})["content_base64"]) > 0


def test_bad_and_unsatisfiable_ranges_are_refused_and_audited() -> None:
    r = _world()
    doc = _ingest(r, os.urandom(3000))
    for spec in ("bytes=5-1", "0-10", "bytes=0-1,5-6", 7):
        with pytest.raises(InvalidEventError):
            _ask(r, {"document_id": doc, "range": spec})
        assert _decrypt_rows(r)[-1]["details"]["reason"] == "invalid_request"
    with pytest.raises(InvalidEventError, match="not satisfiable: the document has 3000 bytes"):
        _ask(r, {"document_id": doc, "range": "bytes=3000-"})
    row = _decrypt_rows(r)[-1]
    assert (row["outcome"], row["details"]["reason"]) == ("refused", "RangeNotSatisfiableError")


def test_a_tampered_segment_in_the_range_is_refused_outside_it_is_served() -> None:
    r = _world(segment_size=1024)
    data = os.urandom(4 * 1024)
    doc = _ingest(r, data)
    p = r.pipeline
    record = p.documents.get(doc)
    assert record is not None and record.encrypted_key
    package = bytearray(p.blobs.data(ENCRYPTED, record.encrypted_key))  # type: ignore[attr-defined]
    package[-(1024 + 16) - 100] ^= 1  # inside segment 2 of 4
    forged = p.blobs.put(ENCRYPTED, record.encrypted_key, bytes(package))  # type: ignore[attr-defined]
    p.documents.rows[doc] = dataclasses.replace(record, encrypted_version_id=forged.version_id)  # type: ignore[attr-defined]
    with pytest.raises(DecryptionError):
        _ask(r, {"document_id": doc, "range": "bytes=2048-2050"})
    out = _ask(r, {"document_id": doc, "range": "bytes=0-1023"})
    assert base64.b64decode(out["content_base64"]) == data[:1024]
