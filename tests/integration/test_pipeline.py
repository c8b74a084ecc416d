"""The ingest pipeline end to end on the local stack: the real ASL executed by the emulator,
our handlers run as Lambda functions, real PostgreSQL, S3 -> EventBridge -> Step Functions."""

from __future__ import annotations

import base64
import hashlib
import os
import time

import pytest

from pqfile.crypto import envelope
from pqfile.crypto.kem import Suite
from tests.fixtures.postgres import MAINTAIN, OPERATOR
from tests.integration.pipeline_stack import PipelineStack, deploy_pipeline

pytestmark = pytest.mark.integration


#: Tenant a's folder cnsa/ is encrypted with the CNSA 2.0 suite (PQFILE_SUITE_BY_PREFIX).
CNSA_PREFIX = "a/cnsa/"


@pytest.fixture(scope="module")
def stack(aws_emulator, emulator_role_arn, migrated_db_url, local_sts) -> PipelineStack:
    return deploy_pipeline(
        aws_emulator,
        emulator_role_arn,
        migrated_db_url,
        sts=local_sts,
        suite_by_prefix={CNSA_PREFIX: "mlkem1024"},
    )


def _ingest(stack: PipelineStack, key: str, data: bytes) -> tuple[dict, dict]:
    up = stack.upload(key, data)
    execution = stack.wait_for_upload(key, up["version_id"])
    return up, execution


def test_upload_is_encrypted_and_retrievable(stack: PipelineStack) -> None:
    data = os.urandom(1024)
    _, execution = _ingest(stack, "uploads/a/smoke.bin", data)
    assert execution["status"] == "SUCCEEDED", stack.history(execution["executionArn"])[-3:]
    (doc,) = stack.documents_for("uploads/a/smoke.bin")
    assert doc["status"] == "stored" and doc["plaintext_deleted_at"] is not None
    assert stack.versions(stack.uploads, "uploads/a/smoke.bin") == []
    package = stack.client("s3").get_object(Bucket=stack.encrypted, Key=doc["encrypted_key"])
    header = envelope.read_header(package["Body"].read())
    assert header.key_id == doc["key_id"]
    body, error = stack.retrieve({"document_id": doc["document_id"]}, requested_by="tester")
    assert error is None, body
    assert base64.b64decode(body["content_base64"]) == data
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    trail = stack.audit_rows(doc["document_id"])
    assert [(r["operation"], r["outcome"]) for r in trail] == [
        ("document.encrypt", "success"),
        ("document.decrypt", "attempt"),
        ("document.decrypt", "success"),
    ]
    # the ingest function's own role; the verified caller for the read; a claim is a detail
    alice = stack.sts.users["alice"].arn if stack.sts else ""
    assert [r["actor"] for r in trail] == ["pqfile_audit_writer", alice, alice]
    assert trail[2]["details"]["claimed_by"] == "tester"
    assert trail[0]["details"]["tenant"] == "a"  # the upload's tenant folder
    # what the S3 event says about the uploader (moto's values)
    assert trail[0]["details"]["requester"] == "123456789012"
    assert trail[0]["details"]["source_ip"]
    assert stack.sql("SELECT tenant FROM documents WHERE document_id = :d",
                     d=doc["document_id"]) == [["a"]]  # fmt: skip


def test_an_upload_under_a_mapped_prefix_is_encrypted_with_its_suite(
    stack: PipelineStack,
) -> None:
    # The map's prefix chooses mlkem1024 (key, row, package header); the rest of the tenant
    # keeps the default suite. Both decrypt through retrieve.
    for key, suite in (
        (f"uploads/{CNSA_PREFIX}report.pdf", Suite.MLKEM1024),
        ("uploads/a/cnsa-not-a-folder.pdf", Suite.XWING),
    ):
        data = os.urandom(3000)
        _, execution = _ingest(stack, key, data)
        assert execution["status"] == "SUCCEEDED", stack.explain(execution["executionArn"])
        doc = _stored_doc(stack, key)
        assert doc["suite"] == suite.value
        assert stack.sql("SELECT suite FROM encryption_keys WHERE id = :k",
                         k=doc["key_id"]) == [[suite.value]]  # fmt: skip
        package = stack.client("s3").get_object(Bucket=stack.encrypted, Key=doc["encrypted_key"])
        header = envelope.read_header(package["Body"].read())
        assert header.suite is suite and header.key_id == doc["key_id"]
        out, body = _retrieve_bytes(stack, doc["document_id"])
        assert out == data and body["sha256"] == hashlib.sha256(data).hexdigest()


