"""The ingest pipeline end to end on the local stack: the real ASL executed by the emulator,
our handlers run as Lambda functions, real PostgreSQL, S3 -> EventBridge -> Step Functions."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from pqfile.crypto import envelope
from tests.integration.pipeline_stack import PipelineStack, pipeline_stack  # noqa: F401

pytestmark = pytest.mark.integration


def _ingest(stack: PipelineStack, key: str, data: bytes) -> tuple[dict, dict]:
    up = stack.upload(key, data)
    execution = stack.wait_for_upload(key, up["version_id"])
    return up, execution


def test_upload_is_encrypted_and_retrievable(pipeline_stack: PipelineStack) -> None:
    stack = pipeline_stack
    data = os.urandom(1024)
    up, execution = _ingest(stack, "uploads/smoke.bin", data)
    assert execution["status"] == "SUCCEEDED", stack.history(execution["executionArn"])[-3:]
    (doc,) = stack.documents_for("uploads/smoke.bin")
    assert doc["status"] == "stored" and doc["plaintext_deleted_at"] is not None
    assert stack.versions(stack.uploads, "uploads/smoke.bin") == []
    package = stack.client("s3").get_object(Bucket=stack.encrypted, Key=doc["encrypted_key"])
    header = envelope.read_header(package["Body"].read())
    assert header.key_id == doc["key_id"]
    body, error = stack.invoke("retrieve", {"document_id": doc["document_id"],
                                            "requested_by": "tester"})
    assert error is None, body
    assert base64.b64decode(body["content_base64"]) == data
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    trail = stack.audit_rows(doc["document_id"])
    assert [(r["operation"], r["outcome"]) for r in trail] == [
        ("document.encrypt", "success"), ("document.decrypt", "success")]
    assert trail[1]["actor"] == "tester"
