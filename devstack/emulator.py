"""The emulated AWS: a moto server with the few additions the PQFile stack needs.

moto (pinned in constraints.txt) serves S3, KMS, Lambda, Step Functions, EventBridge and the
rest. Before the server starts, this module:

- adds the Step Functions calls Terraform's aws provider needs and moto lacks
  (`ValidateStateMachineDefinition`, `ListStateMachineVersions`);
- turns on moto's ASL interpreter, so state machines really execute;
- runs Lambda handlers from the source tree in warm worker subprocesses
  (`devstack.lambda_pool`) instead of Docker, with each function's own environment;
- makes `Event` invocations asynchronous, with Lambda's retries, OnSuccess/OnFailure SQS
  destinations and the function's DeadLetterConfig (which moto drops);
- lets EventBridge rules target Step Functions state machines and Lambda functions (named
  executions, Input/InputPath/InputTransformer, the target's dead-letter queue), and gives
  S3 events unique ids, ISO times and growing sequencers;
- does not enforce S3 bucket policies (moto denies under any conditional Deny statement).

Not emulated: scheduled rules never fire (start those executions yourself), EventBridge
retry policies, Lambda concurrency limits and IAM authorisation.

The patches touch moto internals; `check_moto_internals()` (run at start-up and by the canary
test) names the one that changed when moto is upgraded.

The server always runs in its own process (`python -m devstack.emulator --port N`): the patches
and moto's global configuration never leak into the caller. `start_emulator()` starts one and
returns a handle.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import inspect
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.lambda_pool import FunctionSpec, LambdaWorkerPool

LOG = logging.getLogger("devstack.emulator")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CODE_PATHS = (REPO_ROOT / "functions",)
DEFAULT_REGION = "us-east-1"
DEFAULT_PORT = 4566
MOTO_VERSION = "5.2.5"
LOG_TAIL_BYTES = 4096  # Lambda's x-amz-log-result carries the last 4 KB
_MOTO_CONSTANT_EVENT_ID = "17793124-05d4-b198-2fde-7ededc63b103"  # moto.events.utils
_MOTO_CONSTANT_SEQUENCER = "617f08299329d189"  # moto.s3.notifications


# --------------------------------------------------------------------------------------------
# The moto internals we rely on. The canary test calls this; so does the server at start-up.
# --------------------------------------------------------------------------------------------


# What the Lambda executor reads from moto's LambdaFunction.
_LAMBDA_FUNCTION_ATTRIBUTES = " ".join(
    [
        "environment_vars handler timeout memory_size function_name run_time region",
        "account_id logs_backend logs_group_name version function_arn event_invoke_config",
    ]
).split()


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def check_moto_internals() -> list[str]:
    """Return one message per moto internal the patches need that is missing or changed."""
    import moto

    problems: list[str] = []

    def expect(condition: bool, message: str) -> None:
        if not condition:
            problems.append(f"moto {moto.__version__}: {message}")

    try:
        from moto.awslambda.models import LambdaFunction

        expect(
            _parameters(LambdaFunction._invoke_lambda) == ["self", "event"],
            "moto.awslambda.models.LambdaFunction._invoke_lambda(self, event) changed signature",
        )
        expect(
            _parameters(LambdaFunction.invoke)
            == ["self", "body", "request_headers", "response_headers"],
            "moto.awslambda.models.LambdaFunction.invoke(self, body, request_headers, "
            "response_headers) changed signature",
        )
        expect(
            _parameters(LambdaFunction.save_logs) == ["self", "output"],
            "moto.awslambda.models.LambdaFunction.save_logs(self, output) changed signature",
        )
        init_source = inspect.getsource(LambdaFunction.__init__)
        for attribute in _LAMBDA_FUNCTION_ATTRIBUTES:
            expect(
                f"self.{attribute} =" in init_source or f"self.{attribute}:" in init_source,
                f"LambdaFunction.__init__ no longer sets self.{attribute}",
            )
        expect(
            _parameters(LambdaFunction.__init__)[:3] == ["self", "account_id", "spec"]
            and _parameters(LambdaFunction.update_configuration) == ["self", "config_updates"]
            and _parameters(LambdaFunction.get_configuration)[:1] == ["self"],
            "LambdaFunction.__init__(self, account_id, spec, ...), update_configuration(self, "
            "config_updates) or get_configuration(self, ...) changed signature",
        )
        expect(
            "LoggingConfig" not in init_source,
            "LambdaFunction now keeps LoggingConfig itself: drop it from "
            "devstack.emulator._patch_lambda_dropped_config",
        )
        expect(
            "DeadLetterConfig" not in init_source,
            "LambdaFunction now keeps DeadLetterConfig itself: drop "
            "devstack.emulator._patch_lambda_dropped_config",
        )
        expect(
            "self.event_invoke_config" in init_source,
            "LambdaFunction.__init__ no longer sets self.event_invoke_config",
        )
    except (ImportError, AttributeError) as exc:
        problems.append(f"moto.awslambda.models.LambdaFunction internals changed: {exc}")

    try:
        from moto.events.models import Rule
        from moto.events.utils import EventTemplateParser

        expect(
            _parameters(Rule.send_to_targets) == ["self", "original_event", "transform_input"],
            "moto.events.models.Rule.send_to_targets(self, original_event, transform_input) "
            "changed signature",
        )
        expect(
            _parameters(EventTemplateParser.parse)
            == ["input_template", "input_paths_map", "event"],
            "moto.events.utils.EventTemplateParser.parse(input_template, input_paths_map, event) "
            "changed signature",
        )
        rule_source = inspect.getsource(Rule)
        for attribute in ("targets", "event_pattern", "state", "arn", "name"):
            expect(f"self.{attribute}" in rule_source, f"moto.events Rule lost self.{attribute}")
    except (ImportError, AttributeError) as exc:
        problems.append(f"moto.events Rule.send_to_targets / EventTemplateParser changed: {exc}")

    try:
        from moto.s3 import notifications

        expect(
            _parameters(notifications._invoke_awslambda)
            == ["account_id", "event_body", "fn_arn", "region_name"],
            "moto.s3.notifications._invoke_awslambda(account_id, event_body, fn_arn, "
            "region_name) changed signature",
        )
        expect(
            "_invoke_awslambda(" in inspect.getsource(notifications.send_event),
            "moto.s3.notifications.send_event no longer calls _invoke_awslambda",
        )
        expect(
            "send_to_targets" in inspect.getsource(notifications._send_event_bridge_message),
            "moto.s3.notifications._send_event_bridge_message no longer calls Rule.send_to_targets",
        )
        from moto.events.utils import _BASE_EVENT_MESSAGE

        expect(
            _BASE_EVENT_MESSAGE.get("id") == _MOTO_CONSTANT_EVENT_ID
            and _MOTO_CONSTANT_SEQUENCER
            in inspect.getsource(notifications._send_event_bridge_message),
            "moto's constant S3 event id / sequencer changed (devstack.emulator._normalised_event "
            "replaces them with unique values)",
        )
    except (ImportError, AttributeError) as exc:
        problems.append(f"moto.s3.notifications internals missing: {exc}")

    try:
        from moto.iam.access_control import PermissionResult
        from moto.s3.models import FakeBucket

        expect(
            _parameters(FakeBucket.get_permission) == ["self", "action", "resource"]
            and hasattr(PermissionResult, "NEUTRAL"),
            "moto.s3.models.FakeBucket.get_permission(self, action, resource) or "
            "moto.iam.access_control.PermissionResult.NEUTRAL changed",
        )
        from moto.s3 import models as s3_models
        from moto.s3.responses import S3Response

        expect(
            _parameters(S3Response.get_bucket_notification) == ["self"]
            and "self.serialized(ActionResult("
            in inspect.getsource(S3Response.get_bucket_notification)
            and "self.event_bridge" in inspect.getsource(s3_models.NotificationConfiguration),
            "moto.s3 S3Response.get_bucket_notification(self) or "
            "NotificationConfiguration.event_bridge changed",
        )
        expect(
            "EventBridgeConfiguration" not in inspect.getsource(S3Response.get_bucket_notification),
            "moto.s3 now reports EventBridgeConfiguration: drop "
            "devstack.emulator._patch_s3_eventbridge_notification_readback",
        )

        expect(
            _parameters(FakeBucket.set_lifecycle) == ["self", "rules"]
            and _parameters(S3Response.get_bucket_lifecycle) == ["self"]
            and "self.serialized(ActionResult("
            in inspect.getsource(S3Response.get_bucket_lifecycle),
            "moto.s3 FakeBucket.set_lifecycle(self, rules) or S3Response.get_bucket_lifecycle "
            "(self) -> self.serialized(ActionResult(...)) changed",
        )
        expect(
            "ObjectSizeGreaterThan" not in inspect.getsource(s3_models),
            "moto.s3 now keeps lifecycle ObjectSizeGreaterThan: drop "
            "devstack.emulator._patch_s3_lifecycle_object_sizes",
        )
    except (ImportError, AttributeError) as exc:
        problems.append(f"moto S3 bucket policy internals changed: {exc}")

    try:
        from moto.kms import models as kms_models
        from moto.kms.responses import KmsResponse

        expect(
            _parameters(KmsResponse.enable_key_rotation) == ["self"]
            and _parameters(KmsResponse.get_key_rotation_status) == ["self"]
            and callable(getattr(kms_models.KmsBackend, "get_key_id", None)),
            "moto.kms KmsResponse.enable_key_rotation / get_key_rotation_status or "
            "KmsBackend.get_key_id changed",
        )
        expect(
            "RotationPeriodInDays" not in inspect.getsource(KmsResponse),
            "moto.kms now handles RotationPeriodInDays: drop "
            "devstack.emulator._patch_kms_rotation_period",
        )
    except (ImportError, AttributeError) as exc:
        problems.append(f"moto KMS internals changed: {exc}")

    try:
        from moto.core.config import default_user_config
        from moto.stepfunctions import responses as sfn_responses
        from moto.stepfunctions.parser.asl.utils import boto_client
        from moto.stepfunctions.parser.models import StepFunctionsParserBackend

        expect(
            "stepfunctions" in default_user_config,
            "moto.core.config.default_user_config has no 'stepfunctions' section",
        )
        expect(
            "execute_state_machine" in inspect.getsource(sfn_responses.get_backend),
            "moto.stepfunctions.responses.get_backend no longer reads execute_state_machine",
        )
        expect(
            "moto_server_port" in inspect.getsource(boto_client.boto_client_for),
            "moto.stepfunctions.parser.asl.utils.boto_client.boto_client_for no longer uses "
            "MOTO_PORT (moto_server_port) to reach Lambda",
        )
        expect(
            callable(getattr(StepFunctionsParserBackend, "_validate_definition", None)),
            "moto.stepfunctions.parser.models.StepFunctionsParserBackend._validate_definition "
            "is gone",
        )
        expect(
            _parameters(StepFunctionsParserBackend.start_execution)[:4]
            == ["self", "state_machine_arn", "name", "execution_input"],
            "StepFunctionsParserBackend.start_execution(self, state_machine_arn, name, "
            "execution_input) changed signature",
        )
    except (ImportError, AttributeError) as exc:
        problems.append(f"moto Step Functions internals changed: {exc}")

    try:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,  # noqa: F401
            MotoRequestHandler,  # noqa: F401
            create_backend_app,  # noqa: F401
        )
    except (ImportError, AttributeError) as exc:
        problems.append(f"moto.moto_server.werkzeug_app changed: {exc}")
    return problems


# --------------------------------------------------------------------------------------------
# Lambda: run our handlers in warm worker subprocesses.
# --------------------------------------------------------------------------------------------


def _function_spec(fn: Any) -> FunctionSpec:
    version = str(fn.version)
    return FunctionSpec(
        function_name=fn.function_name,
        function_arn=fn.function_arn,
        version="$LATEST" if version in ("1", "$LATEST") else version,
        handler=fn.handler or "",
        runtime=fn.run_time or "python3.11",
        region=fn.region,
        timeout_seconds=float(fn.timeout or 3),
        memory_mb=int(fn.memory_size or 128),
        environment=tuple(sorted((str(k), str(v)) for k, v in (fn.environment_vars or {}).items())),
    )


def _lambda_log_text(spec: FunctionSpec, request_id: str, output: str, duration_ms: float) -> str:
    lines = [f"START RequestId: {request_id} Version: {spec.version}"]
    lines.extend(output.splitlines())
    lines.append(f"END RequestId: {request_id}")
    lines.append(
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Memory Size: {spec.memory_mb} MB"
    )
    return "\n".join(lines)


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        lowered = {str(k).lower(): v for k, v in headers.items()}
        value = lowered.get(name.lower())
    return None if value is None else str(value)


def _patch_lambda(pool: LambdaWorkerPool) -> None:
    from moto.awslambda.models import LambdaFunction
    from moto.s3 import notifications

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        spec = _function_spec(self)
        result = pool.invoke(spec, {} if event is None else event)
        logs = _lambda_log_text(spec, result.request_id, result.logs, result.duration_ms)
        try:
            self.logs_backend.ensure_log_group(self.logs_group_name)
            self.save_logs(logs)
        except Exception:  # logs are a convenience; never fail the invocation for them
            LOG.exception("could not write CloudWatch logs for %s", spec.function_name)
        level = logging.WARNING if result.errored else logging.INFO
        LOG.log(
            level,
            "invoke %s %s errored=%s %.0f ms",
            spec.function_name,
            result.request_id,
            result.errored,
            result.duration_ms,
        )
        return result.payload, result.errored, logs

    def invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> bytes:
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        event = json.loads(body) if body else {}
        invocation_type = _header(request_headers, "x-amz-invocation-type") or "RequestResponse"
        if invocation_type == "DryRun":
            return b""
        if invocation_type == "Event":
            invoke_async(self, event)
            return b""
        payload, errored, logs = self._invoke_lambda(event=event)
        if errored:
            response_headers["x-amz-function-error"] = "Unhandled"
        tail = logs.encode("utf-8")[-LOG_TAIL_BYTES:]
        response_headers["x-amz-log-result"] = base64.b64encode(tail).decode("ascii")
        return str(payload).encode("utf-8")

    def _invoke_awslambda(account_id: str, event_body: Any, fn_arn: str, region_name: str) -> None:
        # S3 -> Lambda notifications are asynchronous on AWS; moto's run inside the PUT.
        try:
            from moto.awslambda.utils import get_backend

            fn = get_backend(account_id, region_name).get_function(fn_arn)
            invoke_async(fn, event_body)
        except Exception:
            LOG.exception("S3 notification to %s failed", fn_arn)

    LambdaFunction._invoke_lambda = _invoke_lambda  # type: ignore[method-assign]
    LambdaFunction.invoke = invoke  # type: ignore[method-assign]
    notifications._invoke_awslambda = _invoke_awslambda


ASYNC_RETRY_DELAYS = (1.0, 2.0)  # AWS waits about 1 and 2 minutes; locally, seconds


def invoke_async(fn: Any, event: Any) -> None:
    """Lambda's `Event` invocation: run in the background with Lambda's retries, then deliver
    the outcome to the function's destinations and, on failure, its dead-letter queue."""

    def run() -> None:
        try:
            config = _event_invoke_config(fn)
            retries = int(config.get("MaximumRetryAttempts", 2))
            attempts = 0
            while True:
                attempts += 1
                payload, errored, logs = fn._invoke_lambda(event=event)
                if not errored or attempts > retries:
                    break
                time.sleep(ASYNC_RETRY_DELAYS[min(attempts, len(ASYNC_RETRY_DELAYS)) - 1])
            _deliver_async_outcome(fn, event, payload, errored, logs, attempts, config)
        except Exception:
            LOG.exception("asynchronous invocation of %s failed", fn.function_name)

    threading.Thread(target=run, name=f"async-{fn.function_name}", daemon=True).start()


