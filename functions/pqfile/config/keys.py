"""Settings of the key pool and its guards: KMS keys, rotation, shredding, audit digests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from pqfile.config._base import (
    DEFAULT_REWRAP_BATCH,
    DEFAULT_REWRAP_CONCURRENCY,
    DEFAULT_SUITE,
    MAX_REWRAP_BATCH,
    MAX_REWRAP_CONCURRENCY,
    ConfigurationError,
    _bounded,
    _environ,
    _int,
    _number,
    _suite,
    _text,
)
from pqfile.config.storage import EncryptionSettings
from pqfile.keys.policy import PoolPolicy

_POOL = PoolPolicy()


@dataclass(frozen=True)
class KmsSettings:
    #: The KMS key that wraps key seeds; None in functions that need none.
    key_id: str | None = None
    #: The KMS HMAC key that attests pool keys; None in functions that need none.
    attestation_key_id: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KmsSettings:
        e = _environ(env)
        return cls(
            key_id=e.get("PQFILE_KMS_KEY_ID") or None,
            attestation_key_id=e.get("PQFILE_ATTESTATION_KEY_ID") or None,
        )


@dataclass(frozen=True)
class PoolSettings:
    """The rotate-keys workflow's pool maintenance."""

    policy: PoolPolicy = field(default_factory=PoolPolicy)
    #: Suites whose pool is kept at its target.
    suites: tuple[str, ...] = (DEFAULT_SUITE,)
    rewrap_batch: int = DEFAULT_REWRAP_BATCH
    rewrap_concurrency: int = DEFAULT_REWRAP_CONCURRENCY

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PoolSettings:
        e = _environ(env)
        target = int(_number(e, "PQFILE_POOL_TARGET", _POOL.target_active, 1))
        floor = int(_number(e, "PQFILE_POOL_FLOOR", min(_POOL.floor_active, target), 0))
        days = _POOL.max_age / dt.timedelta(days=1)
        try:
            policy = PoolPolicy(
                target_active=target,
                floor_active=floor,
                max_age=dt.timedelta(days=_number(e, "PQFILE_KEY_MAX_AGE_DAYS", days, 0)),
                max_documents=int(_number(e, "PQFILE_KEY_MAX_DOCUMENTS", _POOL.max_documents, 1)),
                max_bytes=int(_number(e, "PQFILE_KEY_MAX_BYTES", float(_POOL.max_bytes), 1)),
            )
        except ValueError as exc:
            raise ConfigurationError(f"pool policy: {exc}") from None
        # Every suite ingest may select from is maintained, whatever PQFILE_ROTATION_SUITES
        # says, so no configured suite's pool stays empty.
        raw = _text(e, "PQFILE_ROTATION_SUITES") or ""
        extra = (_suite("PQFILE_ROTATION_SUITES", s.strip()) for s in raw.split(",") if s.strip())
        in_use = EncryptionSettings.from_env(e).suites
        return cls(
            policy=policy,
            suites=tuple(dict.fromkeys([*in_use, *extra])),
            rewrap_batch=_bounded(e, "PQFILE_REWRAP_BATCH", DEFAULT_REWRAP_BATCH,
                                  MAX_REWRAP_BATCH),
            rewrap_concurrency=_bounded(e, "PQFILE_REWRAP_CONCURRENCY",
                                        DEFAULT_REWRAP_CONCURRENCY, MAX_REWRAP_CONCURRENCY),
        )  # fmt: skip


#: RDS automated backup retention by default (Terraform ``db_backup_retention_days``).
DEFAULT_BACKUP_RETENTION_DAYS = 14


@dataclass(frozen=True)
class ShredSettings:
    """Crypto-shredding (pqfile.usecases.shred)."""

    #: Days backups (and point-in-time recovery) keep a shredded key's wrapped seed.
    backup_retention_days: int = DEFAULT_BACKUP_RETENTION_DAYS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ShredSettings:
        e = _environ(env)
        return cls(
            backup_retention_days=_int(
                e, "PQFILE_BACKUP_RETENTION_DAYS", DEFAULT_BACKUP_RETENTION_DAYS, 0, 35
            )
        )


#: The signing algorithm of each key spec the digest key may have (terraform/audit_digests.tf).
DIGEST_ALGORITHMS = {"ECC_NIST_P384": "ECDSA_SHA_384", "ML_DSA_65": "ML_DSA_SHAKE_256"}


@dataclass(frozen=True)
class AuditDigestSettings:
    """The digest-signing function (pqfile.usecases.audit_digest): its bucket and key."""

    bucket: str | None = None
    key_arn: str | None = None
    algorithm: str = "ECDSA_SHA_384"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuditDigestSettings:
        e = _environ(env)
        algorithm = _text(e, "PQFILE_DIGEST_SIGNING_ALGORITHM") or cls.algorithm
        if algorithm not in DIGEST_ALGORITHMS.values():
            known = ", ".join(sorted(DIGEST_ALGORITHMS.values()))
            raise ConfigurationError(
                f"PQFILE_DIGEST_SIGNING_ALGORITHM must be one of {known}, not {algorithm[:64]!r}"
            )
        return cls(
            bucket=_text(e, "PQFILE_DIGEST_BUCKET"),
            key_arn=_text(e, "PQFILE_DIGEST_KEY_ARN"),
            algorithm=algorithm,
        )

    def require(self) -> None:
        for name, value in (
            ("PQFILE_DIGEST_BUCKET", self.bucket),
            ("PQFILE_DIGEST_KEY_ARN", self.key_arn),
        ):
            if not value:
                raise ConfigurationError(f"{name} is not set")
