"""An over-limit upload on the local stack (the real ingest ASL on the emulator, the real
handlers, PostgreSQL): refused at FetchDocument at once, with DocumentTooLargeError as its
audited reason, the upload kept and tagged; no key selected, nothing encrypted."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.integration.pipeline_stack import PipelineStack, deploy_pipeline

pytestmark = pytest.mark.integration

LIMIT = 1024
#: Far below the encrypt step's 15-minute timeout that used to be the only stop.
REFUSED_WITHIN_SECONDS = 30.0


@pytest.fixture(scope="module")
def stack(aws_emulator, emulator_role_arn, migrated_db_url) -> PipelineStack:
    return deploy_pipeline(aws_emulator, emulator_role_arn, migrated_db_url)


def test_an_over_limit_upload_is_refused_at_fetch_fast_kept_and_audited(
    stack: PipelineStack,
) -> None:
    stack.set_env("fetch", PQFILE_MAX_DOCUMENT_SIZE=str(LIMIT))
    key = "uploads/a/too-large.bin"
    data = b"z" * (LIMIT + 1)
    up = stack.upload(key, data)
    execution = stack.wait_for_upload(key, up["version_id"])
    assert execution["status"] == "FAILED"
    took = execution["stopDate"] - execution["startDate"]
    assert took < dt.timedelta(seconds=REFUSED_WITHIN_SECONDS), took
    states = stack.entered_states(execution["executionArn"])
    assert "SelectKey" not in states and "EncryptDocument" not in states, states
    assert states[-2:] == ["RecordFailure", "Failed"], states

    # Kept, tagged with the reason, audited with it.
    versions = stack.versions(stack.uploads, key)
    assert [v["VersionId"] for v in versions] == [up["version_id"]]
    tags = stack.client("s3").get_object_tagging(
        Bucket=stack.uploads, Key=key, VersionId=up["version_id"]
    )["TagSet"]
    assert {"Key": "pqfile-status", "Value": "failed"} in tags
    assert {"Key": "pqfile-error", "Value": "DocumentTooLargeError"} in tags
    failures = [
        r
        for r in stack.audit_rows()
        if r["outcome"] == "failure" and r["details"].get("source_key") == key
    ]
    assert failures, "the refusal is audited"
    assert failures[-1]["details"]["step"] == "FetchDocument"
    assert failures[-1]["details"]["error"] == "DocumentTooLargeError"
    assert stack.versions(stack.encrypted, "encrypted/") == []

    # At the limit it goes through.
    stack.set_env("fetch", PQFILE_MAX_DOCUMENT_SIZE=str(len(data)))
    again = stack.upload("uploads/a/at-limit.bin", data)
    done = stack.wait_for_upload("uploads/a/at-limit.bin", again["version_id"])
    assert done["status"] == "SUCCEEDED", stack.explain(done["executionArn"])
