"""Completion events on the local stack (docs/CONTRACTS.md, "Completion events"): an
EventBridge rule on the default bus routes the service's events (source ``pqfile``) to an
SQS queue, which the tests read: an upload announces `PQFile Document Encrypted`, a failed
one `PQFile Document Failed`, a revocation `PQFile Key Revoked`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.postgres import MAINTAIN, OPERATOR, role_url
from tests.integration.pipeline_stack import PipelineStack, deploy_pipeline

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(aws_emulator, emulator_role_arn, migrated_db_url) -> PipelineStack:
    return deploy_pipeline(aws_emulator, emulator_role_arn, migrated_db_url)


class EventQueue:
    """An SQS queue every `pqfile` event on the default bus is routed to."""

    def __init__(self, stack: PipelineStack) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.sqs = stack.client("sqs")
        self.url = self.sqs.create_queue(QueueName=f"pqfile-events-{suffix}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events = stack.client("events")
        rule = f"pqfile-completion-{suffix}"
        events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["pqfile"]}))
        events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": arn}])
        self.seen: list[dict[str, Any]] = []

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict:
        """The first event (the EventBridge envelope) for which ``match`` is true."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.seen:
                if match(event):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no such event; seen: {self.seen}")
            answer = self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            for message in answer.get("Messages", []):
                self.seen.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"]
                )


@pytest.fixture(scope="module")
def queue(stack: PipelineStack) -> EventQueue:
    return EventQueue(stack)


def test_an_upload_announces_document_encrypted(stack: PipelineStack, queue: EventQueue) -> None:
    key = "uploads/a/events/encrypted.txt"
    secret = b"the content never travels in an event"
    up = stack.upload(key, secret)
    execution = stack.wait_for_upload(key, up["version_id"])
    assert execution["status"] == "SUCCEEDED", stack.explain(execution["executionArn"])
    (doc,) = stack.documents_for(key)
    event = queue.wait_for(
        lambda e: e["detail-type"] == "PQFile Document Encrypted"
        and e["detail"]["document_id"] == doc["document_id"]
    )
    assert event["source"] == "pqfile"
    d = event["detail"]
    assert d["version"] == 1 and d["tenant"] == "a"
    assert d["source"] == {"bucket": stack.uploads, "key": key, "version_id": up["version_id"],
                           "content_type": doc["source_content_type"]}  # fmt: skip
    assert doc["source_content_type"]  # kept on the row (0016)
    assert d["package"]["bucket"] == stack.encrypted
    assert (d["package"]["key"], d["package"]["version_id"]) == (
        doc["encrypted_key"], doc["encrypted_version_id"])  # fmt: skip
    assert (d["key_id"], d["suite"], d["size"]) == (doc["key_id"], doc["suite"], len(secret))
    assert d["encrypted_size"] > len(secret) and d["stored_at"]
    assert secret.decode() not in json.dumps(event)


def test_a_failed_upload_announces_document_failed(
    stack: PipelineStack, queue: EventQueue
) -> None:
    key = "uploads/events-no-tenant.txt"
    up = stack.upload(key, b"outside any tenant folder")
    execution = stack.wait_for_upload(key, up["version_id"])
    assert execution["status"] == "FAILED"
    event = queue.wait_for(
        lambda e: e["detail-type"] == "PQFile Document Failed"
        and (e["detail"].get("source") or {}).get("key") == key
    )
    d = event["detail"]
    assert (d["step"], d["error_type"], d["document_id"], d["tenant"]) == (
        "FetchDocument", "OutsideTenantError", None, None)  # fmt: skip
    assert d["source"] == {"bucket": stack.uploads, "key": key, "version_id": up["version_id"]}
    assert d["failed_at"]


def test_a_revocation_announces_key_revoked_without_its_reason(
    stack: PipelineStack, queue: EventQueue, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from pqfile.cli import main

    (key,) = stack.keystore(MAINTAIN).create_keys("xwing", 1)
    # the operator's own credentials (the standard chain), here the emulator's
    for name, value in (("AWS_ENDPOINT_URL", stack.emulator.endpoint_url),
                        ("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    reason = "incident 4711: laptop of j.doe stolen"
    operator = ["--database-url", role_url(stack.db_url, OPERATOR)]
    assert main(["keys", "revoke", key.key_id, "--now", "--reason", reason, *operator]) == 0
    assert "not delivered" not in capsys.readouterr().err
    event = queue.wait_for(
        lambda e: e["detail-type"] == "PQFile Key Revoked" and e["detail"]["key_id"] == key.key_id
    )
    d = event["detail"]
    assert (d["mode"], d["suite"], d["version"]) == ("now", "xwing", 1) and d["revoked_at"]
    assert "4711" not in json.dumps(event) and "reason" not in d