def _event_invoke_config(fn: Any) -> dict[str, Any]:
    configs = getattr(fn, "event_invoke_config", None) or []
    # moto appends on every put/update; the last one is the current one.
    return dict(configs[-1].config) if configs else {}


def _send_to_queue(queue_arn: str, body: Any, attributes: dict[str, str] | None = None) -> None:
    from moto.sqs.models import sqs_backends
    from moto.utilities.arns import parse_arn

    arn = parse_arn(queue_arn)
    if arn.service != "sqs":
        LOG.warning("only SQS destinations are emulated, not %s", queue_arn)
        return
    sqs_backends[arn.account][arn.region].send_message(
        queue_name=arn.resource_id,
        message_body=body if isinstance(body, str) else json.dumps(body),
        message_attributes={
            name: {"DataType": "String", "StringValue": value}
            for name, value in (attributes or {}).items()
        },
    )


def _deliver_async_outcome(
    fn: Any,
    event: Any,
    payload: str,
    errored: bool,
    logs: str,
    attempts: int,
    config: dict[str, Any],
) -> None:
    request_id = logs.split("START RequestId: ", 1)[-1].split(" ", 1)[0] if logs else ""
    destinations = config.get("DestinationConfig") or {}
    destination = (destinations.get("OnFailure" if errored else "OnSuccess") or {}).get(
        "Destination"
    )
    try:
        response: Any = json.loads(payload)
    except ValueError:
        response = payload
    if destination:
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "requestContext": {
                "requestId": request_id,
                "functionArn": f"{fn.function_arn}:$LATEST",
                "condition": "RetriesExhausted" if errored else "Success",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                **({"functionError": "Unhandled"} if errored else {}),
            },
            "responsePayload": response,
        }
        _send_to_queue(destination, record)
    dead_letter_queue = (getattr(fn, "dead_letter_config", None) or {}).get("TargetArn")
    if errored and dead_letter_queue:
        error = response if isinstance(response, dict) else {}
        _send_to_queue(
            dead_letter_queue,
            event,
            {
                "RequestID": request_id,
                "ErrorCode": "200",
                "ErrorMessage": str(error.get("errorMessage", payload))[:1000],
            },
        )


