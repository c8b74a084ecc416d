"""The host-subprocess Lambda executor's runtime loop (devstack/localstack/executor,
bootstrap.py), without LocalStack: the answers LocalStack turns into Invoke results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BOOTSTRAP = (Path(__file__).resolve().parents[2] / "devstack" / "localstack" / "executor"
             / "pqfile_localstack_executor" / "bootstrap.py")

HANDLER = '''
import os

class Refused(Exception):
    pass

def main(event, context):
    print("log line from the handler")
    if event.get("refuse"):
        raise Refused("not this one")
    return {"event": event, "function": context.function_name,
            "request": context.aws_request_id,
            "remaining": context.get_remaining_time_in_millis() > 0,
            "task_root": os.environ["LAMBDA_TASK_ROOT"]}
'''


class Environment:
    def __init__(self, code: Path, handler: str) -> None:
        request_read, self._request_write = os.pipe()
        self._response_read, response_write = os.pipe()
        self.log = code / "out.log"
        env = {"PATH": os.environ["PATH"], "_HANDLER": handler, "PYTHONPATH": str(code),
               "LAMBDA_TASK_ROOT": str(code), "AWS_LAMBDA_FUNCTION_NAME": "fn"}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-s", str(BOOTSTRAP), str(request_read), str(response_write)],
                cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(request_read, response_write),
            )
        os.close(request_read)
        os.close(response_write)
        self.requests = os.fdopen(self._request_write, "w")
        self.responses = os.fdopen(self._response_read, "r")

    def invoke(self, payload: Any, request_id: str = "r-1") -> dict[str, Any]:
        request = {"request_id": request_id, "arn": "arn:aws:lambda:us-east-1:0:function:fn",
                   "payload": json.dumps(payload), "deadline_ms": 2**42}
        self.requests.write(json.dumps(request) + "\n")
        self.requests.flush()
        return dict(json.loads(self.responses.readline()))

    def close(self) -> int:
        self.requests.close()
        code = self.process.wait(timeout=10)
        self.responses.close()
        return code


@pytest.fixture
def environment(tmp_path: Path) -> Iterator[Environment]:
    (tmp_path / "app.py").write_text(HANDLER)
    env = Environment(tmp_path, "app.main")
    yield env
    if env.process.poll() is None:
        env.close()


def test_result_is_the_handlers_json_and_context_is_lambdas(environment: Environment) -> None:
    answer = environment.invoke({"a": 1}, request_id="req-7")
    assert answer["ok"] is True
    result = json.loads(answer["payload"])
    assert result["event"] == {"a": 1}
    assert result["function"] == "fn" and result["request"] == "req-7"
    assert result["remaining"] is True
    # The environment stays warm: a second invocation in the same process.
    assert environment.invoke({"b": 2})["ok"] is True
    assert environment.close() == 0
    assert "log line from the handler" in environment.log.read_text()


def test_exception_gives_lambdas_error_object_with_the_class_name(
    environment: Environment,
) -> None:
    answer = environment.invoke({"refuse": True})
    assert answer["ok"] is False
    assert answer["error"]["errorType"] == "Refused"
    assert answer["error"]["errorMessage"] == "not this one"
    assert any("raise Refused" in line for line in answer["error"]["stackTrace"])
    assert environment.invoke({})["ok"] is True, "one failed invocation must not end the runtime"


def test_a_handler_that_cannot_be_imported_fails_every_invocation(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    env = Environment(tmp_path, "broken.main")
    answer = env.invoke({})
    assert answer["ok"] is False
    assert answer["error"]["errorType"] == "ModuleNotFoundError"
    assert env.close() == 0