def _encrypt_rows(stack: PipelineStack, document_id: str) -> list[dict]:
    return [r for r in stack.audit_rows(document_id) if r["operation"] == "document.encrypt"]


def _stored_doc(stack: PipelineStack, key: str) -> dict:
    docs = stack.documents_for(key)
    assert len(docs) == 1, docs
    assert docs[0]["status"] == "stored"
    return docs[0]


def _retrieve_bytes(stack: PipelineStack, document_id: str) -> tuple[bytes, dict]:
    import urllib.request

    body, error = stack.retrieve({"document_id": document_id})
    assert error is None, body
    if body["delivery"] == "inline":
        return base64.b64decode(body["content_base64"]), body
    with urllib.request.urlopen(body["url"], timeout=120) as resp:
        return resp.read(), body


@pytest.mark.parametrize("size", [0, 1024, 20 * 1024 * 1024], ids=["0B", "1KiB", "20MiB"])
def test_round_trip(stack: PipelineStack, size: int) -> None:
    data = os.urandom(size)
    key = f"uploads/a/rt-{size}.bin"
    _, execution = _ingest(stack, key, data)
    assert execution["status"] == "SUCCEEDED", stack.explain(execution["executionArn"])
    doc = _stored_doc(stack, key)
    assert doc["plaintext_size"] == size
    assert stack.versions(stack.uploads, key) == []
    assert len(stack.versions(stack.encrypted, doc["encrypted_key"])) == 1
    out, body = _retrieve_bytes(stack, doc["document_id"])
    assert out == data
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["delivery"] == ("inline" if size <= 4 * 1024 * 1024 else "url")


@pytest.mark.slow
def test_round_trip_200_mib(stack: PipelineStack, tmp_path) -> None:
    path = tmp_path / "big.bin"
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with path.open("wb") as f:
        for i in range(200):
            chunk = i.to_bytes(4, "big") + block[4:]
            digest.update(chunk)
            f.write(chunk)
    key = "uploads/a/big 200MiB.bin"
    stack.upload(key, path)
    execution = stack.wait_for_upload(key, timeout=300)
    assert execution["status"] == "SUCCEEDED"
    doc = _stored_doc(stack, key)
    assert doc["plaintext_size"] == 200 * 1024 * 1024
    assert stack.versions(stack.uploads, key) == []
    import urllib.request

    body, error = stack.retrieve({"document_id": doc["document_id"]})
    assert error is None, body
    assert body["delivery"] == "url" and body["sha256"] == digest.hexdigest()
    got = hashlib.sha256()
    with urllib.request.urlopen(body["url"], timeout=300) as resp:
        while chunk := resp.read(1024 * 1024):
            got.update(chunk)
    assert got.hexdigest() == digest.hexdigest()


@pytest.mark.parametrize(
    "key",
    [
        "uploads/a/with space and  two.txt",
        "uploads/a/ünïcødé/文件 résumé.pdf",
        "uploads/a/enc%41ded+plus&amp=eq?q#frag.txt",
        "uploads/a/odd/~!$'()*,;:@[]{}^`|\\.bin",
    ],
    ids=["spaces", "unicode", "url-encoded", "punctuation"],
)
def test_odd_object_keys(stack: PipelineStack, key: str) -> None:
    data = key.encode() * 10
    _, execution = _ingest(stack, key, data)
    assert execution["status"] == "SUCCEEDED", stack.explain(execution["executionArn"])
    doc = _stored_doc(stack, key)
    assert doc["source_key"] == key
    assert stack.versions(stack.uploads, key) == []
    assert _retrieve_bytes(stack, doc["document_id"])[0] == data


def test_duplicate_events(stack: PipelineStack) -> None:
    key = "uploads/a/dup.txt"
    data = b"duplicate me" * 100
    up, first = _ingest(stack, key, data)
    assert first["status"] == "SUCCEEDED"
    event = stack.event_for(key, up["version_id"], up["etag"], len(data))
    for _ in range(2):
        again = stack.wait(stack.start(event))
        assert again["status"] == "SUCCEEDED"
        assert "MarkDuplicate" in stack.entered_states(again["executionArn"])
    doc = _stored_doc(stack, key)
    assert len(stack.versions(stack.encrypted, doc["encrypted_key"])) == 1
    trail = _encrypt_rows(stack, doc["document_id"])
    assert [r["details"]["result"] for r in trail] == ["stored", "duplicate", "duplicate"]
    assert len({r["request_id"] for r in trail}) == 3  # one row per execution


