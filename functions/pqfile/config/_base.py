"""What every settings module shares: the pipeline's constants, the error, and the strict
parsers of environment values. The only module of ``functions/`` that reads ``os.environ``
(through :func:`_environ`). It imports nothing heavy: ``pqfile.adapters.aws`` loads it (with
:mod:`pqfile.config.aws`) at every cold start (issue 15).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pqfile.crypto.suite_names import SuiteName as Suite
from pqfile.errors import PQFileError

MIB = 1024 * 1024

#: Prefixes the pipeline owns (docs/DESIGN.md, "The job").
UPLOADS_PREFIX = "uploads/"
ENCRYPTED_PREFIX = "encrypted/"
RETRIEVALS_PREFIX = "retrievals/"

#: Largest plaintext returned inline by retrieve: 4 MiB raw is 5.33 MiB of base64, which
#: leaves room for the JSON envelope under Lambda's 6 MB synchronous response cap.
DEFAULT_INLINE_LIMIT = 4 * MIB
#: Lambda's hard cap on a synchronous response, bytes.
LAMBDA_RESPONSE_CAP = 6_291_456
#: The suite new documents use unless configured otherwise.
DEFAULT_SUITE = Suite.XWING.value
#: Documents per PlanRewrap batch: one manifest, one distributed Map run. At most
#: MAX_REWRAP_BATCH, so the Map's collected child outputs (about 60 bytes each) stay under
#: the 256 KiB state payload limit without a ResultWriter.
DEFAULT_REWRAP_BATCH = 2000
MAX_REWRAP_BATCH = 2000
#: Child executions the distributed Map runs at once (each holds one database connection).
DEFAULT_REWRAP_CONCURRENCY = 100
MAX_REWRAP_CONCURRENCY = 1000
#: Where PlanRewrap writes batch manifests, in the encrypted bucket (docs/KEYS.md, "Rotation").
ROTATION_MANIFESTS_PREFIX = "rotation-manifests/"
#: The service name in logs, traces and metrics.
DEFAULT_SERVICE = "pqfile"


class ConfigurationError(PQFileError):
    """An environment variable is missing or malformed."""


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _text(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ConfigurationError(f"{name}={value} is out of range")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """``true``/``false`` (also 1/0, yes/no); anything else is a ConfigurationError."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes"}:
        return True
    if raw in {"0", "false", "no"}:
        return False
    raise ConfigurationError(f"{name} must be true or false, not {raw[:20]!r}")


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, not {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name}={raw} is out of range")
    return value


def _bounded(env: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    value = int(_number(env, name, default, 1))
    if value > maximum:
        raise ConfigurationError(f"{name}={value} is out of range (at most {maximum})")
    return value


def _suite(name: str, raw: str) -> str:
    try:
        return Suite(raw).value
    except ValueError:
        known = ", ".join(repr(s.value) for s in Suite)
        raise ConfigurationError(f"{name} must be one of {known}, not {raw!r}") from None
