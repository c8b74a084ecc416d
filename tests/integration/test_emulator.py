"""The emulator's additions, end to end through boto3 against a running server."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from devstack.emulator import Emulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "states.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _invoke(emulator: Emulator, function: str, event: Any) -> tuple[Any, str | None]:
    response = emulator.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event))
    return json.loads(response["Payload"].read()), response.get("FunctionError")


def _wait_for_execution(emulator: Emulator, arn: str, timeout: float = 60.0) -> dict[str, Any]:
    sfn = emulator.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return dict(described)
        time.sleep(0.2)
    raise AssertionError(f"execution {arn} still running after {timeout} s")


def _wait_for_executions(
    emulator: Emulator, state_machine_arn: str, count: int, timeout: float = 60.0
) -> list[dict[str, Any]]:
    sfn = emulator.client("stepfunctions")
    deadline = time.monotonic() + timeout
    executions: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        executions = sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]
        if len(executions) >= count:
            return [_wait_for_execution(emulator, e["executionArn"]) for e in executions]
        time.sleep(0.2)
    raise AssertionError(f"{len(executions)} executions of {state_machine_arn}, wanted {count}")


def _state_machine(
    emulator: Emulator, prefix: str, definition: dict[str, Any] | str, role_arn: str
) -> str:
    """A new state machine named ``<prefix>-<random>``; returns its ARN."""
    machine = emulator.client("stepfunctions").create_state_machine(
        name=f"{prefix}-{uuid.uuid4().hex[:8]}",
        definition=definition if isinstance(definition, str) else json.dumps(definition),
        roleArn=role_arn,
    )
    return str(machine["stateMachineArn"])


def _echo_machine(
    emulator: Emulator, make_lambda: Callable[..., str], prefix: str, role_arn: str
) -> str:
    """A state machine of one Task on ``emulator_probe.echo``; returns its ARN."""
    echo = make_lambda("emulator_probe.echo")
    definition = {
        "StartAt": "Echo",
        "States": {"Echo": {"Type": "Task", "Resource": echo, "End": True}},
    }
    return _state_machine(emulator, prefix, definition, role_arn)


def _wait_for_file(path: Path, timeout: float = 30.0) -> None:
    """Until ``path`` exists or ``timeout`` seconds pass (the caller then reads it)."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def _bucket_with_eventbridge(emulator: Emulator) -> str:
    s3 = emulator.client("s3")
    bucket = f"emulator-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    return bucket


def _rule_for_uploads(emulator: Emulator, bucket: str, target: dict[str, Any]) -> str:
    events = emulator.client("events")
    name = f"uploads-{uuid.uuid4().hex[:8]}"
    pattern = {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": "uploads/"}]}},
    }
    events.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule=name, Targets=[{"Id": "target", **target}])
    return name


# -- Lambda ---------------------------------------------------------------------------------


def test_invoke_runs_the_handler_with_its_environment_and_a_context(
    aws_emulator: Emulator, make_lambda: Callable[..., str]
) -> None:
    arn = make_lambda("emulator_probe.echo", environment={"PROBE_SETTING": "from-config"})
    response = aws_emulator.client("lambda").invoke(
        FunctionName=arn, Payload=json.dumps({"hello": "world"}), LogType="Tail"
    )
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    body = json.loads(response["Payload"].read())
    assert body["event"] == {"hello": "world"}
    assert body["invoked_function_arn"] == arn
    assert body["function_name"] == arn.rsplit(":", 1)[-1]
    assert body["memory_limit_in_mb"] == 128
    assert 0 < body["remaining_ms"] <= 30_000
    uuid.UUID(body["aws_request_id"])
    assert body["env"] == {
        "PROBE_SETTING": "from-config",
        "AWS_ENDPOINT_URL": aws_emulator.endpoint_url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_XRAY_SDK_ENABLED": "false",
        "AWS_LAMBDA_FUNCTION_NAME": body["function_name"],
        "MOTO_PORT": None,  # nothing of the server's environment leaks into a worker
    }
    log_tail = base64.b64decode(response["LogResult"]).decode()
    assert "echo called with {'hello': 'world'}" in log_tail
    assert "a line on stderr" in log_tail
    assert f"END RequestId: {body['aws_request_id']}" in log_tail


