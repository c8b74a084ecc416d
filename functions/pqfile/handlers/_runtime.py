"""What every handler shares: the Powertools objects and the :func:`entry_point` decorator.

The adapters a handler's use case needs come from the composition root, pqfile.wiring.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from pqfile.config import ObservabilitySettings

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics, Tracer

_OBSERVABILITY = ObservabilitySettings.from_env()
SERVICE = _OBSERVABILITY.service
NAMESPACE = "PQFile"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class Tools:
    logger: Logger
    tracer: Tracer
    metrics: Metrics


_tools: Tools | None = None
_tools_lock = threading.Lock()


def prepare() -> Tools:
    """The Powertools objects, built on first use, once per process (issue 15: nothing at
    import). Powertools and, with tracing on, the X-Ray SDK (over 100 ms of imports) are
    loaded here, so a handler module imports in a few milliseconds and the cost falls on
    the first invocation, which records the first segment."""
    global _tools
    tools = _tools
    if tools is None:
        with _tools_lock:
            if _tools is None:
                from aws_lambda_powertools import Logger, Metrics, Tracer

                # The X-Ray daemon exists only on AWS; elsewhere Powertools' settings decide.
                tracer = Tracer(
                    service=SERVICE, disabled=True if not _OBSERVABILITY.tracing else None
                )
                _tools = Tools(
                    logger=Logger(service=SERVICE),
                    tracer=tracer,
                    metrics=Metrics(namespace=NAMESPACE, service=SERVICE),
                )
            tools = _tools
    return tools


class _Deferred:
    """Stands for one of the Powertools objects until it exists: attribute access builds
    them (:func:`prepare`) and forwards."""

    def __init__(self, field: str) -> None:
        self._field = field

    def __getattr__(self, name: str) -> Any:
        return getattr(getattr(prepare(), self._field), name)


logger = cast("Logger", _Deferred("logger"))
metrics = cast("Metrics", _Deferred("metrics"))
tracer = cast("Tracer", _Deferred("tracer"))


def entry_point(handler: Handler) -> Handler:
    """A Lambda entry point: the Lambda context in every log line, a trace segment, the
    metrics flushed as EMF, and the invocation's own CPU and wall time added to the answer
    (``compute_ms``, ``duration_ms``: the benchmarks read them). The decorators are applied
    on the first invocation (:func:`prepare`), not at import."""

    @functools.wraps(handler)
    def timed(event: dict[str, Any], context: Any) -> dict[str, Any]:
        cpu, wall = time.process_time(), time.perf_counter()
        result = handler(event, context)
        result["compute_ms"] = round((time.process_time() - cpu) * 1000, 3)
        result["duration_ms"] = round((time.perf_counter() - wall) * 1000, 3)
        return result

    wrapped: Handler | None = None

    @functools.wraps(handler)
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        nonlocal wrapped
        if wrapped is None:
            tools = prepare()
            measured: Handler = tools.metrics.log_metrics(timed)
            traced: Handler = tools.tracer.capture_lambda_handler(capture_response=False)(measured)
            wrapped = tools.logger.inject_lambda_context(log_event=False)(traced)
        return wrapped(event, context)

    return lambda_handler


def count(name: str, value: float = 1, unit: str = "Count") -> None:
    """Add one metric to this invocation's EMF document (``unit``: a CloudWatch unit name,
    e.g. "Count", "Bytes")."""
    metrics.add_metric(name=name, unit=unit, value=value)


def publish_pool_size(suite: str, active: int) -> None:
    """KeyPoolActiveKeys (dimensions service, suite): what the key-pool-low alarm watches.
    Its own EMF document, so the suite dimension does not attach to the handler's metrics."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(
        name="KeyPoolActiveKeys",
        unit=MetricUnit.Count,
        value=active,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE},
    ) as metric:
        metric.add_dimension(name="suite", value=suite)


def count_lost_events(lost: int) -> None:
    """EventsNotDelivered (dimension service only, whatever the handler adds): completion
    events PutEvents refused after its retries (docs/OPERATIONS.md, "Following a document")."""
    if lost <= 0:
        return
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(
        name="EventsNotDelivered",
        unit=MetricUnit.Count,
        value=lost,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE},
    ):
        pass


def request_id(context: Any) -> str | None:
    return getattr(context, "aws_request_id", None)
