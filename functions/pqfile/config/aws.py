"""Where AWS is (endpoint, region) and whether X-Ray traces: read by every function's
client factory at cold start, so this module stays small."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pqfile.config._base import DEFAULT_SERVICE, _environ


@dataclass(frozen=True)
class AwsSettings:
    #: The emulator's endpoint on the local stack; None on AWS.
    endpoint_url: str | None = None
    region: str = "us-east-1"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AwsSettings:
        e = _environ(env)
        return cls(
            endpoint_url=e.get("AWS_ENDPOINT_URL") or None,
            region=e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or cls.region,
        )


@dataclass(frozen=True)
class ObservabilitySettings:
    service: str = DEFAULT_SERVICE
    #: X-Ray runs only on AWS: tracing is off where an endpoint (the emulator) is set.
    tracing: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ObservabilitySettings:
        e = _environ(env)
        return cls(
            service=e.get("POWERTOOLS_SERVICE_NAME", DEFAULT_SERVICE),
            tracing=AwsSettings.from_env(e).endpoint_url is None,
        )