def test_warm_worker_is_reused_and_logs_reach_cloudwatch(
    aws_emulator: Emulator, make_lambda: Callable[..., str]
) -> None:
    arn = make_lambda("emulator_probe.echo")
    first, _ = _invoke(aws_emulator, arn, {"n": 1})
    second, _ = _invoke(aws_emulator, arn, {"n": 2})
    assert first["pid"] == second["pid"]
    logs = aws_emulator.client("logs")
    group = f"/aws/lambda/{first['function_name']}"
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    messages = [
        event["message"]
        for stream in streams
        for event in logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])[
            "events"
        ]
    ]
    assert any("echo called with {'n': 2}" in m for m in messages)


def test_configuration_change_gets_a_fresh_worker(
    aws_emulator: Emulator, make_lambda: Callable[..., str]
) -> None:
    arn = make_lambda("emulator_probe.echo", environment={"PROBE_SETTING": "one"})
    before, _ = _invoke(aws_emulator, arn, {})
    aws_emulator.client("lambda").update_function_configuration(
        FunctionName=arn, Environment={"Variables": {"PROBE_SETTING": "two"}}
    )
    after, _ = _invoke(aws_emulator, arn, {})
    assert (before["env"]["PROBE_SETTING"], after["env"]["PROBE_SETTING"]) == ("one", "two")
    assert before["pid"] != after["pid"]


def test_exception_surfaces_as_function_error_with_its_class_name(
    aws_emulator: Emulator, make_lambda: Callable[..., str]
) -> None:
    arn = make_lambda("emulator_probe.fail")
    payload, function_error = _invoke(aws_emulator, arn, {"reason": "because"})
    assert function_error == "Unhandled"
    assert payload["errorType"] == "PermanentProbeError"
    assert payload["errorMessage"] == "refused because"
    assert any("emulator_probe.py" in line for line in payload["stackTrace"])


def test_missing_module_and_unserialisable_result_fail_like_the_runtime(
    aws_emulator: Emulator, make_lambda: Callable[..., str]
) -> None:
    missing, error = _invoke(aws_emulator, make_lambda("no_such_module.handler"), {})
    assert error and missing["errorType"] == "Runtime.ImportModuleError"
    marshal, error = _invoke(aws_emulator, make_lambda("emulator_probe.not_json"), {})
    assert error and marshal["errorType"] == "Runtime.MarshalError"


def test_timeout_kills_the_worker_and_reports_task_timed_out(
    aws_emulator: Emulator, make_lambda: Callable[..., str]
) -> None:
    arn = make_lambda("emulator_probe.sleep", timeout=1)
    started = time.monotonic()
    response = aws_emulator.client("lambda").invoke(
        FunctionName=arn, Payload=json.dumps({"seconds": 30}), LogType="Tail"
    )
    payload, function_error = json.loads(response["Payload"].read()), response["FunctionError"]
    assert time.monotonic() - started < 10
    assert "sleeping 30 s" in base64.b64decode(response["LogResult"]).decode()
    assert function_error == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    quick, function_error = _invoke(aws_emulator, arn, {"seconds": 0})
    assert function_error is None and quick["slept"] == 0


def test_concurrent_invocations_run_in_parallel_workers(
    aws_emulator: Emulator, make_lambda: Callable[..., str]
) -> None:
    arn = make_lambda("emulator_probe.sleep")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: _invoke(aws_emulator, arn, {"seconds": 1.5}), range(6)))
    elapsed = time.monotonic() - started
    assert all(error is None for _, error in results)
    assert len({payload["pid"] for payload, _ in results}) == 6
    assert elapsed < 8, f"6 concurrent 1.5 s invocations took {elapsed:.1f} s"


def test_asynchronous_invoke_returns_at_once_and_runs(
    aws_emulator: Emulator, make_lambda: Callable[..., str], tmp_path: Path
) -> None:
    arn = make_lambda("emulator_probe.record")
    record_file = tmp_path / "record.txt"
    response = aws_emulator.client("lambda").invoke(
        FunctionName=arn,
        InvocationType="Event",
        Payload=json.dumps({"record_file": str(record_file), "error": {"Error": "async"}}),
    )
    assert response["StatusCode"] == 202
    _wait_for_file(record_file)
    assert record_file.read_text() == "async"