def _patch_lambda_dropped_config() -> None:
    """moto drops a function's DeadLetterConfig and LoggingConfig; keep, report and use them.

    Without them Terraform plans a change to every function on every run, and async failures
    would have nowhere to go.
    """
    from moto.awslambda.models import LambdaFunction

    original_init = LambdaFunction.__init__
    original_update = LambdaFunction.update_configuration
    original_get = LambdaFunction.get_configuration

    def keep(self: Any, config: dict[str, Any]) -> None:
        if "DeadLetterConfig" in config:
            self.dead_letter_config = dict(config["DeadLetterConfig"] or {})
        if "LoggingConfig" in config:
            logging_config = {**self.logging_config, **(config["LoggingConfig"] or {})}
            self.logging_config = logging_config
            self.logs_group_name = logging_config["LogGroup"]

    def __init__(
        self: Any, account_id: str, spec: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        original_init(self, account_id, spec, *args, **kwargs)
        self.dead_letter_config = {}
        # Lambda's default: plain-text logs in /aws/lambda/<name>.
        self.logging_config = {"LogFormat": "Text", "LogGroup": self.logs_group_name}
        keep(self, spec)

    def update_configuration(self: Any, config_updates: dict[str, Any]) -> Any:
        keep(self, config_updates)
        return original_update(self, config_updates)

    def get_configuration(self: Any, *args: Any, **kwargs: Any) -> Any:
        configuration = original_get(self, *args, **kwargs)
        if getattr(self, "dead_letter_config", None):
            configuration["DeadLetterConfig"] = dict(self.dead_letter_config)
        if getattr(self, "logging_config", None):
            configuration["LoggingConfig"] = dict(self.logging_config)
        return configuration

    LambdaFunction.__init__ = __init__  # type: ignore[method-assign]
    LambdaFunction.update_configuration = update_configuration  # type: ignore[method-assign]
    LambdaFunction.get_configuration = get_configuration  # type: ignore[method-assign]


def _patch_kms_rotation_period() -> None:
    """Keep EnableKeyRotation's RotationPeriodInDays and report it, as KMS does (default 365)."""
    from moto.kms.responses import KmsResponse

    original_enable = KmsResponse.enable_key_rotation
    original_status = KmsResponse.get_key_rotation_status

    def key_of(self: Any) -> Any:
        backend = self.kms_backend
        return backend.keys[backend.get_key_id(self._get_param("KeyId"))]

    def enable_key_rotation(self: Any) -> str:
        result: str = original_enable(self)
        period = self._get_param("RotationPeriodInDays")
        key_of(self).devstack_rotation_period = int(period) if period else 365
        return result

    def get_key_rotation_status(self: Any) -> str:
        status = json.loads(original_status(self))
        key = key_of(self)
        status["KeyId"] = key.id
        if status.get("KeyRotationEnabled"):
            status["RotationPeriodInDays"] = getattr(key, "devstack_rotation_period", 365)
        return json.dumps(status)

    KmsResponse.enable_key_rotation = enable_key_rotation  # type: ignore[method-assign]
    KmsResponse.get_key_rotation_status = get_key_rotation_status  # type: ignore[method-assign]


def _patch_s3_eventbridge_notification_readback() -> None:
    """GetBucketNotificationConfiguration omits `EventBridgeConfiguration` in moto."""
    from moto.s3.responses import S3Response

    original = S3Response.get_bucket_notification

    def get_bucket_notification(self: Any) -> Any:
        configuration = self.backend.get_bucket_notification_configuration(self.bucket_name)
        if configuration is not None and configuration.event_bridge is not None:
            original_serialized = self.serialized  # a response object serves one request

            def serialized(action_result: Any) -> Any:
                result = getattr(action_result, "result", None)
                if isinstance(result, dict):
                    result["EventBridgeConfiguration"] = {}
                return original_serialized(action_result)

            self.serialized = serialized
        return original(self)

    S3Response.get_bucket_notification = get_bucket_notification  # type: ignore[method-assign]


# --------------------------------------------------------------------------------------------
# Step Functions: the two calls Terraform needs, and real execution.
# --------------------------------------------------------------------------------------------


def _patch_s3_bucket_policies() -> None:
    """Do not enforce bucket policies, as LocalStack does not by default.

    moto 5.2.5 evaluates a bucket policy without the request's context and returns DENIED for
    every Deny statement that has a Condition, whether or not it holds: the standard TLS-only
    statement (`aws:SecureTransport` false -> Deny) would refuse every local request. Policies
    are checked on AWS and by the Terraform checks, not here.
    """
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self: Any, action: str, resource: str) -> Any:
        return PermissionResult.NEUTRAL

    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]


