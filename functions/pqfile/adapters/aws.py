"""boto3 clients built once per process (per Lambda execution environment).

botocore honours ``AWS_ENDPOINT_URL`` itself; we pass it explicitly as well so a client built
before the variable changed (tests) still points where the settings say: the endpoint and
region (``pqfile.config.AwsSettings``) are read on every call, the client is cached per pair.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from pqfile.config import AwsSettings

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_s3 import S3Client

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=5,
    read_timeout=60,
    signature_version="s3v4",
)


def endpoint_url() -> str | None:
    return AwsSettings.from_env().endpoint_url


# One session for every client of the process: a session loads the endpoint and partition
# data, which a second session would load again (about half the cost of a client; issue 15,
# cold init). Sessions are not thread-safe, so clients are created under a lock.
_session_lock = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@functools.cache
def _client(service: str, endpoint: str | None, region: str | None) -> Any:
    with _session_lock:
        return _session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=endpoint,
            region_name=region,
            config=_CONFIG,
        )


def client(service: str) -> Any:
    """A cached client for ``service`` at the configured endpoint and region."""
    aws = AwsSettings.from_env()
    return _client(service, aws.endpoint_url, aws.region)


def s3_client() -> S3Client:
    c: S3Client = client("s3")
    return c


class LazyS3:
    """Base of the S3 adapters: the client given at construction (tests), else the process's
    shared one, created on first use so that building an adapter costs nothing."""

    def __init__(self, client: S3Client | None = None) -> None:
        self._client = client

    @property
    def s3(self) -> S3Client:
        if self._client is None:
            self._client = s3_client()
        return self._client


def kms_client() -> KMSClient:
    c: KMSClient = client("kms")
    return c


def reset_clients() -> None:
    """Forget cached clients (tests that move the endpoint)."""
    _client.cache_clear()
    _session.cache_clear()