# -- Step Functions -------------------------------------------------------------------------


def test_terraform_step_functions_calls_answer(
    aws_emulator: Emulator, emulator_role_arn: str
) -> None:
    sfn = aws_emulator.client("stepfunctions")
    good = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    assert sfn.validate_state_machine_definition(definition=good)["result"] == "OK"
    bad = sfn.validate_state_machine_definition(definition='{"StartAt": "Nowhere"}')
    assert bad["result"] == "FAIL" and bad["diagnostics"]
    machine = sfn.create_state_machine(
        name=f"versions-{uuid.uuid4().hex[:8]}",
        definition=good,
        roleArn=emulator_role_arn,
        publish=True,
    )
    versions = sfn.list_state_machine_versions(stateMachineArn=machine["stateMachineArn"])
    assert [v["stateMachineVersionArn"] for v in versions["stateMachineVersions"]] == [
        machine["stateMachineVersionArn"]
    ]


def _pipeline_definition(flaky_arn: str, fail_arn: str, record_arn: str) -> str:
    retry = [
        {
            "ErrorEquals": ["TransientProbeError"],
            "IntervalSeconds": 1,
            "MaxAttempts": 3,
            "BackoffRate": 1.0,
        }
    ]
    return json.dumps(
        {
            "StartAt": "Flaky",
            "States": {
                "Flaky": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": flaky_arn, "Payload.$": "$"},
                    "ResultSelector": {"attempts.$": "$.Payload.attempts"},
                    "ResultPath": "$.flaky",
                    "Retry": retry,
                    "Next": "Refuse",
                },
                "Refuse": {
                    "Type": "Task",
                    "Resource": fail_arn,
                    "Catch": [
                        {
                            "ErrorEquals": ["PermanentProbeError"],
                            "ResultPath": "$.error",
                            "Next": "Record",
                        }
                    ],
                    "Next": "Unreachable",
                },
                "Unreachable": {"Type": "Succeed"},
                "Record": {
                    "Type": "Task",
                    "Resource": record_arn,
                    "ResultPath": "$.recorded",
                    "Next": "Failed",
                },
                "Failed": {"Type": "Fail", "Error": "ProbeFailed", "Cause": "caught"},
            },
        }
    )


def test_state_machine_runs_lambda_tasks_with_retry_and_catch_on_error_type(
    aws_emulator: Emulator,
    make_lambda: Callable[..., str],
    emulator_role_arn: str,
    tmp_path: Path,
) -> None:
    definition = _pipeline_definition(
        make_lambda("emulator_probe.flaky"),
        make_lambda("emulator_probe.fail"),
        make_lambda("emulator_probe.record"),
    )
    sfn = aws_emulator.client("stepfunctions")
    machine_arn = _state_machine(aws_emulator, "probe", definition, emulator_role_arn)
    execution_input = {
        "counter_file": str(tmp_path / "attempts"),
        "fail_times": 2,
        "record_file": str(tmp_path / "caught"),
    }
    execution = sfn.start_execution(
        stateMachineArn=machine_arn,
        name="run-1",
        input=json.dumps(execution_input),
    )
    result = _wait_for_execution(aws_emulator, execution["executionArn"])
    assert result["status"] == "FAILED", result
    assert result.get("error") == "ProbeFailed"
    assert (tmp_path / "attempts").read_text() == "3"  # two TransientProbeErrors retried
    assert (tmp_path / "caught").read_text() == "PermanentProbeError"  # Catch matched by type


# -- EventBridge ----------------------------------------------------------------------------