def test_concurrent_duplicate_events(stack: PipelineStack) -> None:
    key = "uploads/a/concurrent.bin"
    data = os.urandom(3 * 1024 * 1024)
    up = stack.upload(key, data)  # EventBridge starts one execution ...
    event = stack.event_for(key, up["version_id"], up["etag"], len(data))
    arns = [stack.start(event) for _ in range(2)]  # ... and the same event twice more, at once
    # All three carry the same input, so wait until the EventBridge one is listed as well,
    # then for every one of them (not the first listed: that may be one already awaited).
    deadline = time.monotonic() + 180
    while len(stack.executions_for(key, up["version_id"])) < 3:
        assert time.monotonic() < deadline, "EventBridge started no execution"
        time.sleep(0.2)
    every = [e["executionArn"] for e in stack.executions_for(key, up["version_id"])]
    assert set(arns) <= set(every) and len(every) == 3
    finished = [stack.wait(a, timeout=180) for a in every]
    assert [f["status"] for f in finished] == ["SUCCEEDED"] * 3
    doc = _stored_doc(stack, key)
    assert len(stack.versions(stack.encrypted, doc["encrypted_key"])) == 1
    assert stack.versions(stack.uploads, key) == []
    trail = _encrypt_rows(stack, doc["document_id"])
    results = sorted(r["details"]["result"] for r in trail)
    assert results == ["duplicate", "duplicate", "stored"]
    assert _retrieve_bytes(stack, doc["document_id"])[0] == data


def _failed_execution(stack: PipelineStack, key: str, data: bytes) -> tuple[dict, dict]:
    up, execution = _ingest(stack, key, data)
    assert execution["status"] == "FAILED"
    states = stack.entered_states(execution["executionArn"])
    assert states[-2:] == ["RecordFailure", "Failed"], states
    return up, execution


def _assert_kept_and_audited(stack: PipelineStack, up: dict, key: str, step: str, error: str):
    versions = stack.versions(stack.uploads, key)
    assert [v["VersionId"] for v in versions] == [up["version_id"]]  # plaintext kept
    tags = stack.client("s3").get_object_tagging(
        Bucket=stack.uploads, Key=key, VersionId=up["version_id"]
    )["TagSet"]
    assert {"Key": "pqfile-status", "Value": "failed"} in tags
    failures = [
        r
        for r in stack.audit_rows()
        if r["outcome"] == "failure" and r["details"].get("source_key") == key
    ]
    assert failures, "the failure is audited"
    assert failures[-1]["details"]["step"] == step
    assert failures[-1]["details"]["error"] == error


def _rerun(stack: PipelineStack, up: dict, key: str, size: int) -> None:
    event = stack.event_for(key, up["version_id"], up["etag"], size)
    again = stack.wait(stack.start(event), timeout=120)
    assert again["status"] == "SUCCEEDED", stack.entered_states(again["executionArn"])
    _stored_doc(stack, key)
    assert stack.versions(stack.uploads, key) == []


