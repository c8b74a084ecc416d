"""The retrieve Lambda on the local stack: refusals are audited, successes byte-identical."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.request

import pytest

from tests.fixtures.postgres import OPERATOR
from tests.integration.pipeline_stack import PipelineStack, deploy_pipeline

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(aws_emulator, emulator_role_arn, migrated_db_url) -> PipelineStack:
    return deploy_pipeline(aws_emulator, emulator_role_arn, migrated_db_url)


def _ingest(stack: PipelineStack, key: str, data: bytes) -> dict:
    up = stack.upload(key, data)
    execution = stack.wait_for_upload(key, up["version_id"])
    assert execution["status"] == "SUCCEEDED", stack.explain(execution["executionArn"])
    (doc,) = stack.documents_for(key)
    return doc


def _last_decrypt(stack: PipelineStack) -> dict:
    return [r for r in stack.audit_rows() if r["operation"] == "document.decrypt"][-1]


def test_inline_by_id_and_by_object(stack: PipelineStack) -> None:
    data = os.urandom(70_000)
    doc = _ingest(stack, "uploads/a/r-inline.bin", data)
    who = {"requested_by": "alice@example.com"}
    for payload in (
        {"document_id": doc["document_id"], **who},
        {"bucket": stack.encrypted, "key": doc["encrypted_key"], **who},
    ):
        body, error = stack.invoke("retrieve", payload)
        assert error is None, body
        assert base64.b64decode(body["content_base64"]) == data
        assert body["size"] == len(data) and body["sha256"] == hashlib.sha256(data).hexdigest()
        row = _last_decrypt(stack)
        # the actor is the retrieve role (no verified caller yet); the declared name a detail
        assert (row["outcome"], row["actor"], row["document_id"]) == (
            "success",
            "pqfile_retrieve",
            doc["document_id"],
        )
        assert row["details"]["claimed_by"] == "alice@example.com"
        assert row["key_id"] == doc["key_id"] and row["request_id"]


def test_large_document_by_presigned_url(stack: PipelineStack) -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    doc = _ingest(stack, "uploads/a/r-large.bin", data)
    body, error = stack.invoke("retrieve", {"document_id": doc["document_id"]})
    assert error is None, body
    assert body["delivery"] == "url" and "content_base64" not in body
    assert 0 < body["expires_in"] <= 900
    assert body["key"].startswith(f"retrievals/{doc['document_id']}/")
    head = stack.client("s3").head_object(Bucket=stack.encrypted, Key=body["key"])
    assert head.get("ServerSideEncryption") == "aws:kms"
    with urllib.request.urlopen(body["url"], timeout=60) as resp:
        assert resp.read() == data
    assert len(json.dumps(body)) < 4096  # the response stays small
    row = _last_decrypt(stack)
    assert row["actor"] == "pqfile_retrieve" and "claimed_by" not in row["details"]


def _refused(stack: PipelineStack, payload: dict, error_type: str) -> dict:
    body, error = stack.invoke("retrieve", payload)
    assert error is not None, body
    assert body["errorType"] == error_type, body
    assert "content_base64" not in body
    row = _last_decrypt(stack)
    assert row["outcome"] == "refused" and row["details"]["reason"] == error_type
    return row


def test_unknown_document_is_refused(stack: PipelineStack) -> None:
    row = _refused(
        stack, {"document_id": "0" * 32, "requested_by": "mallory"}, "DocumentNotFoundError"
    )
    assert (row["actor"], row["details"]["claimed_by"]) == ("pqfile_retrieve", "mallory")
    _refused(
        stack, {"bucket": stack.encrypted, "key": "encrypted/nope.pqf"}, "DocumentNotFoundError"
    )
    _refused(stack, {"hello": "world"}, "InvalidEventError")


def test_revoked_key_is_refused(stack: PipelineStack) -> None:
    doc = _ingest(stack, "uploads/a/r-revoked.txt", b"revoke me")
    _, error = stack.invoke("retrieve", {"document_id": doc["document_id"]})
    assert error is None  # decryptable (and the secret now sits in the warm cache) ...
    stack.keystore(OPERATOR).revoke(doc["key_id"], "compromised in a test", actor="tests")
    row = _refused(stack, {"document_id": doc["document_id"]}, "KeyNotUsableError")
    assert row["key_id"] == doc["key_id"]  # ... and refused once revoked


def test_tampered_package_is_refused(stack: PipelineStack) -> None:
    data = b"tamper with me" * 1000
    doc = _ingest(stack, "uploads/a/r-tampered.txt", data)
    s3 = stack.client("s3")
    package = bytearray(
        s3.get_object(Bucket=stack.encrypted, Key=doc["encrypted_key"])["Body"].read()
    )
    package[-50] ^= 0x01
    # Overwriting creates a new version; the index pins the original, so nothing changes ...
    forged = s3.put_object(Bucket=stack.encrypted, Key=doc["encrypted_key"], Body=bytes(package))
    body, error = stack.invoke("retrieve", {"document_id": doc["document_id"]})
    assert error is None and base64.b64decode(body["content_base64"]) == data
    # ... unless the index is pointed at the forged version too: then decryption refuses.
    stack.sql(
        "UPDATE documents SET encrypted_version_id = :v WHERE document_id = :d",
        v=forged["VersionId"],
        d=doc["document_id"],
    )
    _refused(stack, {"document_id": doc["document_id"]}, "DecryptionError")
    assert stack.versions(stack.encrypted, "retrievals/") == [] or all(
        not v["Key"].startswith(f"retrievals/{doc['document_id']}")
        for v in stack.versions(stack.encrypted, "retrievals/")
    )


def test_inline_limit_boundary_fits_the_response_cap(stack: PipelineStack) -> None:
    from pqfile.config import DEFAULT_INLINE_LIMIT, LAMBDA_RESPONSE_CAP

    data = os.urandom(DEFAULT_INLINE_LIMIT)
    doc = _ingest(stack, "uploads/a/r-boundary.bin", data)
    resp = stack.client("lambda").invoke(
        FunctionName=stack.functions["retrieve"],
        Payload=json.dumps({"document_id": doc["document_id"]}).encode(),
    )
    raw = resp["Payload"].read()
    assert "FunctionError" not in resp
    assert len(raw) < LAMBDA_RESPONSE_CAP  # what Lambda would accept
    body = json.loads(raw)
    assert body["delivery"] == "inline" and base64.b64decode(body["content_base64"]) == data