def test_s3_upload_starts_the_state_machine_through_an_eventbridge_rule(
    aws_emulator: Emulator, make_lambda: Callable[..., str], emulator_role_arn: str
) -> None:
    machine_arn = _echo_machine(aws_emulator, make_lambda, "ingest", emulator_role_arn)
    bucket = _bucket_with_eventbridge(aws_emulator)
    _rule_for_uploads(aws_emulator, bucket, {"Arn": machine_arn, "RoleArn": emulator_role_arn})
    s3 = aws_emulator.client("s3")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="ignored/not-an-upload.txt", Body=b"x")
    versions = {
        key: s3.put_object(Bucket=bucket, Key=key, Body=key.encode())["VersionId"]
        for key in ("uploads/one.txt", "uploads/two.txt")
    }

    executions = _wait_for_executions(aws_emulator, machine_arn, 2)
    assert [e["status"] for e in executions] == ["SUCCEEDED", "SUCCEEDED"]
    events = [json.loads(e["output"])["event"] for e in executions]
    assert sorted(e["detail"]["object"]["key"] for e in events) == [
        "uploads/one.txt",
        "uploads/two.txt",
    ]
    for event in events:
        assert event["source"] == "aws.s3"
        assert event["detail-type"] == "Object Created"
        assert event["detail"]["bucket"]["name"] == bucket
        assert event["time"].endswith("Z")
        assert event["detail"]["object"]["version-id"] == versions[event["detail"]["object"]["key"]]
    assert events[0]["id"] != events[1]["id"]
    sequencers = {e["detail"]["object"]["sequencer"] for e in events}
    assert len(sequencers) == 2
    sfn = aws_emulator.client("stepfunctions")
    assert len(sfn.list_executions(stateMachineArn=machine_arn)["executions"]) == 2


def test_rule_with_input_transformer_and_lambda_target(
    aws_emulator: Emulator, make_lambda: Callable[..., str], tmp_path: Path
) -> None:
    record = make_lambda("emulator_probe.record")
    bucket = _bucket_with_eventbridge(aws_emulator)
    record_file = tmp_path / "from-rule"
    template = json.dumps({"record_file": str(record_file), "error": {"Error": "<key>"}})
    _rule_for_uploads(
        aws_emulator,
        bucket,
        {
            "Arn": record,
            "InputTransformer": {
                "InputPathsMap": {"key": "$.detail.object.key"},
                "InputTemplate": template,
            },
        },
    )
    aws_emulator.client("s3").put_object(Bucket=bucket, Key="uploads/doc.pdf", Body=b"pdf")
    _wait_for_file(record_file)
    assert record_file.read_text() == "uploads/doc.pdf"


def test_put_events_reaches_a_state_machine_target(
    aws_emulator: Emulator, emulator_role_arn: str
) -> None:
    definition = {"StartAt": "Pass", "States": {"Pass": {"Type": "Pass", "End": True}}}
    machine_arn = _state_machine(aws_emulator, "custom", definition, emulator_role_arn)
    events = aws_emulator.client("events")
    rule = f"custom-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["pqfile.test"]}))
    events.put_targets(
        Rule=rule,
        Targets=[{"Id": "sm", "Arn": machine_arn, "InputPath": "$.detail"}],
    )
    for n in range(2):
        events.put_events(
            Entries=[{"Source": "pqfile.test", "DetailType": "t", "Detail": json.dumps({"n": n})}]
        )
    executions = _wait_for_executions(aws_emulator, machine_arn, 2)
    assert sorted(json.loads(e["output"])["n"] for e in executions) == [0, 1]


def test_handler_putting_to_a_notifying_bucket_does_not_deadlock(
    aws_emulator: Emulator, make_lambda: Callable[..., str], emulator_role_arn: str
) -> None:
    # The put inside the invocation triggers EventBridge -> state machine -> another Lambda,
    # all while the first invocation's worker is still busy.
    machine_arn = _echo_machine(aws_emulator, make_lambda, "nested", emulator_role_arn)
    bucket = _bucket_with_eventbridge(aws_emulator)
    _rule_for_uploads(aws_emulator, bucket, {"Arn": machine_arn})
    putter = make_lambda("emulator_probe.s3_put", timeout=20)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(
                lambda n: _invoke(aws_emulator, putter, {"bucket": bucket, "key": f"uploads/{n}"}),
                range(4),
            )
        )
    assert [error for _, error in results] == [None] * 4
    executions = _wait_for_executions(aws_emulator, machine_arn, 4)
    assert {e["status"] for e in executions} == {"SUCCEEDED"}


