"""What every handler shares: the Powertools objects, the :func:`entry_point` decorator, and
the SnapStart runtime hooks (:func:`preload`, :func:`reseed_after_restore`).

The adapters a handler's use case needs come from the composition root, pqfile.wiring.
Handler modules import their use case on the first invocation (issue 15, cold init), and
name it with :func:`preload` so that a SnapStart function imports it before its snapshot.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics, Tracer

NAMESPACE = "PQFile"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class Tools:
    logger: Logger
    tracer: Tracer
    metrics: Metrics
    service: str


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

                from pqfile.config import ObservabilitySettings

                observability = ObservabilitySettings.from_env()
                service = observability.service
                # The X-Ray daemon exists only on AWS; elsewhere Powertools' settings decide.
                tracer = Tracer(
                    service=service, disabled=True if not observability.tracing else None
                )
                _tools = Tools(
                    logger=Logger(service=service),
                    tracer=tracer,
                    metrics=Metrics(namespace=NAMESPACE, service=service),
                    service=service,
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
        default_dimensions={"service": prepare().service},
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
        default_dimensions={"service": prepare().service},
    ):
        pass


def request_id(context: Any) -> str | None:
    return getattr(context, "aws_request_id", None)


# SnapStart (docs/OPERATIONS.md, "SnapStart"). Lambda runs the hooks of the Snapshot Restore
# for Python library (`snapshot_restore_py`, part of the managed Python runtimes; absent
# here and in tests, where nothing is ever snapshotted): before-snapshot hooks once, in the
# initialisation that Lambda snapshots; after-restore hooks in every restored environment.


def _register(hook_name: str, hook: Callable[[], None]) -> bool:
    """Register ``hook`` with the runtime's SnapStart library; False where it is absent."""
    try:
        hooks = importlib.import_module("snapshot_restore_py")
    except ImportError:
        return False
    getattr(hooks, hook_name)(hook)
    return True


def preload(*modules: str) -> None:
    """Name the modules a handler imports on its first invocation. A function without
    SnapStart pays for them on that invocation, after init (issue 15: cold init); a SnapStart
    function imports them before its snapshot, with the Powertools objects, so a restore
    starts with them loaded. tests/unit/test_handler_lazy_imports.py checks every handler's
    list against the imports in its body."""

    def load() -> None:
        for module in modules:
            importlib.import_module(module)
        prepare()

    _register("register_before_snapshot", load)


def reseed_after_restore() -> None:
    """What a restored environment must redraw (AWS: "Handling uniqueness with Lambda
    SnapStart"): every restore resumes the same memory with the same process id, and
    OpenSSL notices a new process only by its id (tests/unit/test_fork_restore.py shows two
    same-pid restores repeating each other's output). Reseeded here from the kernel, which
    Lambda reseeds on restore:

    - the runtime's OpenSSL, which Python's ``ssl`` uses for TLS (S3, KMS, the database):
      ``RAND_add`` reseeds its primary generator with fresh entropy plus these bytes, and
      the per-thread generators reseed from it on their next draw;
    - Python's ``random`` module (botocore's retry jitter), if loaded.

    Not reachable from Python: the OpenSSL that pyca/cryptography links statically into
    its own module. It offers no reseed call, so functions that encapsulate with pyca never
    use SnapStart (terraform/snapstart.tf); keys, data keys, salts and nonce prefixes come
    from os.urandom, the kernel."""
    import ssl
    import sys

    ssl.RAND_add(os.urandom(48), 48.0)
    rng = sys.modules.get("random")
    if rng is not None:
        rng.seed()


_register("register_after_restore", reseed_after_restore)
