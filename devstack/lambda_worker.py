"""One warm "Lambda container" for the emulator: runs a handler from the source tree.

Started by `devstack.lambda_pool` as `python lambda_worker.py HANDLER CODE_PATH...` (or
`python -m devstack.lambda_worker ...`) with the function's environment already set.
Uses the standard library only, so it never drags the emulator's imports into a handler.

Protocol (one JSON object per line):
  worker -> parent, once:  {"ready": true, "init_error": null | {errorType, errorMessage}}
  parent -> worker:        {"request_id", "invoked_function_arn", "timeout_ms"}  then
                           the event, JSON-encoded, on the next line
  worker -> parent:        {"errored": bool, "payload": "<JSON text>", "logs": "..."}

The handler's stdout and stderr (file descriptors 1 and 2, so C extensions too) go to an
unlinked temporary file; each reply carries what the invocation wrote there.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO


class LambdaContext:
    """The attributes of the AWS Lambda Python runtime's context object that code reads."""

    def __init__(self, request_id: str, invoked_function_arn: str, timeout_ms: int) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.invoked_function_arn = invoked_function_arn
        self.aws_request_id = request_id
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _error(exc: BaseException, request_id: str = "") -> dict[str, Any]:
    """The payload the Python runtime returns for an unhandled exception."""
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(
            [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
        ),
    }


def _load_handler(handler: str) -> Callable[[Any, LambdaContext], Any]:
    module_name, _, function_name = handler.rpartition(".")
    if not module_name:
        raise ValueError(f"Bad handler '{handler}': expected module.function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the runtime reports any import failure this way
        raise _RuntimeError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise _RuntimeError(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        )
    return function  # type: ignore[no-any-return]


class _RuntimeError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type

    def payload(self) -> dict[str, Any]:
        return {"errorMessage": str(self), "errorType": self.error_type}


class _LogCapture:
    """Points fds 1 and 2 at an unlinked file; `take()` returns what was written since."""

    def __init__(self) -> None:
        fd, path = tempfile.mkstemp(prefix="lambda-worker-", suffix=".log")
        os.unlink(path)
        self._fd = fd
        self._offset = 0
        os.dup2(fd, 1)
        os.dup2(fd, 2)

    @property
    def offset(self) -> int:
        return self._offset

    def take(self) -> str:
        sys.stdout.flush()
        sys.stderr.flush()
        end = os.fstat(self._fd).st_size
        data = os.pread(self._fd, end - self._offset, self._offset) if end > self._offset else b""
        self._offset = end
        return data.decode("utf-8", errors="replace")


def _write(out: BinaryIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message).encode("utf-8") + b"\n")
    out.flush()


def main(argv: list[str]) -> int:
    handler_name, code_paths = argv[0], argv[1:]
    for path in reversed(code_paths):
        if path not in sys.path:
            sys.path.insert(0, path)

    protocol_in = sys.stdin.buffer
    protocol_out = os.fdopen(os.dup(1), "wb")
    sys.stdin = open(os.devnull)
    capture = _LogCapture()

    handler: Callable[[Any, LambdaContext], Any] | None = None
    init_error: dict[str, Any] | None = None
    try:
        handler = _load_handler(handler_name)
    except _RuntimeError as exc:
        init_error = exc.payload()
    except Exception as exc:  # noqa: BLE001 - reported to the caller, as Lambda's init does
        init_error = _error(exc)
    ready = {"ready": True, "init_error": init_error, "logs": capture.take()}
    _write(protocol_out, {**ready, "log_end": capture.offset})

    while True:
        header_line = protocol_in.readline()
        event_line = protocol_in.readline()
        if not header_line or not event_line:
            return 0
        request = json.loads(header_line)
        request_id = request["request_id"]
        if handler is None:
            reply = {"errored": True, "payload": json.dumps(init_error), "logs": ""}
            _write(protocol_out, reply)
            continue
        context = LambdaContext(request_id, request["invoked_function_arn"], request["timeout_ms"])
        try:
            result = handler(json.loads(event_line), context)
            try:
                payload, errored = json.dumps(result), False
            except (TypeError, ValueError) as exc:
                marshal = _RuntimeError(
                    "Runtime.MarshalError", f"Unable to marshal response: {exc}"
                )
                payload, errored = json.dumps(marshal.payload()), True
        except Exception as exc:  # noqa: BLE001 - a handler's exception is the function's error
            traceback.print_exc()
            payload, errored = json.dumps(_error(exc, request_id)), True
        logs = capture.take()
        reply = {"errored": errored, "payload": payload, "logs": logs, "log_end": capture.offset}
        _write(protocol_out, reply)


if __name__ == "__main__":
    # Run as a script, sys.path[0] is devstack/: drop it so its modules never shadow a handler's.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    sys.exit(main(sys.argv[1:]))
