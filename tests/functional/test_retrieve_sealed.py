"""Sealed delivery with fakes (docs/OPERATIONS.md, "Retrieval"): the delivery table, the
spliced package opens with the reader's key only, only the header is read, nothing is
written, the downgrade guard, and the audit rows."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
from typing import Any

import pytest

from pqfile.crypto import envelope, kem
from pqfile.errors import (
    DecryptionError,
    DeliveryRefusedError,
    DowngradeError,
    InvalidEventError,
    ReencryptionRequiredError,
    WrongKeyError,
)
from pqfile.format.header import MAX_HEADER_SIZE, parse_header
from pqfile.ports import RecipientKey
from pqfile.usecases.retrieve import Retrieval, retrieve
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


class FakeRecipients:
    """recipient_for of migration 0020: the principal's active key, only with a rule."""

    def __init__(self, r: Retrieval) -> None:
        self.access = r.access
        self.keys: dict[str, RecipientKey] = {}
        self.asked: list[tuple[str, str]] = []

    def register(
        self, principal: str, public: kem.PublicKey, *, allow_weaker: bool = False
    ) -> RecipientKey:
        key = RecipientKey(
            recipient_id=len(self.keys) + 1,
            suite=public.suite.value,
            public_key=public.raw,
            fingerprint=hashlib.sha256(public.raw).hexdigest(),
            allow_weaker=allow_weaker,
        )
        self.keys[principal] = key
        return key

    def recipient_for(self, principal: str, document_id: str) -> RecipientKey | None:
        self.asked.append((principal, document_id))
        key = self.keys.get(principal)
        if key is None or not self.access.allows(principal, document_id, "retrieve"):
            return None
        return key


def _world(**settings: Any) -> tuple[Retrieval, FakeRecipients]:
    r = make_retrieval(**settings)
    r.access.grant(ALICE, tenant="a")  # type: ignore[attr-defined]
    recipients = FakeRecipients(r)
    return dataclasses.replace(r, recipients=recipients), recipients


def _ingest(r: Retrieval, data: bytes, key: str = "uploads/a/s.bin") -> str:
    info = r.pipeline.blobs.put(UPLOADS, key, data, content_type="text/plain")  # type: ignore[attr-defined]
    state = run_workflow(r.pipeline, event_for(info))
    assert state["status"] == "SUCCEEDED", state.get("error")
    return str(state["document"]["document_id"])


def _ask(r: Retrieval, payload: dict[str, Any], who: str = ALICE) -> Any:
    return retrieve(r, {**payload, "identity_proof": proof_for(who, payload)}, request_id="req-s")


def _rows(r: Retrieval) -> list[dict[str, Any]]:
    return [x for x in r.pipeline.audit.rows if x["operation"] == "document.decrypt"]  # type: ignore[attr-defined]


def _splice(r: Retrieval, answer: dict[str, Any], doc: str) -> bytes:
    """What the client does: the new header, then the stored package from body.offset."""
    record = r.pipeline.documents.get(doc)
    assert record is not None and record.encrypted_key is not None
    stored = r.pipeline.blobs.data(ENCRYPTED, record.encrypted_key, record.encrypted_version_id)  # type: ignore[attr-defined]
    body = answer["body"]
    assert body["offset"] + body["length"] == len(stored)
    return base64.b64decode(answer["header_base64"]) + stored[body["offset"] :]


@pytest.mark.parametrize("size", [0, 1024, 200_000])
def test_sealed_is_the_default_and_opens_with_the_readers_key_only(size: int) -> None:
    r, recipients = _world()
    reader = kem.generate(kem.Suite.XWING)
    registered = recipients.register(ALICE, reader.public_key())
    data = os.urandom(size)
    doc = _ingest(r, data)
    blobs = r.pipeline.blobs
    before = {k: len(v) for k, v in blobs.objects.items()}  # type: ignore[attr-defined]
    blobs.range_reads.clear()  # type: ignore[attr-defined]
    answer = _ask(r, {"document_id": doc})
    assert answer["delivery"] == "sealed" and answer["size"] == size
    assert answer["content_type"] == "text/plain"
    assert answer["recipient"] == {"fingerprint": registered.fingerprint, "suite": "xwing"}
    assert answer["body"]["expires_in"] == 300 and "v=" in answer["body"]["url"]
    assert "content_base64" not in answer and "sha256" not in answer
    package = _splice(r, answer, doc)
    assert bytes(envelope.decrypt_bytes(package, reader, expected_document_id=doc)) == data
    # the service's key no longer opens it: the stanza is the reader's
    record = r.pipeline.documents.get(doc)
    assert record is not None
    service = r.pipeline.keys.load_decryption_key(record.key_id or "")
    with pytest.raises((DecryptionError, WrongKeyError)):
        envelope.decrypt_bytes(package, service, expected_document_id=doc)
    # one ranged read of the header and nothing written (no retrievals/ copy)
    stored = blobs.data(ENCRYPTED, record.encrypted_key, record.encrypted_version_id)  # type: ignore[attr-defined]
    header_read = (record.encrypted_key, 0, min(MAX_HEADER_SIZE, len(stored)))
    assert blobs.range_reads == [header_read]  # type: ignore[attr-defined]
    assert {k: len(v) for k, v in blobs.objects.items()} == before  # type: ignore[attr-defined]
    attempt, success = _rows(r)
    assert (attempt["outcome"], success["outcome"], success["actor"]) == (
        "attempt",
        "success",
        ALICE,
    )
    assert success["details"]["delivery"] == "sealed" and success["details"]["size"] == size
    details = success["details"]
    assert (details["recipient_id"], details["recipient_fingerprint"],
            details["recipient_suite"]) == (1, registered.fingerprint, "xwing")  # fmt: skip
    assert isinstance(answer["receipt"]["audit_seq"], int)
    assert reader.seed.hex() not in repr(r.pipeline.audit.rows)  # type: ignore[attr-defined]


