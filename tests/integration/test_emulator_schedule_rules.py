"""A rule with a ScheduleExpression and no EventPattern receives no events, as on AWS.

moto loads the missing pattern as the empty pattern, which matches every event: before
devstack.moto_patches.events_targets skipped such rules, every S3 upload of the local stack
also started the scheduled rotation (601 stray audit rows for 200 uploads).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from devstack.emulator import Emulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SETTLE_SECONDS = 1.5  # deliveries are synchronous in moto; this covers our background threads


class _Rules:
    """Rules on the default bus, removed again afterwards (the emulator is shared)."""

    def __init__(self, emulator: Emulator) -> None:
        self.events = emulator.client("events")
        self.names: list[str] = []

    def put(self, target_arn: str, **rule: Any) -> str:
        name = f"rule-{uuid.uuid4().hex[:8]}"
        self.events.put_rule(Name=name, State="ENABLED", **rule)
        self.events.put_targets(Rule=name, Targets=[{"Id": "only", "Arn": target_arn}])
        self.names.append(name)
        return name

    def remove_all(self) -> None:
        for name in self.names:
            self.events.remove_targets(Rule=name, Ids=["only"])
            self.events.delete_rule(Name=name)


@pytest.fixture
def rules(aws_emulator: Emulator) -> Iterator[_Rules]:
    created = _Rules(aws_emulator)
    try:
        yield created
    finally:
        created.remove_all()


def _queue(emulator: Emulator) -> tuple[str, str]:
    sqs = emulator.client("sqs")
    url = sqs.create_queue(QueueName=f"rules-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return str(url), str(arn["QueueArn"])


def _received(emulator: Emulator, queue_url: str) -> list[dict[str, Any]]:
    sqs = emulator.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_put_events_reach_the_pattern_rule_and_not_the_schedule_rule(
    aws_emulator: Emulator, rules: _Rules
) -> None:
    source = f"pqfile.test.{uuid.uuid4().hex[:8]}"
    scheduled_url, scheduled_arn = _queue(aws_emulator)
    matching_url, matching_arn = _queue(aws_emulator)
    rules.put(scheduled_arn, ScheduleExpression="rate(1 hour)")
    rules.put(matching_arn, EventPattern=json.dumps({"source": [source]}))

    answer = aws_emulator.client("events").put_events(
        Entries=[{"Source": source, "DetailType": "Probe", "Detail": json.dumps({"n": 1})}]
    )
    assert answer["FailedEntryCount"] == 0
    time.sleep(SETTLE_SECONDS)

    delivered = _received(aws_emulator, matching_url)
    assert [event["source"] for event in delivered] == [source]
    assert _received(aws_emulator, scheduled_url) == []


def test_an_upload_starts_no_execution_of_a_scheduled_state_machine(
    aws_emulator: Emulator, emulator_role_arn: str, rules: _Rules
) -> None:
    # The local stack's shape: a rotation state machine on a schedule, uploads on a pattern.
    sfn = aws_emulator.client("stepfunctions")
    rotation = sfn.create_state_machine(
        name=f"scheduled-{uuid.uuid4().hex[:8]}",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn=emulator_role_arn,
    )["stateMachineArn"]
    s3 = aws_emulator.client("s3")
    bucket = f"schedule-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    uploads_url, uploads_arn = _queue(aws_emulator)
    rules.put(rotation, ScheduleExpression="cron(0 3 * * ? *)")
    pattern = {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}},
    }
    rules.put(uploads_arn, EventPattern=json.dumps(pattern))

    for number in range(3):
        s3.put_object(Bucket=bucket, Key=f"uploads/{number}.txt", Body=b"x")
    time.sleep(SETTLE_SECONDS)

    delivered: list[dict[str, Any]] = []
    while batch := _received(aws_emulator, uploads_url):
        delivered.extend(batch)
    keys = sorted(event["detail"]["object"]["key"] for event in delivered)
    assert keys == [f"uploads/{number}.txt" for number in range(3)]
    assert sfn.list_executions(stateMachineArn=rotation)["executions"] == []
