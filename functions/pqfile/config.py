"""Every setting the code reads from its environment: typed, one object per concern.

:data:`ENVIRONMENT` lists each variable, the setting it fills and its default
(docs/CONTRACTS.md, "Environment variables", carries the same table; a test keeps the two
equal). This module is the only one in ``functions/`` that reads ``os.environ``.

Parsing is strict: a malformed value fails the cold start with a clear message instead of
surfacing later as an odd runtime error. Defaults live here, the key pool's in the domain
(:class:`pqfile.keys.policy.PoolPolicy`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from pqfile.crypto.suite_names import SuiteName as Suite
from pqfile.errors import PQFileError
from pqfile.keys.policy import PoolPolicy

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


@dataclass(frozen=True)
class Variable:
    """One environment variable: the setting it fills (``concern.field``) or who reads it."""

    name: str
    setting: str
    default: str
    meaning: str


_POOL = PoolPolicy()

#: Every environment variable the code reads.
ENVIRONMENT: tuple[Variable, ...] = (
    Variable("PQFILE_UPLOADS_BUCKET", "storage.uploads_bucket", "(none)",
             "the upload bucket (objects under `uploads/`)"),
    Variable("PQFILE_ENCRYPTED_BUCKET", "storage.encrypted_bucket", "(none)",
             "the encrypted bucket (packages under `encrypted/`)"),
    Variable("PQFILE_PART_SIZE", "storage.part_size", "8 MiB",
             "preferred S3 multipart part size in bytes (at least 5 MiB; usecases/parts.py "
             "raises it when 10,000 parts would not hold the package)"),
    Variable("PQFILE_INGEST_WORKERS", "storage.ingest_workers", "the function's vCPUs",
             "encrypt step: worker threads that encrypt a multi-part upload's parts in "
             "parallel (1-64; 1 is the sequential path; memory about workers x (part size + "
             "2 segments), docs/DESIGN.md \"Parallel ingest\")"),
    Variable("PQFILE_MAX_DOCUMENT_SIZE", "storage.max_document_size", "24 GiB",
             "largest upload accepted, bytes (larger ones: DocumentTooLargeError at fetch); "
             "the default is what one encrypt function streams in its 900 s "
             "(BENCHMARKS.md, \"Ingest size limit\"); S3's 5 TiB object limit caps any value"),
    Variable("PQFILE_DEFAULT_SUITE", "encryption.default_suite", DEFAULT_SUITE,
             "the suite of new documents: a `pqfile.crypto.kem.Suite` name (`xwing`, "
             "`mlkem768`, `mlkem1024`)"),
    Variable("PQFILE_SUITE_BY_PREFIX", "encryption.suite_by_prefix", "`{}`",
             "a JSON object, upload prefix -> suite name (`{\"acme/\": \"mlkem1024\"}`); the "
             "prefix is matched against the upload's key after `uploads/` (`tenant/...`), the "
             "longest matching one chooses the suite of the document, other uploads get the "
             "default suite"),
    Variable("PQFILE_SEGMENT_SIZE", "encryption.segment_size", "1 MiB",
             "body segment size in bytes"),
    Variable("PQFILE_INLINE_LIMIT", "retrieve.inline_limit", "4 MiB",
             "retrieve: largest plaintext returned inline (base64); larger ones get a "
             "presigned URL"),
    Variable("PQFILE_PRESIGN_SECONDS", "retrieve.presign_seconds", "300",
             "retrieve: lifetime of the presigned URL (1-3600)"),
    Variable("PQFILE_RETRIEVALS_KMS_KEY_ID", "retrieve.retrievals_kms_key_id",
             "(the bucket's default)", "retrieve: KMS key of the temporary retrieval copies "
             "(SSE-KMS)"),
    Variable("PQFILE_PLAINTEXT_DELIVERY", "retrieve.plaintext_delivery", "false",
             "retrieve: serve plaintext deliveries (inline, url) at all (`true`/`false`; "
             "Terraform `retrieve_plaintext_delivery`); off, a reader needs a recipient key "
             "(sealed delivery, docs/OPERATIONS.md \"Retrieval\")"),
    Variable("PQFILE_SEALED_PRESIGN_SECONDS", "retrieve.sealed_presign_seconds", "300",
             "retrieve: lifetime of the presigned GET of the stored package in a sealed "
             "delivery (1-3600)"),
    Variable("PQFILE_KMS_KEY_ID", "kms.key_id", "(none)",
             "KMS key (id, ARN or alias) that wraps key seeds"),
    Variable("PQFILE_ATTESTATION_KEY_ID", "kms.attestation_key_id", "(none)",
             "KMS HMAC key (HMAC_256, GENERATE_VERIFY_MAC) that attests pool keys: "
             "rotate_maintain generates MACs, select_key, encrypt and rotate_rewrap verify them"),
    Variable("PQFILE_ROTATION_SUITES", "pool.suites", "(none)",
             "rotate: suites whose pools are kept full (comma-separated), besides the default "
             "suite and every suite of `PQFILE_SUITE_BY_PREFIX`, which always are"),
    Variable("PQFILE_POOL_TARGET", "pool.policy.target_active", str(_POOL.target_active),
             "rotate: active keys per suite"),
    Variable("PQFILE_POOL_FLOOR", "pool.policy.floor_active", str(_POOL.floor_active),
             "rotate: refill when fewer keys are active (at most the target)"),
    Variable("PQFILE_KEY_MAX_AGE_DAYS", "pool.policy.max_age", str(_POOL.max_age.days),
             "rotate: queue keys older than this many days"),
    Variable("PQFILE_KEY_MAX_DOCUMENTS", "pool.policy.max_documents",
             f"{_POOL.max_documents:,}", "rotate: queue keys past this many documents"),
    Variable("PQFILE_KEY_MAX_BYTES", "pool.policy.max_bytes", "1 TiB",
             "rotate: queue keys past this many bytes encrypted"),
    Variable("PQFILE_REWRAP_BATCH", "pool.rewrap_batch", str(DEFAULT_REWRAP_BATCH),
             f"rotate: documents per PlanRewrap batch manifest (1-{MAX_REWRAP_BATCH})"),
    Variable("PQFILE_REWRAP_CONCURRENCY", "pool.rewrap_concurrency",
             str(DEFAULT_REWRAP_CONCURRENCY),
             f"rotate: rewrap child executions at once (1-{MAX_REWRAP_CONCURRENCY})"),
    Variable("PQFILE_EVENT_BUS", "events.bus", "default",
             "store, record_failure, rotate_finish, shred, admin, `pqfile keys revoke --now`: "
             "where "
             "completion events go (docs/CONTRACTS.md, \"Completion events\"): `default` (the "
             "account's default EventBridge bus) or `off` (no events)"),
    Variable("AWS_ENDPOINT_URL", "aws.endpoint_url", "(AWS)",
             "set only on the local stack (the emulator); also turns X-Ray tracing off"),
    Variable("AWS_REGION", "aws.region", "`AWS_DEFAULT_REGION`, else us-east-1",
             "the region of the AWS clients (set by Lambda)"),
    Variable("AWS_DEFAULT_REGION", "aws.region", "us-east-1",
             "the region when `AWS_REGION` is unset"),
    Variable("POWERTOOLS_SERVICE_NAME", "observability.service", DEFAULT_SERVICE,
             "the service in logs, traces and metrics"),
    Variable("PQFILE_DATABASE_URL", "database.url", "(none)",
             "`postgresql://user:pass@host:port/db?sslmode=...` (local, tests; locally with "
             "`database_url_per_role` the user is the function's own role; with IAM "
             "authentication the user is the function's role and there is no password); "
             "without `sslmode`: `verify-full`, `disable` for a loopback host or Unix socket"),
    Variable("PQFILE_DATABASE_SECRET_ARN", "database.secret_arn", "(none)",
             "Secrets Manager secret with the RDS credentials (AWS without IAM authentication)"),
    Variable("PQFILE_DATABASE_PASSWORD_SECRET_ARN", "database.password_secret_arn", "(none)",
             "Secrets Manager secret (JSON `username`, `password`) holding the password of "
             "the URL's role, read at each connect (`database_role_passwords`: LocalStack in "
             "Docker, where the postgres image refuses logins without a password); its "
             "`username` must be that role"),
    Variable("PQFILE_DATABASE_HOST", "database.host", "localhost",
             "the database host when the secret does not carry it (AWS)"),
    Variable("PQFILE_DATABASE_PORT", "database.port", "5432",
             "the database port when the secret does not carry it (AWS)"),
    Variable("PQFILE_DATABASE_NAME", "database.name", "pqfile",
             "the database name when the secret does not carry it (AWS)"),
    Variable("PQFILE_DATABASE_SSLMODE", "database.sslmode", "verify-full",
             "TLS mode with a secret: `verify-full` on AWS"),
    Variable("PQFILE_DATABASE_SSLROOTCERT", "database.sslrootcert", "(system CAs)",
             "the CA bundle path"),
    Variable("PQFILE_DATABASE_IAM_AUTH", "database.iam_auth", "off",
             "`1`: connect with a 15-minute RDS IAM token as the URL's user "
             "(`database_iam_auth`)"),
    Variable("PQFILE_MIGRATIONS_DIR", "database.migrations_dir", "sql/migrations",
             "CLI: where `pqfile db migrate` finds the migrations"),
    Variable("PQFILE_ACTOR", "cli.actor", "cli:$USER",
             "CLI: the name an operator claims (kept as `claimed_by`; the database records "
             "the connected user)"),
    Variable("PQFILE_RETRIEVE_FUNCTION", "cli.retrieve_function", "(none)",
             "CLI: the retrieve function `pqfile retrieve` invokes (name or ARN; Terraform "
             "output `retrieve_function_name`)"),
    Variable("PQFILE_STACK", "cli.stack", "(the local stack)",
             "CLI: the deployed stack the service commands (`upload`, `documents status`, "
             "`retrieve`) use: a Terraform root (its `terraform output -json`) or a file "
             "holding that output; unset, the local stack's state file. Operator commands "
             "go through its admin function unless `--database-url` is given"),
    Variable("PQFILE_DEVSTACK_DIR", "cli.devstack_dir", "`.devstack` in the repository",
             "CLI and devstack: the folder of the local stack's `state.json`"),
    Variable("PQFILE_TENANT", "cli.tenant", "(none)",
             "CLI: the tenant `pqfile upload` writes under (`uploads/<tenant>/`) without "
             "`--tenant`"),
    Variable("PQFILE_ROTATION_STATE_MACHINE", "cli.rotation_state_machine", "(none)",
             "CLI and admin: the rotate-keys state machine `pqfile keys rotate` starts (ARN; "
             "Terraform output `rotation_state_machine_arn`; set on the admin function)"),
    Variable("PQFILE_BACKUP_RETENTION_DAYS", "shred.backup_retention_days", "14",
             "shred, `pqfile keys revoke --shred`: days database backups keep a shredded "
             "key's wrapped seed (Terraform `db_backup_retention_days`): shredding is "
             "complete that long after the shred"),
    Variable("PQFILE_STS_ENDPOINT_URL", "identity.sts_endpoint_url",
             "`https://sts.<region>.amazonaws.com`",
             "retrieve, `pqfile auth proof`: the one STS endpoint identity proofs are made for "
             "and sent to (https; http only to a loopback host, the local stack)"),
    Variable("PQFILE_STS_PLAIN_HTTP_HOST", "identity.sts_plain_http_host", "(none)",
             "retrieve, documents, admin, the CLI: one host name besides loopback that the "
             "STS endpoint may reach over plain http (an emulator on a private network: "
             "`localstack` on the Docker path; Terraform `sts_plain_http_host`, local "
             "environments only)"),
    Variable("PQFILE_AUDIENCE", "identity.audience", "(none)",
             "retrieve, `pqfile auth proof`: the name of this deployment that a proof's "
             "signed `x-pqfile-audience` header must carry; retrieve refuses every proof "
             "without it"),
    Variable("PQFILE_PROOF_MAX_AGE_SECONDS", "identity.max_age_seconds", "300",
             "retrieve: how far a proof's `X-Amz-Date` may be from now, either way (1-900)"),
    Variable("PQFILE_STS_TIMEOUT_SECONDS", "identity.timeout_seconds", "5",
             "retrieve: connect and read timeout of the one STS request per proof (1-30)"),
    Variable("PQFILE_AUDITOR_DATABASE_URL", "admin.auditor_database_url", "(none)",
             "admin: the URL of the `pqfile_auditor` role its read-only commands run as "
             "(`PQFILE_DATABASE_URL` is `pqfile_admin_function`'s); with IAM authentication its "
             "user is the role and there is no password"),
    Variable("PQFILE_AUDITOR_DATABASE_PASSWORD_SECRET_ARN",
             "admin.auditor_password_secret_arn", "(none)",
             "admin: the secret holding the password of the `pqfile_auditor` login "
             "(`database_role_passwords`; as `PQFILE_DATABASE_PASSWORD_SECRET_ARN`)"),
    Variable("PQFILE_DIGEST_BUCKET", "audit_digest.bucket", "(none)",
             "audit_digest: the Object Lock bucket signed tree heads are written to "
             "(`digests/<tree size>.json`; docs/OPERATIONS.md, \"Audit digests\")"),
    Variable("PQFILE_DIGEST_KEY_ARN", "audit_digest.key_arn", "(none)",
             "audit_digest: the ARN of the KMS asymmetric key that signs the digests "
             "(named inside each digest)"),
    Variable("PQFILE_DIGEST_SIGNING_ALGORITHM", "audit_digest.algorithm", "ECDSA_SHA_384",
             "audit_digest: the key's KMS signing algorithm: `ECDSA_SHA_384` (key spec "
             "`ECC_NIST_P384`) or `ML_DSA_SHAKE_256` (`ML_DSA_65`)"),
    Variable("PQFILE_ADMIN_FUNCTION", "cli.admin_function", "(none)",
             "CLI: the admin function operator commands invoke with `--stack` (name or ARN; "
             "Terraform output `admin_function_name`)"),
)  # fmt: skip


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


@dataclass(frozen=True)
class DatabaseSettings:
    """How to reach PostgreSQL (adapters/postgres/connection.py builds the connection)."""

    url: str | None = None
    secret_arn: str | None = None
    host: str = "localhost"
    port: int = 5432
    name: str = "pqfile"
    sslmode: str = "verify-full"
    sslrootcert: str | None = None
    iam_auth: bool = False
    migrations_dir: str | None = None
    region: str = "us-east-1"
    #: The URL's role's password, from this Secrets Manager secret (LocalStack in Docker).
    password_secret_arn: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DatabaseSettings:
        e = _environ(env)
        return cls(
            url=_text(e, "PQFILE_DATABASE_URL"),
            secret_arn=_text(e, "PQFILE_DATABASE_SECRET_ARN"),
            host=_text(e, "PQFILE_DATABASE_HOST") or cls.host,
            port=_int(e, "PQFILE_DATABASE_PORT", cls.port, 1, 65535),
            name=_text(e, "PQFILE_DATABASE_NAME") or cls.name,
            sslmode=_text(e, "PQFILE_DATABASE_SSLMODE") or cls.sslmode,
            sslrootcert=_text(e, "PQFILE_DATABASE_SSLROOTCERT"),
            iam_auth=e.get("PQFILE_DATABASE_IAM_AUTH", "").strip().lower() in {"1", "true", "yes"},
            migrations_dir=_text(e, "PQFILE_MIGRATIONS_DIR"),
            region=AwsSettings.from_env(e).region,
            password_secret_arn=_text(e, "PQFILE_DATABASE_PASSWORD_SECRET_ARN"),
        )


@dataclass(frozen=True)
class CliSettings:
    #: The operator named in audit rows (the database records session_user as well).
    actor: str | None = None
    #: The retrieve function `pqfile retrieve` invokes.
    retrieve_function: str | None = None
    #: The rotate-keys state machine `pqfile keys rotate` starts.
    rotation_state_machine: str | None = None
    #: The admin function operator commands invoke on a deployed stack.
    admin_function: str | None = None
    #: A deployed stack's Terraform root, or a file of its `terraform output -json`: service
    #: commands and (through its admin function) operator commands use it.
    stack: str | None = None
    #: The local stack's state folder (None: `.devstack` in the repository).
    devstack_dir: str | None = None
    #: The tenant `pqfile upload` uses without --tenant.
    tenant: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CliSettings:
        values = _environ(env)
        return cls(
            actor=_text(values, "PQFILE_ACTOR"),
            retrieve_function=_text(values, "PQFILE_RETRIEVE_FUNCTION"),
            rotation_state_machine=_text(values, "PQFILE_ROTATION_STATE_MACHINE"),
            admin_function=_text(values, "PQFILE_ADMIN_FUNCTION"),
            stack=_text(values, "PQFILE_STACK"),
            devstack_dir=_text(values, "PQFILE_DEVSTACK_DIR"),
            tenant=_text(values, "PQFILE_TENANT"),
        )


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


@dataclass(frozen=True)
class IdentitySettings:
    """Verified caller identity (pqfile.auth): where proofs go, and what they must name."""

    #: The STS endpoint, checked (https, or http to loopback) and written canonically.
    sts_endpoint_url: str = "https://sts.us-east-1.amazonaws.com/"
    #: The credential scope region proofs are signed for (from the endpoint's host name,
    #: else the AWS region).
    sts_region: str = "us-east-1"
    #: This deployment's name; None refuses every proof (fail closed).
    audience: str | None = None
    max_age_seconds: int = 300
    timeout_seconds: int = 5
    #: Whether PQFILE_STS_ENDPOINT_URL was set (the CLI then prefers it to a stack's).
    sts_endpoint_configured: bool = field(default=False, compare=False)
    #: A host besides loopback the endpoint may reach over plain http (local emulators).
    sts_plain_http_host: str | None = None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, region: str | None = None
    ) -> IdentitySettings:
        """``region`` (the CLI's ``--region``) replaces the AWS region of the environment."""
        # Imported here: only retrieve and the CLI pay for pqfile.auth at cold start.
        from pqfile.auth import AUDIENCE_PATTERN, StsEndpoint, default_endpoint_url

        e = _environ(env)
        region = region or AwsSettings.from_env(e).region
        raw = _text(e, "PQFILE_STS_ENDPOINT_URL") or default_endpoint_url(region)
        plain_http_host = _text(e, "PQFILE_STS_PLAIN_HTTP_HOST")
        if plain_http_host is not None and not re.fullmatch(r"[a-z0-9-]{1,63}", plain_http_host):
            raise ConfigurationError(
                "PQFILE_STS_PLAIN_HTTP_HOST must be one lower-case host name label"
            )
        try:
            endpoint = StsEndpoint.parse(
                raw, default_region=region, plain_http_host=plain_http_host
            )
        except ValueError as exc:
            raise ConfigurationError(f"PQFILE_STS_ENDPOINT_URL: {exc}") from None
        audience = _text(e, "PQFILE_AUDIENCE")
        if audience is not None and not AUDIENCE_PATTERN.fullmatch(audience):
            raise ConfigurationError(
                f"PQFILE_AUDIENCE must match {AUDIENCE_PATTERN.pattern}, not {audience!r}"
            )
        return cls(
            sts_endpoint_url=endpoint.url,
            sts_region=endpoint.region,
            audience=audience,
            max_age_seconds=_int(e, "PQFILE_PROOF_MAX_AGE_SECONDS", cls.max_age_seconds, 1, 900),
            timeout_seconds=_int(e, "PQFILE_STS_TIMEOUT_SECONDS", cls.timeout_seconds, 1, 30),
            sts_endpoint_configured=_text(e, "PQFILE_STS_ENDPOINT_URL") is not None,
            sts_plain_http_host=plain_http_host,
        )


@dataclass(frozen=True)
class AdminSettings:
    """The admin function (pqfile.usecases.admin): the auditor role's connection."""

    auditor_database_url: str | None = None
    #: The auditor login's password secret (``database_role_passwords``), else None.
    auditor_password_secret_arn: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AdminSettings:
        e = _environ(env)
        return cls(
            auditor_database_url=_text(e, "PQFILE_AUDITOR_DATABASE_URL"),
            auditor_password_secret_arn=_text(e, "PQFILE_AUDITOR_DATABASE_PASSWORD_SECRET_ARN"),
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


#: The only bus events go to (the IAM grants events:PutEvents on it alone).
DEFAULT_EVENT_BUS = "default"


@dataclass(frozen=True)
class EventSettings:
    """Completion events (pqfile.usecases.notices): the bus, or None when switched off."""

    bus: str | None = DEFAULT_EVENT_BUS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EventSettings:
        raw = (_text(_environ(env), "PQFILE_EVENT_BUS") or DEFAULT_EVENT_BUS).strip()
        if raw == "off":
            return cls(bus=None)
        if raw != DEFAULT_EVENT_BUS:
            raise ConfigurationError(
                f"PQFILE_EVENT_BUS must be {DEFAULT_EVENT_BUS!r} or 'off', not {raw[:64]!r}"
            )
        return cls(bus=raw)


_CONCERNS: dict[str, type[Any]] = {
    "storage": StorageSettings,
    "encryption": EncryptionSettings,
    "retrieve": RetrieveSettings,
    "kms": KmsSettings,
    "events": EventSettings,
}


@dataclass(frozen=True)
class Settings:
    """What the pipeline's functions (ingest, retrieve, rotate) read, by concern."""

    storage: StorageSettings = field(default_factory=StorageSettings)
    encryption: EncryptionSettings = field(default_factory=EncryptionSettings)
    retrieve: RetrieveSettings = field(default_factory=RetrieveSettings)
    kms: KmsSettings = field(default_factory=KmsSettings)
    events: EventSettings = field(default_factory=EventSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = _environ(env)
        return cls(
            storage=StorageSettings.from_env(e),
            encryption=EncryptionSettings.from_env(e),
            retrieve=RetrieveSettings.from_env(e),
            kms=KmsSettings.from_env(e),
            events=EventSettings.from_env(e),
        )

    @classmethod
    def from_values(cls, **values: Any) -> Settings:
        """Settings from field names, whatever their concern (tests):
        ``Settings.from_values(uploads_bucket="u", inline_limit=1000)``."""
        parts: dict[str, dict[str, Any]] = {concern: {} for concern in _CONCERNS}
        for name, value in values.items():
            concern = next(
                (c for c, kind in _CONCERNS.items() if name in {f.name for f in fields(kind)}),
                None,
            )
            if concern is None:
                raise TypeError(f"no setting named {name!r}")
            parts[concern][name] = value
        return cls(**{c: kind(**parts[c]) for c, kind in _CONCERNS.items()})

    def require(self, *variables: str) -> None:
        """Fail with the variable's name when a setting this function needs is empty."""
        by_name = {v.name: v.setting for v in ENVIRONMENT}
        for name in variables:
            value: Any = self
            for attribute in by_name[name].split("."):
                value = getattr(value, attribute)
            if not value:
                raise ConfigurationError(f"{name} is not set")
