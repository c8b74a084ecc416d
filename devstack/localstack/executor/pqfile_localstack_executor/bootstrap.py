"""The Lambda runtime loop inside one host subprocess (an execution environment).

Run by the executor as ``python3.12 -s bootstrap.py REQUEST_FD RESPONSE_FD`` with the
function's environment, ``PYTHONPATH`` = the unpacked code and layers, and the working
directory = the unpacked code. Imports stdlib only before the handler (this file is not part
of the function). One JSON line per invocation on REQUEST_FD (``{"request_id", "arn",
"payload", "deadline_ms"}``); one JSON line per answer on RESPONSE_FD (``{"ok": true,
"payload": ...}`` or ``{"ok": false, "error": {"errorMessage", "errorType",
"stackTrace"}}``, the shape AWS Lambda gives, so a state machine's Catch matches the
exception class name). The handler's stdout and stderr are the environment's log.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any


class LambdaContext:
    """The attributes of AWS Lambda's context object that handlers and Powertools read."""

    def __init__(self, request_id: str, arn: str, deadline_ms: int) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": traceback.format_exception(exc)[1:],
    }


def _load_handler() -> Any:
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    module = importlib.import_module(module_name.replace("/", "."))
    return getattr(module, function_name)


def main() -> int:
    requests = os.fdopen(int(sys.argv[1]), "r", encoding="utf-8")
    responses = os.fdopen(int(sys.argv[2]), "w", encoding="utf-8")
    try:
        handler = _load_handler()
        init_error: dict[str, Any] | None = None
    except Exception as exc:  # noqa: BLE001 - reported to the caller as Lambda does
        traceback.print_exc()
        handler, init_error = None, _error(exc)
    for line in requests:
        request = json.loads(line)
        os.environ["_X_AMZN_TRACE_ID"] = request.get("trace_id") or ""
        if init_error is not None:
            answer: dict[str, Any] = {"ok": False, "error": init_error}
        else:
            context = LambdaContext(request["request_id"], request["arn"], request["deadline_ms"])
            try:
                event = json.loads(request["payload"]) if request["payload"] else {}
                result = handler(event, context)
                answer = {"ok": True, "payload": json.dumps(result)}
            except Exception as exc:  # noqa: BLE001 - reported to the caller as Lambda does
                traceback.print_exc()
                answer = {"ok": False, "error": _error(exc)}
        sys.stdout.flush()
        sys.stderr.flush()
        responses.write(json.dumps(answer) + "\n")
        responses.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