def test_reset_forgets_resources_but_keeps_the_additions() -> None:
    # A private emulator: resetting the shared one would pull resources from under other tests.
    from devstack.emulator import start_emulator

    emulator = start_emulator()
    try:
        emulator.client("s3").create_bucket(Bucket="before-reset")
        emulator.reset()
        assert emulator.client("s3").list_buckets()["Buckets"] == []
        sfn = emulator.client("stepfunctions")
        good = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
        assert sfn.validate_state_machine_definition(definition=good)["result"] == "OK"
        role = emulator.client("iam").create_role(
            RoleName="after-reset", AssumeRolePolicyDocument=json.dumps(_TRUST)
        )["Role"]["Arn"]
        definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": 7, "End": True}}}
        machine = sfn.create_state_machine(
            name="after-reset", definition=json.dumps(definition), roleArn=role
        )
        run = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="r")
        finished = _wait_for_execution(emulator, run["executionArn"])
        assert (finished["status"], finished.get("output")) == ("SUCCEEDED", "7")
    finally:
        emulator.stop()


def test_tls_only_bucket_policy_does_not_refuse_local_requests(aws_emulator: Emulator) -> None:
    # moto would deny every request under a Deny-with-Condition statement; the emulator does
    # not enforce bucket policies (as LocalStack does not by default).
    s3 = aws_emulator.client("s3")
    bucket = f"tls-only-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    s3.put_object(Bucket=bucket, Key="uploads/a.txt", Body=b"a")
    assert s3.get_object(Bucket=bucket, Key="uploads/a.txt")["Body"].read() == b"a"
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "uploads/a.txt"}]})
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def _queue(emulator: Emulator, name: str) -> tuple[str, str]:
    sqs = emulator.client("sqs")
    url = sqs.create_queue(QueueName=f"{name}-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, arn["QueueArn"]


def _receive(emulator: Emulator, url: str, timeout: float = 30.0) -> dict[str, Any]:
    sqs = emulator.client("sqs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = sqs.receive_message(
            QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=1
        ).get("Messages", [])
        if messages:
            return dict(messages[0])
    raise AssertionError(f"nothing arrived on {url} within {timeout} s")


def test_failed_asynchronous_invocation_is_retried_then_dead_lettered(
    aws_emulator: Emulator, make_lambda: Callable[..., str], tmp_path: Path
) -> None:
    dlq_url, dlq_arn = _queue(aws_emulator, "function-dlq")
    destination_url, destination_arn = _queue(aws_emulator, "on-failure")
    arn = make_lambda("emulator_probe.flaky", DeadLetterConfig={"TargetArn": dlq_arn})
    lam = aws_emulator.client("lambda")
    assert lam.get_function_configuration(FunctionName=arn)["DeadLetterConfig"] == {
        "TargetArn": dlq_arn
    }
    lam.put_function_event_invoke_config(
        FunctionName=arn,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": destination_arn}},
    )
    event = {"counter_file": str(tmp_path / "attempts"), "fail_times": 5}
    lam.invoke(FunctionName=arn, InvocationType="Event", Payload=json.dumps(event))

    dead_letter = _receive(aws_emulator, dlq_url)
    assert json.loads(dead_letter["Body"]) == event
    assert "attempt 2 failed" in dead_letter["MessageAttributes"]["ErrorMessage"]["StringValue"]
    record = json.loads(_receive(aws_emulator, destination_url)["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestPayload"] == event
    assert record["responsePayload"]["errorType"] == "TransientProbeError"
    assert (tmp_path / "attempts").read_text() == "2"  # one try and one retry


def test_undeliverable_eventbridge_target_goes_to_its_dead_letter_queue(
    aws_emulator: Emulator,
) -> None:
    dlq_url, dlq_arn = _queue(aws_emulator, "events-dlq")
    bucket = _bucket_with_eventbridge(aws_emulator)
    missing = "arn:aws:states:us-east-1:123456789012:stateMachine:does-not-exist"
    _rule_for_uploads(aws_emulator, bucket, {"Arn": missing, "DeadLetterConfig": {"Arn": dlq_arn}})
    aws_emulator.client("s3").put_object(Bucket=bucket, Key="uploads/lost.txt", Body=b"x")
    message = _receive(aws_emulator, dlq_url)
    assert json.loads(message["Body"])["detail"]["object"]["key"] == "uploads/lost.txt"
    attributes = message["MessageAttributes"]
    assert attributes["TARGET_ARN"]["StringValue"] == missing
    assert attributes["ERROR_CODE"]["StringValue"]


def test_lifecycle_and_filter_keeps_object_size_bounds(aws_emulator: Emulator) -> None:
    # Terraform's provider sends ObjectSizeGreaterThan=0 in every `and` filter and waits until
    # it reads the same rule back.
    s3 = aws_emulator.client("s3")
    bucket = f"lifecycle-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    rules = [
        {
            "ID": "quarantine",
            "Status": "Enabled",
            "Filter": {
                "And": {
                    "ObjectSizeGreaterThan": 0,
                    "Prefix": "uploads/",
                    "Tags": [{"Key": "pqfile-status", "Value": "failed"}],
                }
            },
            "Expiration": {"Days": 30},
        },
        {"ID": "plain", "Status": "Enabled", "Filter": {"Prefix": "x/"}, "Expiration": {"Days": 1}},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    read = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert read["quarantine"]["Filter"] == rules[0]["Filter"]
    assert read["plain"]["Filter"] == {"Prefix": "x/"}


def test_configuration_terraform_reads_back_is_kept(
    aws_emulator: Emulator, make_lambda: Callable[..., str]
) -> None:
    # Each of these made `terraform plan` propose a change after every apply.
    s3 = aws_emulator.client("s3")
    bucket = _bucket_with_eventbridge(aws_emulator)
    assert s3.get_bucket_notification_configuration(Bucket=bucket)["EventBridgeConfiguration"] == {}

    kms = aws_emulator.client("kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=180)
    status = kms.get_key_rotation_status(KeyId=key)
    assert (status["KeyRotationEnabled"], status["RotationPeriodInDays"]) == (True, 180)

    lam = aws_emulator.client("lambda")
    arn = make_lambda("emulator_probe.echo", LoggingConfig={"LogFormat": "JSON"})
    name = arn.rsplit(":", 1)[-1]
    assert lam.get_function_configuration(FunctionName=arn)["LoggingConfig"] == {
        "LogFormat": "JSON",
        "LogGroup": f"/aws/lambda/{name}",
    }
    lam.update_function_configuration(
        FunctionName=arn, LoggingConfig={"LogFormat": "JSON", "LogGroup": "/custom/group"}
    )
    assert _invoke(aws_emulator, arn, {"n": 1})[1] is None
    groups = aws_emulator.client("logs").describe_log_groups(logGroupNamePrefix="/custom/group")
    assert [g["logGroupName"] for g in groups["logGroups"]] == ["/custom/group"]


def test_an_edited_handler_takes_effect_on_the_next_invocation(tmp_path: Path) -> None:
    from devstack.emulator import start_emulator

    from tests.fixtures.emulator import placeholder_zip

    module = tmp_path / "edited_probe.py"
    module.write_text("def handler(event, context):\n    return 'v1'\n")
    emulator = start_emulator(code_paths=[tmp_path])
    try:
        role = emulator.client("iam").create_role(
            RoleName="edits", AssumeRolePolicyDocument=json.dumps(_TRUST)
        )["Role"]["Arn"]
        emulator.client("lambda").create_function(
            FunctionName="edited",
            Runtime="python3.11",
            Role=role,
            Handler="edited_probe.handler",
            Code={"ZipFile": placeholder_zip()},
        )
        assert _invoke(emulator, "edited", {}) == ("v1", None)
        module.write_text("def handler(event, context):\n    return 'v2'\n")
        later = time.time() + 5
        os.utime(module, (later, later))  # a new mtime even on coarse-grained file systems
        time.sleep(1.1)  # the pool looks at the tree at most once a second
        assert _invoke(emulator, "edited", {}) == ("v2", None)
    finally:
        emulator.stop()
