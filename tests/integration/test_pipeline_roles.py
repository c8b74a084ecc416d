"""The pipeline under the least-privilege database roles it is deployed with:
pqfile_ingest for the ingest steps, pqfile_retrieve for retrieve (sql/migrations/0005)."""

from __future__ import annotations

import base64

import pytest

from tests.fixtures.postgres import INGEST, RETRIEVE, role_url
from tests.integration.pipeline_stack import PipelineStack, deploy_pipeline

pytestmark = pytest.mark.integration

INGEST_STEPS = ("fetch", "select_key", "encrypt", "store", "audit", "record_failure")


@pytest.fixture(scope="module")
def stack(aws_emulator, emulator_role_arn, migrated_db_url) -> PipelineStack:
    urls = {fn: role_url(migrated_db_url, INGEST) for fn in INGEST_STEPS}
    urls["retrieve"] = role_url(migrated_db_url, RETRIEVE)
    return deploy_pipeline(
        aws_emulator, emulator_role_arn, migrated_db_url, function_db_urls=urls
    )


def test_ingest_and_retrieve_under_least_privilege(stack: PipelineStack) -> None:
    up = stack.upload("uploads/roles.txt", b"least privilege")
    execution = stack.wait_for_upload("uploads/roles.txt", up["version_id"])
    assert execution["status"] == "SUCCEEDED", stack.explain(execution["executionArn"])
    (doc,) = stack.documents_for("uploads/roles.txt")
    body, error = stack.invoke("retrieve", {"document_id": doc["document_id"]})
    assert error is None, body
    assert base64.b64decode(body["content_base64"]) == b"least privilege"
    body, error = stack.invoke("retrieve", {"document_id": "0" * 32})
    assert body["errorType"] == "DocumentNotFoundError"
    assert stack.audit_rows()[-1]["outcome"] == "refused"


def test_failure_path_under_least_privilege(stack: PipelineStack) -> None:
    up = stack.upload("uploads/roles-fail.txt", b"x")
    stack.wait_for_upload("uploads/roles-fail.txt", up["version_id"])
    event = stack.event_for("uploads/roles-missing.txt", "no-such-version", "e", 1)
    execution = stack.wait(stack.start(event))
    assert execution["status"] == "FAILED"
    failure = stack.audit_rows()[-1]
    assert (failure["outcome"], failure["details"]["error"]) == ("failure", "DocumentNotFoundError")


def test_the_ingest_role_cannot_refill_an_empty_pool(stack: PipelineStack) -> None:
    # Refilling is a pqfile_rotate operation (docs/KEYS.md): SelectKey never refills, so
    # under pqfile_ingest an empty pool fails SelectKey with NoActiveKeyError, the upload is
    # kept, and a refill makes the re-run pass.
    ks = stack.keystore()
    for k in ks.list_keys("xwing"):
        if k.status.value == "active":
            ks.expire(k.key_id, actor="tests")
    up = stack.upload("uploads/roles-empty-pool.txt", b"wait for keys")
    execution = stack.wait_for_upload("uploads/roles-empty-pool.txt", up["version_id"])
    assert execution["status"] == "FAILED"
    failure = stack.audit_rows()[-1]
    assert failure["details"]["step"] == "SelectKey"
    assert failure["details"]["error"] == "NoActiveKeyError"  # never a refill attempt
    assert [v["VersionId"] for v in stack.versions(stack.uploads, "uploads/roles-empty-pool.txt")]
    ks.create_keys("xwing", 2, actor="tests")
    event = stack.event_for("uploads/roles-empty-pool.txt", up["version_id"], up["etag"], 13)
    again = stack.wait(stack.start(event))
    assert again["status"] == "SUCCEEDED", stack.explain(again["executionArn"])
