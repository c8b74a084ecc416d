"""The pipeline under the database roles it is deployed with: each Lambda function connects
as its own role (sql/migrations/0010; tests/fixtures/postgres.py FUNCTION_ROLES), and the
fail-safe paths of issue 9 hold end to end on the emulator (the real ASL, our handlers)."""

from __future__ import annotations

import base64
import os

import pytest

from pqfile.adapters.postgres import parse_database_url
from tests.fixtures.postgres import FUNCTION_ROLES, OPERATOR
from tests.integration.pipeline_stack import FUNCTIONS, PipelineStack, deploy_pipeline

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(aws_emulator, emulator_role_arn, migrated_db_url, local_sts) -> PipelineStack:
    return deploy_pipeline(aws_emulator, emulator_role_arn, migrated_db_url, sts=local_sts)


def test_each_function_connects_as_its_own_role(stack: PipelineStack) -> None:
    lam = stack.client("lambda")
    users = {}
    for fn in FUNCTIONS:
        env = lam.get_function_configuration(FunctionName=stack.functions[fn])["Environment"]
        users[fn] = parse_database_url(env["Variables"]["PQFILE_DATABASE_URL"]).user
        assert env["Variables"]["PQFILE_ATTESTATION_KEY_ID"] == stack.attestation_key_id
    assert users == {fn: FUNCTION_ROLES[fn] for fn in FUNCTIONS}
    assert len(set(users.values())) == len(FUNCTIONS)  # no two functions share a role


def test_ingest_and_retrieve_under_least_privilege(stack: PipelineStack) -> None:
    up = stack.upload("uploads/a/roles.txt", b"least privilege")
    execution = stack.wait_for_upload("uploads/a/roles.txt", up["version_id"])
    assert execution["status"] == "SUCCEEDED", stack.explain(execution["executionArn"])
    (doc,) = stack.documents_for("uploads/a/roles.txt")
    body, error = stack.retrieve({"document_id": doc["document_id"]})
    assert error is None, body
    assert base64.b64decode(body["content_base64"]) == b"least privilege"
    body, error = stack.retrieve({"document_id": "0" * 32})
    assert body["errorType"] == "DocumentNotFoundError"
    assert stack.audit_rows()[-1]["outcome"] == "refused"
    # every audit row names the role that wrote it, or retrieve's verified caller
    rows = stack.sql(
        "SELECT operation, actor, db_role FROM access_logs WHERE document_id = :d ORDER BY seq",
        d=doc["document_id"],
    )
    alice = stack.sts.users["alice"].arn if stack.sts else ""
    assert [tuple(r) for r in rows] == [
        ("document.encrypt", "pqfile_audit_writer", "pqfile_audit_writer"),
        ("document.decrypt", alice, "pqfile_retrieve"),
        ("document.decrypt", alice, "pqfile_retrieve"),
    ]


def test_failure_path_under_least_privilege(stack: PipelineStack) -> None:
    up = stack.upload("uploads/a/roles-fail.txt", b"x")
    stack.wait_for_upload("uploads/a/roles-fail.txt", up["version_id"])
    event = stack.event_for("uploads/a/roles-missing.txt", "no-such-version", "e", 1)
    execution = stack.wait(stack.start(event))
    assert execution["status"] == "FAILED"
    failure = stack.audit_rows()[-1]
    assert (failure["outcome"], failure["details"]["error"]) == ("failure", "DocumentNotFoundError")
    assert failure["actor"] == "pqfile_record_failure"


