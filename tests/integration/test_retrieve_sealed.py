"""Sealed retrieval on the local stack (issue 18; docs/OPERATIONS.md, "Retrieval"): the
retrieve Lambda on the emulator, real PostgreSQL (recipient keys of migration 0020, registered
by calling recipient_register as the owner), a signature-checking local STS.

The reader splices the answer's header with the body it fetches by a plain HTTP GET with a
Range header, and decrypts with its own secret key: byte-identical, and the service's key no
longer opens the package. Nothing is written under retrievals/; the URL expires; the
fallback and the refusals; revocation is immediate; the downgrade guard; the audit rows."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pqfile.crypto import envelope, kem
from tests.fixtures.postgres import OPERATOR, role_url
from tests.integration.pipeline_stack import PipelineStack, deploy_pipeline

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
SLOW = os.environ.get("PQFILE_SLOW_TESTS") == "1" or bool(os.environ.get("CI"))
#: Uploads under uploads/a/cnsa/ are stored under the CNSA 2.0 suite.
CNSA_PREFIX = "a/cnsa/"


@pytest.fixture(scope="module")
def stack(aws_emulator, emulator_role_arn, migrated_db_url, local_sts) -> PipelineStack:
    return deploy_pipeline(
        aws_emulator, emulator_role_arn, migrated_db_url, sts=local_sts,
        suite_by_prefix={CNSA_PREFIX: "mlkem1024"}, keys=2,
    )  # fmt: skip


@pytest.fixture
def plaintext_off(stack: PipelineStack) -> Iterator[None]:
    """The retrieve function with retrieve_plaintext_delivery = false (as prod)."""
    stack.set_env("retrieve", PQFILE_PLAINTEXT_DELIVERY="false")
    try:
        yield
    finally:
        stack.set_env("retrieve", PQFILE_PLAINTEXT_DELIVERY="true")


def _arn(stack: PipelineStack, user: str) -> str:
    assert stack.sts is not None
    return stack.sts.users[user].arn


def _register(
    stack: PipelineStack,
    user: str,
    suite: kem.Suite = kem.Suite.XWING,
    *,
    allow_weaker: bool = False,
) -> kem.SecretKey:
    """A fresh key pair; its public half registered for ``user`` (retiring any older one)."""
    secret = kem.generate(suite)
    stack.sql(
        "SELECT recipient_register(:p, :s, :k, :w, 'tests', NULL)",
        p=_arn(stack, user), s=suite.value, k=secret.public_key().raw, w=allow_weaker,
    )  # fmt: skip
    return secret


def _revoke_key(stack: PipelineStack, user: str) -> None:
    stack.sql("SELECT recipient_revoke(:p, 'tests', NULL)", p=_arn(stack, user))


def _ingest(stack: PipelineStack, key: str, data: bytes | Path) -> dict[str, Any]:
    up = stack.upload(key, data)
    execution = stack.wait_for_upload(key, up["version_id"], timeout=600)
    assert execution["status"] == "SUCCEEDED", stack.explain(execution["executionArn"])
    (doc,) = stack.documents_for(key)
    return doc


def _retrievals(stack: PipelineStack) -> int:
    return len(stack.versions(stack.encrypted, "retrievals/"))


def _fetch_body(answer: dict[str, Any]) -> bytes:
    """What the client does: a plain HTTP GET of the presigned URL from the body's offset."""
    body = answer["body"]
    request = urllib.request.Request(body["url"], headers={"Range": f"bytes={body['offset']}-"})
    with urllib.request.urlopen(request, timeout=300) as resp:
        data = resp.read()
    assert len(data) == body["length"]
    return bytes(data)


def _spliced(answer: dict[str, Any]) -> bytes:
    return base64.b64decode(answer["header_base64"]) + _fetch_body(answer)


def _decrypts(stack: PipelineStack, document_id: str) -> list[dict[str, Any]]:
    return [r for r in stack.audit_rows(document_id) if r["operation"] == "document.decrypt"]