_OBJECT_SIZE_FIELDS = ("ObjectSizeGreaterThan", "ObjectSizeLessThan")


def _patch_s3_lifecycle_object_sizes() -> None:
    """Keep a lifecycle filter's ObjectSizeGreaterThan/LessThan, which moto drops.

    Terraform's aws provider sends `<And><ObjectSizeGreaterThan>0` for every `filter { and }`
    and then waits (3 minutes, then fails) until GetBucketLifecycleConfiguration returns
    exactly what it sent.
    """
    from moto.s3.models import FakeBucket
    from moto.s3.responses import S3Response

    original_set_lifecycle = FakeBucket.set_lifecycle
    original_get_bucket_lifecycle = S3Response.get_bucket_lifecycle

    def set_lifecycle(self: Any, rules: list[dict[str, Any]]) -> None:
        sizes: dict[tuple[str | None, str], dict[str, int]] = {}
        for rule in rules:
            rule_filter = rule.get("Filter") or {}
            for scope, holder in (("And", rule_filter.get("And") or {}), ("Filter", rule_filter)):
                kept = {k: int(holder[k]) for k in _OBJECT_SIZE_FIELDS if holder.get(k) is not None}
                if kept:
                    sizes[(rule.get("ID"), scope)] = kept
        original_set_lifecycle(self, rules)
        self.devstack_lifecycle_sizes = sizes

    def get_bucket_lifecycle(self: Any) -> Any:
        bucket = self.backend.get_bucket(self.bucket_name)
        sizes = getattr(bucket, "devstack_lifecycle_sizes", None)
        if sizes:
            original_serialized = self.serialized  # a response object serves one request

            def serialized(action_result: Any) -> Any:
                for rule in action_result.result.get("Rules", []):
                    for (rule_id, scope), kept in sizes.items():
                        if rule_id == rule.get("ID"):
                            rule_filter = rule.setdefault("Filter", {})
                            target = (
                                rule_filter.setdefault("And", {}) if scope == "And" else rule_filter
                            )
                            target.update(kept)
                return original_serialized(action_result)

            self.serialized = serialized
        return original_get_bucket_lifecycle(self)

    FakeBucket.set_lifecycle = set_lifecycle  # type: ignore[method-assign]
    S3Response.get_bucket_lifecycle = get_bucket_lifecycle  # type: ignore[method-assign]