def test_the_select_key_role_cannot_refill_an_empty_pool(stack: PipelineStack) -> None:
    # Refilling is the maintain function's (docs/KEYS.md): SelectKey never refills, so an
    # empty pool fails SelectKey with NoActiveKeyError, the upload is kept, and a refill by
    # the maintain role makes the re-run pass.
    ks = stack.keystore(OPERATOR)
    for k in ks.list_keys("xwing"):
        if k.status.value == "active":
            ks.expire(k.key_id, actor="tests")
    up = stack.upload("uploads/a/roles-empty-pool.txt", b"wait for keys")
    execution = stack.wait_for_upload("uploads/a/roles-empty-pool.txt", up["version_id"])
    assert execution["status"] == "FAILED"
    failure = stack.audit_rows()[-1]
    assert failure["details"]["step"] == "SelectKey"
    assert failure["details"]["error"] == "NoActiveKeyError"  # never a refill attempt
    assert [v["VersionId"] for v in stack.versions(stack.uploads, "uploads/a/roles-empty-pool.txt")]
    stack.keystore(FUNCTION_ROLES["rotate_maintain"]).create_keys("xwing", 2, actor="tests")
    event = stack.event_for("uploads/a/roles-empty-pool.txt", up["version_id"], up["etag"], 13)
    again = stack.wait(stack.start(event))
    assert again["status"] == "SUCCEEDED", stack.explain(again["executionArn"])


def test_a_replay_after_revocation_stores_on_a_new_key(stack: PipelineStack) -> None:
    """Issue 9, finding 1, the exact sequence: EncryptDocument fails -> RecordFailure -> an
    operator revokes the key -> the upload is replayed as docs/OPERATIONS.md says. Before,
    the replay reused the revoked key, deleted the plaintext and the document was lost.
    Now the document ends stored on a new active key, retrievable byte-identical, and the
    plaintext is deleted only then."""
    key = "uploads/a/revoked-then-replayed.bin"
    data = os.urandom(300_000)
    stack.set_env("encrypt", PQFILE_ENCRYPTED_BUCKET="pqfile-no-such-bucket-here")
    try:
        up = stack.upload(key, data)
        first = stack.wait_for_upload(key, up["version_id"])
        assert first["status"] == "FAILED"
        assert stack.entered_states(first["executionArn"])[-2:] == ["RecordFailure", "Failed"]
    finally:
        stack.set_env("encrypt", PQFILE_ENCRYPTED_BUCKET=stack.encrypted)
    (doc,) = stack.documents_for(key)
    assert doc["status"] == "failed" and doc["plaintext_deleted_at"] is None
    old_key = doc["key_id"]
    failure = [r for r in stack.audit_rows(doc["document_id"]) if r["outcome"] == "failure"]
    assert failure[-1]["details"]["step"] == "EncryptDocument"

    stack.keystore(OPERATOR).revoke(old_key, "suspected compromise", actor="tests")
    assert [v["VersionId"] for v in stack.versions(stack.uploads, key)] == [up["version_id"]]

    event = stack.event_for(key, up["version_id"], up["etag"], len(data))
    replay = stack.wait(stack.start(event), timeout=180)
    assert replay["status"] == "SUCCEEDED", stack.explain(replay["executionArn"])

    (doc,) = stack.documents_for(key)
    assert doc["status"] == "stored" and doc["key_id"] != old_key
    status = stack.sql("SELECT status FROM encryption_keys WHERE id = :k", k=doc["key_id"])
    assert status == [["active"]]
    from pqfile.crypto import envelope

    package = (
        stack.client("s3")
        .get_object(
            Bucket=stack.encrypted, Key=doc["encrypted_key"], VersionId=doc["encrypted_version_id"]
        )["Body"]
        .read()
    )
    assert envelope.read_header(package).key_id == doc["key_id"]
    body, error = stack.retrieve({"document_id": doc["document_id"]})
    assert error is None, body
    assert base64.b64decode(body["content_base64"]) == data
    # the plaintext went only after the package on the new key was committed
    assert stack.versions(stack.uploads, key) == [] and doc["plaintext_deleted_at"] is not None
    trail = stack.audit_rows(doc["document_id"])
    assert [(r["operation"], r["outcome"]) for r in trail][-3:] == [
        ("document.encrypt", "success"),
        ("document.decrypt", "attempt"),
        ("document.decrypt", "success"),
    ]
    assert trail[-3]["key_id"] == doc["key_id"]