def _round_trip(stack: PipelineStack, size: int, tmp_path: Path) -> None:
    reader = _register(stack, "alice")
    name = f"uploads/a/sealed-{size}.bin"
    if size >= 20 * MIB:
        source = tmp_path / "doc.bin"
        with source.open("wb") as f:
            for _ in range(size // MIB):
                f.write(os.urandom(MIB))
        data_sha = hashlib.sha256(source.read_bytes()).hexdigest()
        doc = _ingest(stack, name, source)
    else:
        data = os.urandom(size)
        data_sha = hashlib.sha256(data).hexdigest()
        doc = _ingest(stack, name, data)
    before = _retrievals(stack)
    answer, error = stack.retrieve({"document_id": doc["document_id"]})
    assert error is None, answer
    assert (answer["delivery"], answer["size"]) == ("sealed", size)
    assert answer["recipient"]["suite"] == "xwing" and "sha256" not in answer
    assert len(str(answer)) < 64 * 1024  # far under the 6 MB answer cap, whatever the size
    package = _spliced(answer)
    plain = envelope.decrypt_bytes(package, reader, expected_document_id=doc["document_id"])
    assert hashlib.sha256(plain).hexdigest() == data_sha
    del plain
    # the service's key cannot open the spliced package: the new stanza is the reader's
    service = stack.keystore().load_decryption_key(doc["key_id"])
    with pytest.raises(Exception) as refused:
        envelope.decrypt_bytes(package, service, expected_document_id=doc["document_id"])
    assert type(refused.value).__name__ in {"WrongKeyError", "DecryptionError"}
    assert _retrievals(stack) == before  # nothing written under retrievals/
    attempt, success = _decrypts(stack, doc["document_id"])[-2:]
    assert (attempt["outcome"], success["outcome"]) == ("attempt", "success")
    assert success["actor"] == _arn(stack, "alice")
    details = success["details"]
    assert (details["delivery"], details["size"], details["recipient_suite"]) == (
        "sealed", size, "xwing")  # fmt: skip
    assert details["recipient_fingerprint"] == answer["recipient"]["fingerprint"] == (
        hashlib.sha256(reader.public_key().raw).hexdigest())  # fmt: skip
    assert isinstance(details["recipient_id"], int)
    assert answer["receipt"]["audit_seq"] == success["seq"]


@pytest.mark.parametrize("size", [0, 1024, 20 * MIB], ids=["0B", "1KiB", "20MiB"])
def test_sealed_round_trip_is_byte_identical(
    stack: PipelineStack, size: int, tmp_path: Path
) -> None:
    _round_trip(stack, size, tmp_path)


@pytest.mark.skipif(not SLOW, reason="200 MiB through the stack; CI=true or PQFILE_SLOW_TESTS=1")
def test_sealed_round_trip_of_200_mib(stack: PipelineStack, tmp_path: Path) -> None:
    _round_trip(stack, 200 * MIB, tmp_path)


def test_the_spliced_package_opens_with_pqfile_decrypt_and_not_with_the_service_key(
    stack: PipelineStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pqfile.cli import main
    from pqfile.crypto import keyfiles

    public, secret = tmp_path / "reader.pub", tmp_path / "reader.sec"
    assert main(["keygen", "--public", str(public), "--secret", str(secret)]) == 0
    stack.sql(
        "SELECT recipient_register(:p, 'xwing', :k, false, 'tests', NULL)",
        p=_arn(stack, "alice"), k=keyfiles.load_public_key(public).raw,
    )  # fmt: skip
    data = os.urandom(1024)
    doc = _ingest(stack, "uploads/a/sealed-cli.bin", data)
    answer, error = stack.retrieve({"document_id": doc["document_id"], "delivery": "sealed"})
    assert error is None, answer
    package = tmp_path / "doc.pqf"
    package.write_bytes(_spliced(answer))
    out = tmp_path / "doc.out"
    assert (
        main(["decrypt", "--identity", str(secret), "--in", str(package), "--out", str(out)]) == 0
    )
    assert out.read_bytes() == data
    service = tmp_path / "service.sec"
    service.write_bytes(
        keyfiles.secret_key_to_pem(stack.keystore().load_decryption_key(doc["key_id"]))
    )
    capsys.readouterr()
    refused = tmp_path / "refused.out"
    assert main(["decrypt", "--identity", str(service), "--in", str(package),
                 "--out", str(refused)]) != 0  # fmt: skip
    err = capsys.readouterr().err
    assert "Traceback" not in err and not refused.exists()


def test_the_presigned_url_expires(stack: PipelineStack) -> None:
    reader = _register(stack, "alice")
    doc = _ingest(stack, "uploads/a/sealed-expiry.bin", b"expiring" * 100)
    stack.set_env("retrieve", PQFILE_SEALED_PRESIGN_SECONDS="2")
    try:
        answer, error = stack.retrieve({"document_id": doc["document_id"]})
    finally:
        stack.set_env("retrieve", PQFILE_SEALED_PRESIGN_SECONDS="300")
    assert error is None and answer["body"]["expires_in"] == 2, answer
    package = _spliced(answer)  # at once: served
    assert envelope.decrypt_bytes(package, reader) == b"expiring" * 100
    time.sleep(3.5)
    with pytest.raises(urllib.error.HTTPError) as expired:
        _fetch_body(answer)
    assert expired.value.code == 403
    assert b"Request has expired" in expired.value.read()


def test_a_reader_without_a_key_gets_the_fallback_when_allowed_and_a_refusal_when_not(
    stack: PipelineStack,
) -> None:
    data = os.urandom(3000)
    doc = _ingest(stack, "uploads/a/sealed-fallback.bin", data)
    stack.grant(_arn(stack, "bob"), document_id=doc["document_id"])  # a rule, no key
    answer, error = stack.retrieve({"document_id": doc["document_id"]}, "bob")
    assert error is None and answer["delivery"] == "inline", answer
    assert base64.b64decode(answer["content_base64"]) == data
    asked, error = stack.retrieve({"document_id": doc["document_id"], "delivery": "sealed"}, "bob")
    assert error and asked["errorType"] == "DeliveryRefusedError", asked
    assert asked["errorMessage"].startswith("no recipient key is registered for you; register")
    stack.set_env("retrieve", PQFILE_PLAINTEXT_DELIVERY="false")
    try:
        refused, error = stack.retrieve({"document_id": doc["document_id"]}, "bob")
        inline, _ = stack.retrieve({"document_id": doc["document_id"], "delivery": "url"}, "bob")
    finally:
        stack.set_env("retrieve", PQFILE_PLAINTEXT_DELIVERY="true")
    assert error and refused["errorType"] == "DeliveryRefusedError", refused
    assert "pqfile access recipient add" in refused["errorMessage"]
    assert "content_base64" not in refused and "url" not in refused
    assert inline["errorType"] == "DeliveryRefusedError"
    assert inline["errorMessage"].startswith("plaintext delivery is disabled in this deployment")
    rows = _decrypts(stack, doc["document_id"])[-3:]
    assert [(r["outcome"], r["details"].get("reason")) for r in rows] == [
        ("refused", "no_recipient_key"), ("refused", "no_recipient_key"),
        ("refused", "plaintext_delivery_disabled")]  # fmt: skip
    assert {r["actor"] for r in rows} == {_arn(stack, "bob")}


def test_revoking_the_key_or_the_rule_stops_sealed_delivery_at_once(
    stack: PipelineStack, plaintext_off: None
) -> None:
    from pqfile.adapters.postgres import Database, PostgresAccessRules
    from pqfile.ports import AccessOperation

    doc = _ingest(stack, "uploads/a/sealed-revoke.bin", os.urandom(5000))
    ask = {"document_id": doc["document_id"]}
    _register(stack, "alice")
    answer, error = stack.retrieve(ask)
    assert error is None and answer["delivery"] == "sealed", answer
    _revoke_key(stack, "alice")
    refused, error = stack.retrieve(ask)
    assert error and refused["errorType"] == "DeliveryRefusedError", refused
    assert _decrypts(stack, doc["document_id"])[-1]["details"]["reason"] == "no_recipient_key"
    # bob: a key and a rule for this one document, then the rule revoked
    bob_reader = _register(stack, "bob")
    stack.grant(_arn(stack, "bob"), document_id=doc["document_id"])
    answer, error = stack.retrieve(ask, "bob")
    assert error is None and answer["delivery"] == "sealed", answer
    assert len(envelope.decrypt_bytes(_spliced(answer), bob_reader)) == 5000
    db = Database.from_url(role_url(stack.db_url, OPERATOR))
    try:
        PostgresAccessRules(db).revoke(
            _arn(stack, "bob"), tenant=None, document_id=doc["document_id"],
            operation=AccessOperation.RETRIEVE, actor="tests")  # fmt: skip
    finally:
        db.close()
    gone, error = stack.retrieve(ask, "bob")
    assert error and (gone["errorType"], gone["errorMessage"]) == (
        "DocumentNotFoundError", "no such document")  # fmt: skip
    _revoke_key(stack, "bob")


def test_the_downgrade_guard_and_the_suite_mismatch(stack: PipelineStack) -> None:
    cnsa = _ingest(stack, f"uploads/{CNSA_PREFIX}sealed.bin", os.urandom(4096))
    assert cnsa["suite"] == "mlkem1024"
    plain = _ingest(stack, "uploads/a/sealed-xwing.bin", os.urandom(4096))
    # a CNSA 2.0 document to an xwing key: a downgrade, refused
    _register(stack, "alice", kem.Suite.XWING)
    refused, error = stack.retrieve({"document_id": cnsa["document_id"]})
    assert error and refused["errorType"] == "DowngradeError", refused
    assert "stored under mlkem1024; your recipient key is xwing" in refused["errorMessage"]
    attempt, row = _decrypts(stack, cnsa["document_id"])[-2:]
    assert (attempt["outcome"], row["outcome"], row["details"]["reason"]) == (
        "attempt", "refused", "downgrade")  # fmt: skip
    # ... unless the key was registered with allow_weaker
    weaker = _register(stack, "alice", kem.Suite.XWING, allow_weaker=True)
    answer, error = stack.retrieve({"document_id": cnsa["document_id"]})
    assert error is None and answer["recipient"]["suite"] == "xwing", answer
    assert len(envelope.decrypt_bytes(_spliced(answer), weaker)) == 4096
    # an xwing (HKDF-SHA256) document to an mlkem1024 key: a rewrap cannot get there
    strong = _register(stack, "alice", kem.Suite.MLKEM1024)
    refused, error = stack.retrieve({"document_id": plain["document_id"]})
    assert error and refused["errorType"] == "ReencryptionRequiredError", refused
    assert _decrypts(stack, plain["document_id"])[-1]["details"]["reason"] == "suite_mismatch"
    # the CNSA document to the mlkem1024 key: same suite, sealed
    answer, error = stack.retrieve({"document_id": cnsa["document_id"]})
    assert error is None and answer["recipient"]["suite"] == "mlkem1024", answer
    assert len(envelope.decrypt_bytes(_spliced(answer), strong)) == 4096
    _revoke_key(stack, "alice")
