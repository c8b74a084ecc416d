"""What every handler shares: Powertools objects and the adapters, built once per process.

Importing a handler is cheap: the database connection, KMS and S3 clients are created on
first use and then reused by every warm invocation of the execution environment.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from pqfile.config import Settings
from pqfile.errors import CustodyError
from pqfile.usecases.common import Pipeline

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "pqfile")
logger = Logger(service=SERVICE)
# The X-Ray daemon exists only on AWS; the local stack sets AWS_ENDPOINT_URL.
tracer = Tracer(service=SERVICE, disabled=bool(os.environ.get("AWS_ENDPOINT_URL")) or None)
metrics = Metrics(namespace="PQFile", service=SERVICE)



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


_lock = threading.Lock()
_pipeline: Pipeline | None = None

F = TypeVar("F", bound=Callable[..., Any])


class _NoKms:
    """Stands in for KMS in functions that have no key configured (fetch, store, audit)."""

    def wrap(self, seed: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        raise CustodyError("this function has no KMS key configured (PQFILE_KMS_KEY_ID)")

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        raise CustodyError("this function has no KMS key configured (PQFILE_KMS_KEY_ID)")


class CryptoCipher:
    """pqfile.crypto's streaming PQF functions behind the use cases' PackageCipher port."""

    def encrypt_stream(
        self,
        src: Any,
        dst: Any,
        recipient: Any,
        context: Mapping[str, str],
        *,
        segment_size: int,
        document_id: str,
    ) -> object:
        from pqfile.crypto import envelope

        return envelope.encrypt_stream(
            src, dst, recipient, context=context, segment_size=segment_size, document_id=document_id
        )

    def decrypt_stream(
        self, src: Any, dst: Any, identity: Any, *, document_id: str | None
    ) -> object:
        from pqfile.crypto import envelope

        return envelope.decrypt_stream(
            src, dst, identity, expected_document_id=document_id
        )

    def package_ids(self, src: Any) -> tuple[str, str]:
        from pqfile.crypto import envelope

        header = envelope.read_header(src)
        return header.key_id, header.document_id.decode("utf-8", "replace")


def pipeline() -> Pipeline:
    """The process-wide Pipeline (adapters created on first use)."""
    global _pipeline
    if _pipeline is None:
        with _lock:
            if _pipeline is None:
                _pipeline = _build()
    return _pipeline


def _build() -> Pipeline:
    from pqfile.adapters.postgres.audit import PostgresAuditLog
    from pqfile.adapters.postgres.connection import Database
    from pqfile.adapters.postgres.documents import PostgresDocumentRepository
    from pqfile.adapters.postgres.keystore import PostgresKeyStore
    from pqfile.adapters.s3 import S3BlobStore

    settings = Settings.from_env()
    db = Database.from_env()
    protector: Any
    if settings.kms_key_id:
        from pqfile.adapters.kms import KmsSeedProtector

        protector = KmsSeedProtector.from_env()
    else:
        protector = _NoKms()
    return Pipeline(
        settings=settings,
        blobs=S3BlobStore(part_size=settings.part_size),
        documents=PostgresDocumentRepository(db),
        keys=PostgresKeyStore(db, protector, actor="pqfile-ingest"),
        audit=PostgresAuditLog(db),
        cipher=CryptoCipher(),
    )


def reset() -> None:
    """Forget the cached pipeline (tests)."""
    global _pipeline
    _pipeline = None


def request_id(context: Any) -> str | None:
    return getattr(context, "aws_request_id", None)


def timed(result: dict[str, Any], started_cpu: float, started_wall: float) -> dict[str, Any]:
    """Add the invocation's own CPU and wall time (bench: handler compute per document)."""
    result["compute_ms"] = round((time.process_time() - started_cpu) * 1000, 3)
    result["duration_ms"] = round((time.perf_counter() - started_wall) * 1000, 3)
    return result


def clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()
