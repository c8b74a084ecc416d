"""Settings the Lambda handlers read from their environment (docs/CONTRACTS.md).

Parsing is strict: a malformed value fails the cold start with a clear message instead of
surfacing later as an odd runtime error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pqfile.errors import PQFileError

MIB = 1024 * 1024

#: Prefixes the pipeline owns (DESIGN.md "The job").
UPLOADS_PREFIX = "uploads/"
ENCRYPTED_PREFIX = "encrypted/"
RETRIEVALS_PREFIX = "retrievals/"

#: Largest plaintext returned inline by retrieve: 4 MiB raw is 5.33 MiB of base64, which
#: leaves room for the JSON envelope under Lambda's 6 MB synchronous response cap.
DEFAULT_INLINE_LIMIT = 4 * MIB
#: Lambda's hard cap on a synchronous response, bytes.
LAMBDA_RESPONSE_CAP = 6_291_456


class ConfigurationError(PQFileError):
    """An environment variable is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    uploads_bucket: str
    encrypted_bucket: str
    database_url: str | None = None
    database_secret_arn: str | None = None
    kms_key_id: str | None = None
    default_suite: str = "xwing"
    segment_size: int = MIB
    #: Multipart part size of the encrypted upload; bounds the encrypt step's buffer.
    part_size: int = 8 * MIB
    #: Largest upload the pipeline accepts (S3's own object limit is 5 TiB).
    max_document_size: int = 5 * 1024**4
    inline_limit: int = DEFAULT_INLINE_LIMIT
    #: Lifetime of the presigned URL for large retrievals, seconds.
    presign_seconds: int = 300
    #: Optional KMS key for retrieval copies; None means the bucket's SSE-KMS default key.
    retrievals_kms_key_id: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        suite = e.get("PQFILE_DEFAULT_SUITE", "xwing").strip() or "xwing"
        if suite not in ("xwing", "mlkem768"):
            raise ConfigurationError(
                f"PQFILE_DEFAULT_SUITE must be 'xwing' or 'mlkem768', not {suite!r}"
            )
        inline_limit = _int(e, "PQFILE_INLINE_LIMIT", DEFAULT_INLINE_LIMIT, 0)
        # base64 grows 4/3; anything above this could never fit the response cap.
        if inline_limit * 4 // 3 + 4096 > LAMBDA_RESPONSE_CAP:
            raise ConfigurationError("PQFILE_INLINE_LIMIT does not fit Lambda's 6 MB response cap")
        return cls(
            uploads_bucket=e.get("PQFILE_UPLOADS_BUCKET", ""),
            encrypted_bucket=e.get("PQFILE_ENCRYPTED_BUCKET", ""),
            database_url=e.get("PQFILE_DATABASE_URL") or None,
            database_secret_arn=e.get("PQFILE_DATABASE_SECRET_ARN") or None,
            kms_key_id=e.get("PQFILE_KMS_KEY_ID") or None,
            default_suite=suite,
            segment_size=_int(e, "PQFILE_SEGMENT_SIZE", MIB, 1024),
            part_size=_int(e, "PQFILE_PART_SIZE", 8 * MIB, 5 * MIB),
            max_document_size=_int(e, "PQFILE_MAX_DOCUMENT_SIZE", 5 * 1024**4, 0),
            inline_limit=inline_limit,
            presign_seconds=_int(e, "PQFILE_PRESIGN_SECONDS", 300, 1, 3600),
            retrievals_kms_key_id=e.get("PQFILE_RETRIEVALS_KMS_KEY_ID") or None,
            endpoint_url=e.get("AWS_ENDPOINT_URL") or None,
        )

    def require(self, *names: str) -> None:
        """Fail with the variable's name when a setting this function needs is empty."""
        env_names = {
            "uploads_bucket": "PQFILE_UPLOADS_BUCKET",
            "encrypted_bucket": "PQFILE_ENCRYPTED_BUCKET",
            "kms_key_id": "PQFILE_KMS_KEY_ID",
        }
        for name in names:
            if not getattr(self, name):
                raise ConfigurationError(f"{env_names.get(name, name)} is not set")


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
