"""Lambda: `Event` invocations run in the background, with Lambda's retries and destinations.

moto runs an `InvocationType=Event` invocation synchronously inside the request, never
retries it, and drops its outcome; S3 -> Lambda notifications likewise run inside the PUT
that triggered them. This patch replaces `LambdaFunction.invoke` and
`moto.s3.notifications._invoke_awslambda` so that, as on AWS, an asynchronous invocation:

- returns at once (202) and runs on a background thread;
- is retried on a function error (the function's `MaximumRetryAttempts`, default 2; seconds
  apart locally instead of minutes);
- sends its outcome record to the `OnSuccess`/`OnFailure` SQS destination of the function's
  event-invoke config, and a failed event to the function's `DeadLetterConfig` queue.

A synchronous invocation also gets the last 4 KB of its log in `x-amz-log-result`, and
`DryRun` returns without running anything.

Upstream-worthy: yes. Asynchronous invocation semantics (immediate return, retries,
destinations, dead-letter queue) are a moto gap independent of how the handler runs.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from devstack.moto_patches._internals import Runtime, checking, parameters
from devstack.moto_patches._sqs import expect_send_message, send_to_queue

LOG = logging.getLogger("devstack.emulator")

LOG_TAIL_BYTES = 4096  # Lambda's x-amz-log-result carries the last 4 KB
ASYNC_RETRY_DELAYS = (1.0, 2.0)  # AWS waits about 1 and 2 minutes; locally, seconds


def check() -> None:
    with checking(__name__) as expect:
        from moto.awslambda.models import LambdaFunction
        from moto.s3 import notifications

        expect(
            parameters(LambdaFunction.invoke)
            == ["self", "body", "request_headers", "response_headers"],
            "moto.awslambda.models.LambdaFunction.invoke(self, body, request_headers, "
            "response_headers) changed signature",
        )
        expect(
            parameters(LambdaFunction._invoke_lambda) == ["self", "event"],
            "moto.awslambda.models.LambdaFunction._invoke_lambda(self, event) changed signature",
        )
        init_source = inspect.getsource(LambdaFunction.__init__)
        expect(
            "self.event_invoke_config" in init_source,
            "LambdaFunction.__init__ no longer sets self.event_invoke_config",
        )
        expect(
            "self.function_name =" in init_source and "self.function_arn" in init_source,
            "LambdaFunction.__init__ no longer sets self.function_name / self.function_arn",
        )
        expect(
            parameters(notifications._invoke_awslambda)
            == ["account_id", "event_body", "fn_arn", "region_name"],
            "moto.s3.notifications._invoke_awslambda(account_id, event_body, fn_arn, "
            "region_name) changed signature",
        )
        expect(
            "_invoke_awslambda(" in inspect.getsource(notifications.send_event),
            "moto.s3.notifications.send_event no longer calls _invoke_awslambda",
        )
        expect_send_message(expect)


def apply(runtime: Runtime) -> None:
    from moto.awslambda.models import LambdaFunction
    from moto.s3 import notifications

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

    LambdaFunction.invoke = invoke  # type: ignore[method-assign]
    notifications._invoke_awslambda = _invoke_awslambda


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        lowered = {str(k).lower(): v for k, v in headers.items()}
        value = lowered.get(name.lower())
    return None if value is None else str(value)


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
        send_to_queue(destination, record)
    dead_letter_queue = (getattr(fn, "dead_letter_config", None) or {}).get("TargetArn")
    if errored and dead_letter_queue:
        error = response if isinstance(response, dict) else {}
        send_to_queue(
            dead_letter_queue,
            event,
            {
                "RequestID": request_id,
                "ErrorCode": "200",
                "ErrorMessage": str(error.get("errorMessage", payload))[:1000],
            },
        )
