"""Lambda: run the function's real handler, from the source tree, in a warm worker subprocess.

moto runs a function's code only in Docker (`use_docker: false` merely echoes the event).
This replaces the one method every invocation path goes through,
`moto.awslambda.models.LambdaFunction._invoke_lambda(self, event) -> (payload, errored,
logs)`, with a call into `devstack.lambda_pool`: one warm worker per function and
configuration, the function's own environment, Lambda's timeout, error payloads shaped like
the Python runtime's (so an ASL `Catch` matches the exception class name), and the
invocation's output written to the function's CloudWatch log group.

Upstream-worthy: no. Running handlers from a local source tree with the local virtualenv
(the deployed zip holds aarch64 wheels) is what this stack needs, not an emulation gap.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from devstack.lambda_pool import FunctionSpec
from devstack.moto_patches._internals import Runtime, checking, parameters

LOG = logging.getLogger("devstack.emulator")

# What the worker pool reads from moto's LambdaFunction.
_LAMBDA_FUNCTION_ATTRIBUTES = " ".join(
    [
        "environment_vars handler timeout memory_size function_name run_time region",
        "account_id logs_backend logs_group_name version function_arn",
    ]
).split()


def check() -> None:
    with checking(__name__) as expect:
        from moto.awslambda.models import LambdaFunction

        expect(
            parameters(LambdaFunction._invoke_lambda) == ["self", "event"],
            "moto.awslambda.models.LambdaFunction._invoke_lambda(self, event) changed signature",
        )
        expect(
            parameters(LambdaFunction.save_logs) == ["self", "output"],
            "moto.awslambda.models.LambdaFunction.save_logs(self, output) changed signature",
        )
        init_source = inspect.getsource(LambdaFunction.__init__)
        for attribute in _LAMBDA_FUNCTION_ATTRIBUTES:
            expect(
                f"self.{attribute} =" in init_source or f"self.{attribute}:" in init_source,
                f"LambdaFunction.__init__ no longer sets self.{attribute}",
            )


def function_spec(fn: Any) -> FunctionSpec:
    """What the worker pool starts a worker for, from moto's LambdaFunction."""
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


def log_text(spec: FunctionSpec, request_id: str, output: str, duration_ms: float) -> str:
    """The invocation's log as Lambda writes it: START, the output, END, REPORT."""
    lines = [f"START RequestId: {request_id} Version: {spec.version}"]
    lines.extend(output.splitlines())
    lines.append(f"END RequestId: {request_id}")
    lines.append(
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Memory Size: {spec.memory_mb} MB"
    )
    return "\n".join(lines)


def apply(runtime: Runtime) -> None:
    from moto.awslambda.models import LambdaFunction

    pool = runtime.pool

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        spec = function_spec(self)
        result = pool.invoke(spec, {} if event is None else event)
        logs = log_text(spec, result.request_id, result.logs, result.duration_ms)
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

    LambdaFunction._invoke_lambda = _invoke_lambda  # type: ignore[method-assign]