def test_the_new_header_differs_only_in_stanza_and_mac() -> None:
    r, recipients = _world()
    reader = kem.generate(kem.Suite.XWING)
    recipients.register(ALICE, reader.public_key())
    doc = _ingest(r, os.urandom(5000))
    answer = _ask(r, {"document_id": doc, "delivery": "sealed"})
    new = parse_header(base64.b64decode(answer["header_base64"]))
    record = r.pipeline.documents.get(doc)
    assert record is not None and record.encrypted_key is not None
    old = parse_header(r.pipeline.blobs.data(ENCRYPTED, record.encrypted_key)[:MAX_HEADER_SIZE])  # type: ignore[attr-defined]
    assert (new.salt, new.nonce_prefix, new.document_id, new.context) == (
        old.salt, old.nonce_prefix, old.document_id, old.context)  # fmt: skip
    assert new.size == old.size == answer["body"]["offset"]


def test_without_a_key_the_fallback_when_allowed_and_a_clear_refusal_when_not() -> None:
    r, _ = _world()
    data = os.urandom(3000)
    doc = _ingest(r, data)
    answer = _ask(r, {"document_id": doc})
    assert answer["delivery"] == "inline" and base64.b64decode(answer["content_base64"]) == data
    # asked sealed without a key: refused even where plaintext is allowed
    with pytest.raises(DeliveryRefusedError, match="no recipient key is registered for you"):
        _ask(r, {"document_id": doc, "delivery": "sealed"})
    assert _rows(r)[-1]["details"]["reason"] == "no_recipient_key"
    off, _ = _world(plaintext_delivery=False)
    doc = _ingest(off, data)
    with pytest.raises(DeliveryRefusedError, match="pqfile access recipient add") as refused:
        _ask(off, {"document_id": doc})
    assert refused.value.reason == "no_recipient_key"
    for asked in ({"delivery": "inline"}, {"delivery": "url"}, {"range": "bytes=0-9"}):
        with pytest.raises(DeliveryRefusedError, match="plaintext delivery is disabled"):
            _ask(off, {"document_id": doc, **asked})
    rows = _rows(off)
    # refused before any attempt row: nothing was decrypted
    assert [(x["outcome"], x["details"]["reason"]) for x in rows] == [
        ("refused", "no_recipient_key")
    ] + [("refused", "plaintext_delivery_disabled")] * 3
    assert rows[1]["details"]["requested"] == {"document_id": doc, "delivery": "inline"}
    assert all(x["actor"] == ALICE and x["document_id"] == doc for x in rows)


def test_a_reader_with_a_key_still_gets_plaintext_when_asking_for_it_and_allowed() -> None:
    r, recipients = _world()
    recipients.register(ALICE, kem.generate(kem.Suite.XWING).public_key())
    data = os.urandom(2000)
    doc = _ingest(r, data)
    answer = _ask(r, {"document_id": doc, "delivery": "inline"})
    assert answer["delivery"] == "inline" and base64.b64decode(answer["content_base64"]) == data
    ranged = _ask(r, {"document_id": doc, "range": "bytes=0-9"})
    assert base64.b64decode(ranged["content_base64"]) == data[:10]
    assert recipients.asked == []  # plaintext asked: the directory is not consulted


def test_bad_delivery_values_and_sealed_ranges_are_refused_before_the_proof() -> None:
    r, _ = _world()
    doc = _ingest(r, b"x" * 100)
    for payload, message in (
        ({"document_id": doc, "delivery": "zip"}, "delivery must be"),
        ({"document_id": doc, "delivery": 1}, "delivery must be"),
        ({"document_id": doc, "delivery": "sealed", "range": "bytes=0-1"}, "whole package"),
    ):
        with pytest.raises(InvalidEventError, match=message):
            retrieve(r, {**payload, "identity_proof": None})
    assert r.identity.calls == 0  # type: ignore[attr-defined]


def test_a_bobs_key_does_not_help_without_a_rule_and_revocation_is_immediate() -> None:
    r, recipients = _world(plaintext_delivery=False)
    recipients.register(BOB, kem.generate(kem.Suite.XWING).public_key())
    recipients.register(ALICE, kem.generate(kem.Suite.XWING).public_key())
    doc = _ingest(r, b"secret" * 10)
    with pytest.raises(Exception, match="no such document"):
        _ask(r, {"document_id": doc}, who=BOB)
    assert _ask(r, {"document_id": doc})["delivery"] == "sealed"
    del recipients.keys[ALICE]  # the key revoked
    with pytest.raises(DeliveryRefusedError):
        _ask(r, {"document_id": doc})


