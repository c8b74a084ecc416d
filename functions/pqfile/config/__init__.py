"""Every setting the code reads from its environment: typed, one object per concern.

:data:`ENVIRONMENT` lists each variable, the setting it fills and its default
(docs/CONTRACTS.md, "Environment variables", carries the same table; a test keeps the two
equal). This package is the only place in ``functions/`` that reads ``os.environ``
(``_base._environ``).

Parsing is strict: a malformed value fails the cold start with a clear message instead of
surfacing later as an odd runtime error. Defaults live here, the key pool's in the domain
(:class:`pqfile.keys.policy.PoolPolicy`).

The names are imported from here (``from pqfile.config import Settings``), and each is
loaded on first use: the constants and :class:`ConfigurationError` at once, every settings
class with its module only when it is asked for. Every function's AWS client factory reads
:class:`AwsSettings` at cold start; it no longer pays for the other fourteen classes, the
variable registry and the key pool's policy (issue 15, cold init):

- ``aws``: :class:`AwsSettings`, :class:`ObservabilitySettings`;
- ``storage``: :class:`StorageSettings`, :class:`EncryptionSettings`,
  :class:`RetrieveSettings`;
- ``keys``: :class:`KmsSettings`, :class:`PoolSettings`, :class:`ShredSettings`,
  :class:`AuditDigestSettings`;
- ``access``: :class:`DatabaseSettings`, :class:`IdentitySettings`, :class:`AdminSettings`,
  :class:`CliSettings`, :class:`EventSettings`;
- ``settings``: :class:`Settings` (what the pipeline reads), :class:`Variable` and
  :data:`ENVIRONMENT`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pqfile.config._base import (
    DEFAULT_INLINE_LIMIT,
    DEFAULT_REWRAP_BATCH,
    DEFAULT_REWRAP_CONCURRENCY,
    DEFAULT_SERVICE,
    DEFAULT_SUITE,
    ENCRYPTED_PREFIX,
    LAMBDA_RESPONSE_CAP,
    MAX_REWRAP_BATCH,
    MAX_REWRAP_CONCURRENCY,
    MIB,
    RETRIEVALS_PREFIX,
    ROTATION_MANIFESTS_PREFIX,
    UPLOADS_PREFIX,
    ConfigurationError,
)

#: Where each lazily loaded name lives (a module of this package).
_LAZY = {
    "AwsSettings": "aws",
    "ObservabilitySettings": "aws",
    "StorageSettings": "storage",
    "EncryptionSettings": "storage",
    "RetrieveSettings": "storage",
    "MAX_SUITE_PREFIXES": "storage",
    "KmsSettings": "keys",
    "PoolSettings": "keys",
    "ShredSettings": "keys",
    "AuditDigestSettings": "keys",
    "DEFAULT_BACKUP_RETENTION_DAYS": "keys",
    "DIGEST_ALGORITHMS": "keys",
    "DatabaseSettings": "access",
    "IdentitySettings": "access",
    "AdminSettings": "access",
    "CliSettings": "access",
    "EventSettings": "access",
    "DEFAULT_EVENT_BUS": "access",
    "Settings": "settings",
    "Variable": "settings",
    "ENVIRONMENT": "settings",
}

__all__ = [
    "DEFAULT_INLINE_LIMIT",
    "DEFAULT_REWRAP_BATCH",
    "DEFAULT_REWRAP_CONCURRENCY",
    "DEFAULT_SERVICE",
    "DEFAULT_SUITE",
    "ENCRYPTED_PREFIX",
    "LAMBDA_RESPONSE_CAP",
    "MAX_REWRAP_BATCH",
    "MAX_REWRAP_CONCURRENCY",
    "MIB",
    "RETRIEVALS_PREFIX",
    "ROTATION_MANIFESTS_PREFIX",
    "UPLOADS_PREFIX",
    "ConfigurationError",
    *_LAZY,
]

if TYPE_CHECKING:
    from pqfile.config.access import DEFAULT_EVENT_BUS as DEFAULT_EVENT_BUS
    from pqfile.config.access import AdminSettings as AdminSettings
    from pqfile.config.access import CliSettings as CliSettings
    from pqfile.config.access import DatabaseSettings as DatabaseSettings
    from pqfile.config.access import EventSettings as EventSettings
    from pqfile.config.access import IdentitySettings as IdentitySettings
    from pqfile.config.aws import AwsSettings as AwsSettings
    from pqfile.config.aws import ObservabilitySettings as ObservabilitySettings
    from pqfile.config.keys import DEFAULT_BACKUP_RETENTION_DAYS as DEFAULT_BACKUP_RETENTION_DAYS
    from pqfile.config.keys import DIGEST_ALGORITHMS as DIGEST_ALGORITHMS
    from pqfile.config.keys import AuditDigestSettings as AuditDigestSettings
    from pqfile.config.keys import KmsSettings as KmsSettings
    from pqfile.config.keys import PoolSettings as PoolSettings
    from pqfile.config.keys import ShredSettings as ShredSettings
    from pqfile.config.settings import ENVIRONMENT as ENVIRONMENT
    from pqfile.config.settings import Settings as Settings
    from pqfile.config.settings import Variable as Variable
    from pqfile.config.storage import MAX_SUITE_PREFIXES as MAX_SUITE_PREFIXES
    from pqfile.config.storage import EncryptionSettings as EncryptionSettings
    from pqfile.config.storage import RetrieveSettings as RetrieveSettings
    from pqfile.config.storage import StorageSettings as StorageSettings
else:

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
