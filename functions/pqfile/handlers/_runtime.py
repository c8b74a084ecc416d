"""What every handler shares: the Powertools objects and the :func:`entry_point` decorator.

The adapters a handler's use case needs come from the composition root, pqfile.wiring.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from pqfile.config import ObservabilitySettings

_OBSERVABILITY = ObservabilitySettings.from_env()
SERVICE = _OBSERVABILITY.service
logger = Logger(service=SERVICE)
# The X-Ray daemon exists only on AWS; elsewhere Powertools' own settings decide.
tracer = Tracer(service=SERVICE, disabled=True if not _OBSERVABILITY.tracing else None)
metrics = Metrics(namespace="PQFile", service=SERVICE)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def entry_point(handler: Handler) -> Handler:
    """A Lambda entry point: the Lambda context in every log line, a trace segment, the
    metrics flushed as EMF, and the invocation's own CPU and wall time added to the answer
    (``compute_ms``, ``duration_ms``: the benchmarks read them)."""

    @functools.wraps(handler)
    def timed(event: dict[str, Any], context: Any) -> dict[str, Any]:
        cpu, wall = time.process_time(), time.perf_counter()
        result = handler(event, context)
        result["compute_ms"] = round((time.process_time() - cpu) * 1000, 3)
        result["duration_ms"] = round((time.perf_counter() - wall) * 1000, 3)
        return result

    measured: Handler = metrics.log_metrics(timed)
    traced: Handler = tracer.capture_lambda_handler(capture_response=False)(measured)
    logged: Handler = logger.inject_lambda_context(log_event=False)(traced)
    return logged


def count(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count) -> None:
    """Add one metric to this invocation's EMF document."""
    metrics.add_metric(name=name, unit=unit, value=value)


def publish_pool_size(suite: str, active: int) -> None:
    """KeyPoolActiveKeys (dimensions service, suite): what the key-pool-low alarm watches.
    Its own EMF document, so the suite dimension does not attach to the handler's metrics."""
    with single_metric(
        name="KeyPoolActiveKeys",
        unit=MetricUnit.Count,
        value=active,
        namespace=metrics.namespace,
        default_dimensions={"service": SERVICE},
    ) as metric:
        metric.add_dimension(name="suite", value=suite)


def count_lost_events(lost: int) -> None:
    """EventsNotDelivered (dimension service only, whatever the handler adds): completion
    events PutEvents refused after its retries (docs/OPERATIONS.md, "Following a document")."""
    if lost <= 0:
        return
    with single_metric(
        name="EventsNotDelivered",
        unit=MetricUnit.Count,
        value=lost,
        namespace=metrics.namespace,
        default_dimensions={"service": SERVICE},
    ):
        pass


def request_id(context: Any) -> str | None:
    return getattr(context, "aws_request_id", None)