def _patch_stepfunctions() -> None:
    from moto.core.config import default_user_config
    from moto.core.responses import ActionResult
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import StepFunctionResponse

    default_user_config["stepfunctions"] = {"execute_state_machine": True}

    def validate_state_machine_definition(self: Any) -> ActionResult:
        definition = self._get_param("definition")
        diagnostics = []
        try:
            StepFunctionsParserBackend._validate_definition(definition=definition)
            result = "OK"
        except Exception as exc:  # noqa: BLE001 - any parse failure is a FAIL diagnostic
            result = "FAIL"
            message = getattr(exc, "message", None) or str(exc)
            diagnostics.append(
                {"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED", "message": message}
            )
        return ActionResult({"result": result, "diagnostics": diagnostics, "truncated": False})

    def list_state_machine_versions(self: Any) -> ActionResult:
        arn = self._get_param("stateMachineArn")
        state_machine = self.stepfunction_backend.describe_state_machine(arn)
        versions = sorted(
            getattr(state_machine, "versions", {}).values(),
            key=lambda v: v.creation_date,
            reverse=True,
        )
        items = [
            {"stateMachineVersionArn": v.arn, "creationDate": v.creation_date} for v in versions
        ]
        return ActionResult({"stateMachineVersions": items})

    # Only where moto lacks them: a moto that grows its own keeps it.
    if not hasattr(StepFunctionResponse, "validate_state_machine_definition"):
        StepFunctionResponse.validate_state_machine_definition = validate_state_machine_definition  # type: ignore[attr-defined]
    if not hasattr(StepFunctionResponse, "list_state_machine_versions"):
        StepFunctionResponse.list_state_machine_versions = list_state_machine_versions  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# EventBridge: rules that target state machines and Lambda functions.
