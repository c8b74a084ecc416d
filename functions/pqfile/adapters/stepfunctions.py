"""Step Functions for the operator's commands: start a workflow execution and follow it
(`pqfile keys rotate` starts rotate-keys). ClientError and connection failures become
WorkflowError, one line, for the CLI to print."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pqfile.errors import PQFileError

#: Statuses after which an execution never changes again.
FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


class WorkflowError(PQFileError):
    """Step Functions refused a call, or could not be reached."""


@dataclass(frozen=True)
class Execution:
    """What DescribeExecution says about one execution (output parsed when it succeeded)."""

    arn: str
    status: str
    output: dict[str, Any] | None = None
    error: str | None = None
    cause: str | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES


@contextmanager
def _errors(what: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "")) or "ClientError"
        raise WorkflowError(f"{what}: {code}") from None
    except BotoCoreError as exc:
        raise WorkflowError(f"{what}: {type(exc).__name__}") from None


def execution_name(prefix: str, now: dt.datetime | None = None) -> str:
    """A unique execution name (Step Functions keeps names for 90 days): prefix, UTC time,
    random suffix; at most 80 characters of [A-Za-z0-9-_]."""
    at = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{prefix}-{at}-{secrets.token_hex(4)}"[:80]


class StepFunctionsWorkflow:
    """One state machine: start executions of it, describe them."""

    def __init__(self, state_machine_arn: str, client: Any = None) -> None:
        self.state_machine_arn = state_machine_arn
        self._client = client

    @property
    def sfn(self) -> Any:
        if self._client is None:
            from pqfile.adapters.aws import client

            self._client = client("stepfunctions")
        return self._client

    def start(self, name: str, payload: dict[str, Any]) -> str:
        """StartExecution; returns the execution ARN."""
        with _errors("start the workflow"):
            resp = self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(payload)
            )
        return str(resp["executionArn"])

    def describe(self, execution_arn: str) -> Execution:
        with _errors("describe the execution"):
            resp = self.sfn.describe_execution(executionArn=execution_arn)
        output = None
        if resp.get("status") == "SUCCEEDED" and resp.get("output"):
            try:
                parsed = json.loads(resp["output"])
            except ValueError:
                parsed = None
            output = parsed if isinstance(parsed, dict) else None
        return Execution(
            arn=execution_arn,
            status=str(resp.get("status", "")),
            output=output,
            error=resp.get("error"),
            cause=resp.get("cause"),
        )
