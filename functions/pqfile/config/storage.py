"""The pipeline's settings: buckets and parts, the suite of new documents, retrieval."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pqfile.config._base import (
    DEFAULT_INLINE_LIMIT,
    DEFAULT_SUITE,
    LAMBDA_RESPONSE_CAP,
    MIB,
    UPLOADS_PREFIX,
    ConfigurationError,
    _environ,
    _flag,
    _int,
    _suite,
    _text,
)

#: Most entries PQFILE_SUITE_BY_PREFIX may hold (Lambda's environment is 4 KB in all).
MAX_SUITE_PREFIXES = 100
#: A prefix starts with (the start of) a tenant name, the first folder under uploads/
#: (usecases/events.py, sql/migrations/0011), and is at most an S3 key long.
_SUITE_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}(?:/[^\x00-\x1f\x7f]{0,1000})?")


def _suite_by_prefix(name: str, raw: str | None) -> tuple[tuple[str, str], ...]:
    """``{"prefix": "suite", ...}`` as (prefix, suite) pairs, longest prefix first."""
    if raw is None:
        return ()

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise ConfigurationError(f"{name} names the prefix {key!r} twice")
            seen[key] = value
        return seen

    try:
        value = json.loads(raw, object_pairs_hook=no_duplicates)
    except ValueError:
        raise ConfigurationError(
            f'{name} must be a JSON object such as {{"acme/": "mlkem1024"}}, not {raw[:80]!r}'
        ) from None
    if not isinstance(value, dict):
        raise ConfigurationError(f'{name} must be a JSON object such as {{"acme/": "mlkem1024"}}')
    if len(value) > MAX_SUITE_PREFIXES:
        raise ConfigurationError(
            f"{name} holds {len(value)} prefixes, at most {MAX_SUITE_PREFIXES}"
        )
    pairs: list[tuple[str, str]] = []
    for prefix, suite in value.items():
        if prefix.startswith(UPLOADS_PREFIX):
            raise ConfigurationError(
                f"{name}: prefixes are relative to {UPLOADS_PREFIX} "
                f"(write {prefix[len(UPLOADS_PREFIX) :]!r}, not {prefix!r})"
            )
        if not _SUITE_PREFIX.fullmatch(prefix):
            raise ConfigurationError(
                f"{name}: {prefix[:80]!r} is not an upload prefix (a tenant name, then "
                "optionally '/' and folders)"
            )
        if not isinstance(suite, str):
            raise ConfigurationError(f"{name}: the suite of {prefix!r} must be a string")
        pairs.append((prefix, _suite(f"{name}[{prefix!r}]", suite)))
    return tuple(sorted(pairs, key=lambda pair: (-len(pair[0]), pair[0])))


@dataclass(frozen=True)
class StorageSettings:
    uploads_bucket: str = ""
    encrypted_bucket: str = ""
    #: Multipart part size of the encrypted upload; bounds the encrypt step's buffer.
    part_size: int = 8 * MIB
    #: Largest upload the pipeline accepts: what one encrypt function streams within its
    #: 900 s timeout on the sequential path, measured and scaled (BENCHMARKS.md, "Ingest
    #: size limit"; scripts/bench_ingest_limit.py). S3's own object limit is 5 TiB.
    max_document_size: int = 24 * 1024**3
    #: Threads encrypting the parts of one upload (1: sequential); from_env defaults it to
    #: the function's vCPUs (usecases/ingest_parallel.py).
    ingest_workers: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StorageSettings:
        e = _environ(env)
        return cls(
            uploads_bucket=e.get("PQFILE_UPLOADS_BUCKET", ""),
            encrypted_bucket=e.get("PQFILE_ENCRYPTED_BUCKET", ""),
            part_size=_int(e, "PQFILE_PART_SIZE", cls.part_size, 5 * MIB),
            max_document_size=_int(e, "PQFILE_MAX_DOCUMENT_SIZE", cls.max_document_size, 0),
            ingest_workers=_int(e, "PQFILE_INGEST_WORKERS", _vcpus(), 1, 64),
        )


def _vcpus() -> int:
    """The vCPUs this process may run on (Lambda: 1 per 1,769 MB of memory, up to 6)."""
    try:
        return max(1, min(64, len(os.sched_getaffinity(0))))
    except (AttributeError, OSError):
        return max(1, min(64, os.cpu_count() or 1))


@dataclass(frozen=True)
class EncryptionSettings:
    #: A :class:`~pqfile.crypto.kem.Suite` name.
    default_suite: str = DEFAULT_SUITE
    segment_size: int = MIB
    #: (prefix under uploads/, suite name) pairs, longest prefix first.
    suite_by_prefix: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EncryptionSettings:
        e = _environ(env)
        return cls(
            default_suite=_suite(
                "PQFILE_DEFAULT_SUITE", _text(e, "PQFILE_DEFAULT_SUITE") or DEFAULT_SUITE
            ),
            segment_size=_int(e, "PQFILE_SEGMENT_SIZE", cls.segment_size, 1024),
            suite_by_prefix=_suite_by_prefix(
                "PQFILE_SUITE_BY_PREFIX", _text(e, "PQFILE_SUITE_BY_PREFIX")
            ),
        )

    def suite_for(self, upload_key: str) -> str:
        """The suite of a document uploaded as ``upload_key`` (``uploads/tenant/...``): the
        suite of the longest prefix of ``tenant/...`` in the map, else the default."""
        path = upload_key.removeprefix(UPLOADS_PREFIX)
        for prefix, suite in self.suite_by_prefix:  # longest first
            if path.startswith(prefix):
                return suite
        return self.default_suite

    @property
    def suites(self) -> tuple[str, ...]:
        """Every suite new documents may get: the default and the map's."""
        return tuple(dict.fromkeys([self.default_suite, *(s for _, s in self.suite_by_prefix)]))


@dataclass(frozen=True)
class RetrieveSettings:
    inline_limit: int = DEFAULT_INLINE_LIMIT
    #: Lifetime of the presigned URL for large retrievals, seconds.
    presign_seconds: int = 300
    #: Optional KMS key for retrieval copies; None means the bucket's SSE-KMS default key.
    retrievals_kms_key_id: str | None = None
    #: Whether plaintext deliveries (inline, url) are served; off: sealed delivery only.
    plaintext_delivery: bool = False
    #: Lifetime of the presigned GET of the stored package in a sealed delivery, seconds.
    sealed_presign_seconds: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetrieveSettings:
        e = _environ(env)
        inline_limit = _int(e, "PQFILE_INLINE_LIMIT", DEFAULT_INLINE_LIMIT, 0)
        # base64 grows 4/3; anything above this could never fit the response cap.
        if inline_limit * 4 // 3 + 4096 > LAMBDA_RESPONSE_CAP:
            raise ConfigurationError("PQFILE_INLINE_LIMIT does not fit Lambda's 6 MB response cap")
        return cls(
            inline_limit=inline_limit,
            presign_seconds=_int(e, "PQFILE_PRESIGN_SECONDS", cls.presign_seconds, 1, 3600),
            retrievals_kms_key_id=e.get("PQFILE_RETRIEVALS_KMS_KEY_ID") or None,
            plaintext_delivery=_flag(e, "PQFILE_PLAINTEXT_DELIVERY", cls.plaintext_delivery),
            sealed_presign_seconds=_int(
                e, "PQFILE_SEALED_PRESIGN_SECONDS", cls.sealed_presign_seconds, 1, 3600
            ),
        )