# --------------------------------------------------------------------------------------------


def _normalised_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event as AWS delivers it: a unique id, an ISO-8601 `time`."""
    event = copy.deepcopy(event)
    if event.get("id") in (None, "", _MOTO_CONSTANT_EVENT_ID):
        # moto gives every S3 event the same id; derive one per event, the same for every rule.
        identity = json.dumps(
            [event.get("source"), event.get("time"), event.get("detail")],
            sort_keys=True,
            default=str,
        )
        event["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, identity))
    when = event.get("time")
    s3_object = event.get("detail", {}).get("object") if event.get("source") == "aws.s3" else None
    if isinstance(s3_object, dict) and isinstance(when, float):
        if s3_object.get("sequencer") == _MOTO_CONSTANT_SEQUENCER:
            s3_object["sequencer"] = f"{int(when * 1_000_000):016X}"  # grows with time, per key
    if isinstance(when, int | float):
        event["time"] = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event.pop("ingestion-time", None)
    return event


def _json_path(document: Any, path: str) -> Any:
    """The `$.a.b` subset of JSONPath that InputPath uses in practice."""
    if path in ("$", ""):
        return document
    value = document
    for part in path.removeprefix("$.").split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _target_input(target: dict[str, Any], event: dict[str, Any]) -> Any:
    from moto.events.utils import EventTemplateParser

    if target.get("Input"):
        return json.loads(target["Input"])
    if target.get("InputPath"):
        return _json_path(event, target["InputPath"])
    transformer = target.get("InputTransformer")
    if transformer:
        with_ingestion = dict(event, **{"ingestion-time": event.get("time")})
        return EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=with_ingestion,  # type: ignore[arg-type]
        )
    return event


def _start_execution(rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None:
    from moto.stepfunctions.responses import get_backend
    from moto.utilities.arns import parse_arn

    arn = parse_arn(target["Arn"])
    # Named after (event, rule, target): a redelivered event is the same execution.
    name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event['id']}|{rule.arn}|{target.get('Id')}"))
    execution_input = json.dumps(_target_input(target, event))
    execution = get_backend(arn.account, arn.region).start_execution(
        target["Arn"], name, execution_input
    )
    LOG.info("rule %s started %s", rule.name, execution.execution_arn)


def _invoke_target_lambda(target: dict[str, Any], event: dict[str, Any]) -> None:
    from moto.awslambda.utils import get_backend
    from moto.utilities.arns import parse_arn

    arn = parse_arn(target["Arn"])
    fn = get_backend(arn.account, arn.region).get_function(target["Arn"])
    invoke_async(fn, _target_input(target, event))


def _patch_events() -> None:
    from moto.events.models import Rule
    from moto.utilities.arns import parse_arn

    original_send_to_targets = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if getattr(self, "state", "ENABLED") == "DISABLED":
            return
        if not self.event_pattern.matches_event(original_event):
            return
        ours: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        for target in self.targets:
            service = parse_arn(target["Arn"]).service
            (ours if service in ("states", "lambda") else others).append(target)
        if others:
            moto_rule = copy.copy(self)
            moto_rule.targets = others
            original_send_to_targets(moto_rule, original_event, transform_input)
        if not ours:
            return
        event = _normalised_event(original_event)
        for target in ours:
            try:
                if parse_arn(target["Arn"]).service == "states":
                    _start_execution(self, target, event)
                else:
                    _invoke_target_lambda(target, event)
            except (
                Exception
            ) as exc:  # EventBridge delivery is asynchronous: the sender never sees it
                LOG.exception("rule %s could not deliver to %s", self.name, target["Arn"])
                dead_letter_queue = (target.get("DeadLetterConfig") or {}).get("Arn")
                if dead_letter_queue:
                    _send_to_queue(
                        dead_letter_queue,
                        event,
                        {
                            "ERROR_CODE": type(exc).__name__,
                            "ERROR_MESSAGE": str(exc)[:1000],
                            "RULE_ARN": self.arn,
                            "TARGET_ARN": target["Arn"],
                        },
                    )

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]


# --------------------------------------------------------------------------------------------
# The server process.
# --------------------------------------------------------------------------------------------


def apply_patches(
    port: int, code_paths: Iterable[Path], host: str = "127.0.0.1"
) -> LambdaWorkerPool:
    """Patch moto in this process for a server on host:port. Call before the server starts."""
    problems = check_moto_internals()
    if problems:
        raise RuntimeError(
            "The pinned moto changed internals devstack.emulator patches:\n  "
            + "\n  ".join(problems)
        )
    os.environ["MOTO_PORT"] = str(port)  # moto's Step Functions calls Lambda at localhost:MOTO_PORT
    pool = LambdaWorkerPool(list(code_paths), endpoint_url=f"http://{host}:{port}")
    _patch_lambda(pool)
    _patch_lambda_dropped_config()
    _patch_kms_rotation_period()
    _patch_s3_eventbridge_notification_readback()
    _patch_stepfunctions()
    _patch_events()
    _patch_s3_bucket_policies()
    _patch_s3_lifecycle_object_sizes()
    return pool


def serve(host: str, port: int, code_paths: Iterable[Path], exit_with_parent: bool = False) -> None:
    """Run the patched moto server in this process until SIGTERM or SIGINT.

    `exit_with_parent`: also stop when the process that started this one goes away (a test
    run killed mid-way must not leave a server behind).
    """
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    pool = apply_patches(port, code_paths, host)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if exit_with_parent:
        parent = os.getppid()

        def watch_parent() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            LOG.warning("parent process %s is gone: stopping", parent)
            server.shutdown()

        threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    LOG.info("emulated AWS listening on http://%s:%s", host, port)
    try:
        server.serve_forever()
    finally:
        pool.close()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--code-path",
        action="append",
        type=Path,
        help="directory put on the handlers' sys.path (repeatable; default: functions/)",
    )
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the starting process exits"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    serve(args.host, args.port, args.code_path or list(DEFAULT_CODE_PATHS), args.exit_with_parent)
    return 0


# --------------------------------------------------------------------------------------------
# The caller's side: start an emulator process and talk to it.
# --------------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_answering(endpoint_url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint_url}/moto-api/config", timeout=timeout) as reply:  # noqa: S310 - our own loopback URL
            return bool(reply.status in (200, 201))
    except (urllib.error.URLError, OSError):
        return False


def wait_until_answering(
    endpoint_url: str, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the emulator exited with status {process.returncode}")
        if is_answering(endpoint_url):
            return
        time.sleep(0.1)
    raise TimeoutError(f"the emulator at {endpoint_url} did not answer within {timeout:.0f} s")


@dataclass
class Emulator:
    """A running emulator process."""

    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    region: str = DEFAULT_REGION
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for this emulator (region us-east-1, test credentials)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_url,
            region_name=kwargs.pop("region_name", self.region),
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106 - the emulator's fixed test credentials
            config=kwargs.pop(
                "config", Config(retries={"max_attempts": 2, "mode": "standard"}, read_timeout=900)
            ),
            **kwargs,
        )

    def reset(self) -> None:
        """Forget every resource (moto's /moto-api/reset); the patches and warm workers stay."""
        url = f"{self.endpoint_url}/moto-api/reset"
        request = urllib.request.Request(url, method="POST")  # noqa: S310 - loopback http
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310 - loopback
            reply.read()

    def logs(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_emulator(
    port: int | None = None,
    host: str = "127.0.0.1",
    code_paths: Iterable[Path] = DEFAULT_CODE_PATHS,
    log_path: Path | None = None,
    detach: bool = False,
    timeout: float = 30.0,
) -> Emulator:
    """Start `python -m devstack.emulator` and wait until it answers.

    `detach=True` starts it in its own session so it outlives the caller (`devstack up`).
    """
    port = port or free_port(host)
    command = [sys.executable, "-m", "devstack.emulator", "--host", host, "--port", str(port)]
    if not detach:
        command.append("--exit-with-parent")
    for path in code_paths:
        command += ["--code-path", str(path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    log_file = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=env,
            cwd=str(REPO_ROOT),
            start_new_session=detach,
        )
    finally:
        if log_path:
            with contextlib.suppress(Exception):
                log_file.close()  # type: ignore[union-attr]
    emulator = Emulator(host=host, port=port, process=process, log_path=log_path)
    try:
        wait_until_answering(emulator.endpoint_url, timeout, process)
    except (RuntimeError, TimeoutError):
        emulator.stop()
        raise RuntimeError(
            f"the emulator did not start on {emulator.endpoint_url}:\n{emulator.logs()[-4000:]}"
        ) from None
    return emulator


if __name__ == "__main__":
    sys.exit(main())