def _cnsa_world(
    reader_suite: kem.Suite, *, allow_weaker: bool, doc_suite: kem.Suite
) -> tuple[Retrieval, kem.SecretKey, str]:
    r, recipients = _world(default_suite=doc_suite.value)
    for _ in range(2):
        r.pipeline.keys._add(doc_suite)  # type: ignore[attr-defined]
    reader = kem.generate(reader_suite)
    recipients.register(ALICE, reader.public_key(), allow_weaker=allow_weaker)
    return r, reader, _ingest(r, os.urandom(4096))


def test_a_cnsa_document_to_an_xwing_key_is_a_downgrade_unless_allowed() -> None:
    r, _, doc = _cnsa_world(kem.Suite.XWING, allow_weaker=False, doc_suite=kem.Suite.MLKEM1024)
    with pytest.raises(DowngradeError, match="stored under mlkem1024; your recipient key is xwing"):
        _ask(r, {"document_id": doc})
    attempt, refused = _rows(r)
    assert (attempt["outcome"], refused["outcome"], refused["details"]["reason"]) == (
        "attempt", "refused", "downgrade")  # fmt: skip
    r, reader, doc = _cnsa_world(kem.Suite.XWING, allow_weaker=True, doc_suite=kem.Suite.MLKEM1024)
    answer = _ask(r, {"document_id": doc})
    package = _splice(r, answer, doc)
    assert len(envelope.decrypt_bytes(package, reader, expected_document_id=doc)) == 4096
    assert answer["recipient"]["suite"] == "xwing"


def test_an_xwing_document_to_an_mlkem1024_key_needs_a_reencryption() -> None:
    r, _, doc = _cnsa_world(kem.Suite.MLKEM1024, allow_weaker=False, doc_suite=kem.Suite.XWING)
    with pytest.raises(ReencryptionRequiredError, match="register an xwing key"):
        _ask(r, {"document_id": doc})
    assert _rows(r)[-1]["details"]["reason"] == "suite_mismatch"


def test_an_xwing_document_to_an_mlkem768_key_is_a_downgrade_and_crosses_suites_when_allowed() -> (
    None
):
    r, reader, doc = _cnsa_world(kem.Suite.MLKEM768, allow_weaker=True, doc_suite=kem.Suite.XWING)
    answer = _ask(r, {"document_id": doc})
    # a cross-suite rewrap: the header's length changes, the body offset is the old one
    assert len(base64.b64decode(answer["header_base64"])) != answer["body"]["offset"]
    assert (
        len(envelope.decrypt_bytes(_splice(r, answer, doc), reader, expected_document_id=doc))
        == 4096
    )


def test_the_sealed_url_lifetime_is_its_own_setting() -> None:
    r, recipients = _world(sealed_presign_seconds=2, presign_seconds=900)
    recipients.register(ALICE, kem.generate(kem.Suite.XWING).public_key())
    doc = _ingest(r, b"y" * 10)
    answer = _ask(r, {"document_id": doc})
    assert answer["body"]["expires_in"] == 2 and answer["body"]["url"].endswith("expires=2")


@pytest.mark.parametrize("where", ["mac", "stanza", "document_id"])
def test_a_tampered_stored_header_is_refused_opaquely_and_audited(where: str) -> None:
    r, recipients = _world()
    recipients.register(ALICE, kem.generate(kem.Suite.XWING).public_key())
    doc = _ingest(r, os.urandom(3000))
    record = r.pipeline.documents.get(doc)
    assert record is not None and record.encrypted_key is not None
    entry = r.pipeline.blobs.objects[(ENCRYPTED, record.encrypted_key)][-1]  # type: ignore[attr-defined]
    data = bytearray(entry["data"])
    header = parse_header(bytes(data[:MAX_HEADER_SIZE]))
    at = {"mac": header.size - 1, "stanza": header.size - 60, "document_id": 88}[where]
    data[at] ^= 0x01
    entry["data"] = bytes(data)
    with pytest.raises((DecryptionError, WrongKeyError)) as refused:
        _ask(r, {"document_id": doc})
    assert "sealed" not in str(refused.value)
    attempt, row = _rows(r)
    assert (attempt["outcome"], row["outcome"]) == ("attempt", "refused")
    assert row["details"]["reason"] in {"DecryptionError", "WrongKeyError"}


def test_a_row_without_a_plaintext_size_gets_the_size_the_body_encodes() -> None:
    r, recipients = _world()
    recipients.register(ALICE, kem.generate(kem.Suite.XWING).public_key())
    doc = _ingest(r, os.urandom(200_000))
    documents = r.pipeline.documents
    documents.rows[doc] = dataclasses.replace(documents.rows[doc], plaintext_size=None)  # type: ignore[attr-defined]
    assert _ask(r, {"document_id": doc})["size"] == 200_000
