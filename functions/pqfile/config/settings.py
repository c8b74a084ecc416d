"""The pipeline functions' settings in one object, and the registry of every variable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from pqfile.config._base import (
    DEFAULT_REWRAP_BATCH,
    DEFAULT_REWRAP_CONCURRENCY,
    DEFAULT_SERVICE,
    DEFAULT_SUITE,
    MAX_REWRAP_BATCH,
    MAX_REWRAP_CONCURRENCY,
    ConfigurationError,
    _environ,
)
from pqfile.config.access import EventSettings
from pqfile.config.keys import _POOL, KmsSettings
from pqfile.config.storage import EncryptionSettings, RetrieveSettings, StorageSettings


@dataclass(frozen=True)
class Variable:
    """One environment variable: the setting it fills (``concern.field``) or who reads it."""

    name: str
    setting: str
    default: str
    meaning: str


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