def test_database_down_at_store(stack: PipelineStack) -> None:
    from devstack.postgres import free_port, replace_url  # noqa: F401

    good = stack.function_db_urls["store"]
    dead = good.replace(good.split("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{free_port()}")
    stack.set_env("store", PQFILE_DATABASE_URL=dead)
    try:
        key = "uploads/a/db-down.txt"
        data = b"keep me"
        up, execution = _failed_execution(stack, key, data)
        states = stack.entered_states(execution["executionArn"])
        assert "StoreDocument" in states
        _assert_kept_and_audited(stack, up, key, "StoreDocument", "TransientError")
    finally:
        stack.set_env("store", PQFILE_DATABASE_URL=good)
    _rerun(stack, up, key, len(data))


def test_s3_put_failing_during_encrypt(stack: PipelineStack) -> None:
    stack.set_env("encrypt", PQFILE_ENCRYPTED_BUCKET="pqfile-no-such-bucket-here")
    try:
        key = "uploads/a/s3-put-fails.txt"
        data = b"keep me too"
        up, _ = _failed_execution(stack, key, data)
        _assert_kept_and_audited(stack, up, key, "EncryptDocument", "StorageError")
    finally:
        stack.set_env("encrypt", PQFILE_ENCRYPTED_BUCKET=stack.encrypted)
    _rerun(stack, up, key, len(data))


def test_empty_pool_fails_select_key_until_refilled(stack: PipelineStack) -> None:
    # SelectKey never creates keys (only the rotate-keys workflow's MaintainPool does): an
    # empty pool is a NoActiveKeyError, retried (shortened here, see render_asl), then
    # caught into RecordFailure with the upload kept. A refill makes the re-run pass.
    import datetime as dt

    from pqfile.keys.policy import PoolPolicy

    ks = stack.keystore(OPERATOR)
    for k in ks.list_keys("xwing"):
        if k.status.value == "active":
            ks.expire(k.key_id, actor="tests")
    key = "uploads/a/empty-pool.txt"
    data = b"wait for keys"
    up, _ = _failed_execution(stack, key, data)
    _assert_kept_and_audited(stack, up, key, "SelectKey", "NoActiveKeyError")
    # Only the key-management side refills: the maintain function's role.
    policy = PoolPolicy(
        target_active=2,
        floor_active=1,
        max_age=dt.timedelta(days=30),
        max_documents=1_000_000,
        max_bytes=1 << 40,
    )
    refiller = stack.keystore(MAINTAIN, policy=policy)
    assert len(refiller.refill("xwing")) == 2
    _rerun(stack, up, key, len(data))


def test_event_for_another_bucket_or_prefix(stack: PipelineStack) -> None:
    up = stack.upload("uploads/a/foreign.txt", b"x")
    stack.wait_for_upload("uploads/a/foreign.txt", up["version_id"])
    foreign = (("someone-elses-bucket", "uploads/a/x.txt"), (stack.uploads, "other/x.txt"))
    for bucket, key in foreign:
        event = stack.event_for(key, "v1", "etag", 1)
        event["detail"]["bucket"]["name"] = bucket
        execution = stack.wait(stack.start(event))
        assert execution["status"] == "FAILED"
        assert stack.entered_states(execution["executionArn"]) == [
            "FetchDocument",
            "FetchDocumentFailed",
            "RecordFailure",
            "Failed",
        ]
        failure = [r for r in stack.audit_rows() if r["outcome"] == "failure"][-1]
        assert failure["details"]["error"] == "InvalidEventError"
        assert failure["details"]["upload_kept"] is False


def test_object_deleted_before_fetch(stack: PipelineStack) -> None:
    key = "uploads/a/deleted-early.txt"
    s3 = stack.client("s3")
    head = s3.put_object(Bucket=stack.uploads, Key=key + ".tmp", Body=b"gone")  # no trigger race
    s3.delete_object(Bucket=stack.uploads, Key=key + ".tmp", VersionId=head["VersionId"])
    event = stack.event_for(key, head["VersionId"], head["ETag"].strip('"'), 4)
    execution = stack.wait(stack.start(event))
    assert execution["status"] == "FAILED"
    failure = [r for r in stack.audit_rows() if r["outcome"] == "failure"][-1]
    assert failure["details"]["step"] == "FetchDocument"
    assert failure["details"]["error"] == "DocumentNotFoundError"


def test_an_upload_outside_a_tenant_folder_is_kept_tagged_and_audited(stack: PipelineStack) -> None:
    up, execution = _ingest(stack, "uploads/no-tenant.txt", b"whose is this?")
    assert execution["status"] == "FAILED"
    assert len(stack.versions(stack.uploads, "uploads/no-tenant.txt")) == 1  # kept
    tags = stack.client("s3").get_object_tagging(
        Bucket=stack.uploads, Key="uploads/no-tenant.txt", VersionId=up["version_id"]
    )["TagSet"]
    assert {"Key": "pqfile-error", "Value": "OutsideTenantError"} in tags
    # This upload's failure row (a straggler of an earlier test may append after it).
    failure = [
        r for r in stack.audit_rows() if r["details"].get("source_key") == "uploads/no-tenant.txt"
    ][-1]
    assert (failure["operation"], failure["outcome"], failure["details"]["error"]) == (
        "document.encrypt",
        "failure",
        "OutsideTenantError",
    )
    assert stack.documents_for("uploads/no-tenant.txt") == []
