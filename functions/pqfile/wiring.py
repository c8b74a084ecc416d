"""The composition root: the one place that picks adapters for the ports.

Each function's dependencies are built once per process (one Lambda execution environment)
on first use, under a lock, and reused by every warm invocation. Importing this module loads
no settings, use case or adapter (issue 15, cold init): each builder imports what it needs.
Tests replace them with fakes (``pipeline.override(fake)``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from pqfile.adapters.postgres import (
        Database,
        PostgresAuditLog,
        PostgresDocumentRepository,
        PostgresKeyStore,
    )
    from pqfile.config import Settings
    from pqfile.keys.policy import PoolPolicy
    from pqfile.ports import EventPublisher, KeyAttestor, SeedProtector
    from pqfile.usecases.admin import Admin
    from pqfile.usecases.audit_digest import AuditDigester
    from pqfile.usecases.common import Pipeline
    from pqfile.usecases.documents_query import DocumentsQuery
    from pqfile.usecases.retrieve import Retrieval
    from pqfile.usecases.rotation import Rotation
    from pqfile.usecases.shred import Shredding

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value built on first use, once per process (thread-safe)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None

    def __call__(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    def override(self, value: T | None) -> None:
        """Use ``value`` from now on (tests); None builds afresh on the next call."""
        with self._lock:
            self._value = value

    def reset(self) -> None:
        self.override(None)


@dataclass(frozen=True)
class _Stores:
    db: Database
    documents: PostgresDocumentRepository
    keys: PostgresKeyStore
    audit: PostgresAuditLog


def _postgres(
    protector: SeedProtector,
    attestor: KeyAttestor | None,
    *,
    policy: PoolPolicy | None = None,
) -> _Stores:
    """The PostgreSQL repositories on one connection handle (the function's own database
    role: the database records it as the actor of every audit row the function writes)."""
    from pqfile.adapters.postgres import (
        Database,
        PostgresAuditLog,
        PostgresDocumentRepository,
        PostgresKeyStore,
    )

    db = Database.from_env()
    return _Stores(
        db=db,
        documents=PostgresDocumentRepository(db),
        keys=PostgresKeyStore(db, protector, attestor=attestor, policy=policy),
        audit=PostgresAuditLog(db),
    )


def _seed_protector(settings: Settings) -> SeedProtector:
    from pqfile.adapters.aws import kms_client
    from pqfile.adapters.kms import KmsSeedProtector, UnconfiguredSeedProtector

    if not settings.kms.key_id:
        return UnconfiguredSeedProtector()
    return KmsSeedProtector(kms_client(), settings.kms.key_id)


def _attestor(settings: Settings) -> KeyAttestor | None:
    """KMS HMAC attestation of pool keys; None (every attestation fails closed) where no
    attestation key is configured (fetch, store, audit, record_failure, retrieve)."""
    from pqfile.adapters.aws import kms_client
    from pqfile.adapters.kms_mac import KmsKeyAttestor

    if not settings.kms.attestation_key_id:
        return None
    return KmsKeyAttestor(kms_client(), settings.kms.attestation_key_id)


def _events(settings: Settings) -> EventPublisher:
    """Completion events on the default bus; none where PQFILE_EVENT_BUS=off."""
    from pqfile.adapters.eventbridge import EventBridgePublisher
    from pqfile.usecases.notices import NoEvents

    if settings.events.bus is None:
        return NoEvents()
    return EventBridgePublisher(bus=settings.events.bus)


def _pipeline_on(settings: Settings, stores: _Stores) -> Pipeline:
    from pqfile.adapters.cipher import CryptoCipher
    from pqfile.adapters.s3 import S3BlobStore
    from pqfile.usecases.common import Pipeline

    return Pipeline(
        settings=settings,
        blobs=S3BlobStore(part_size=settings.storage.part_size),
        documents=stores.documents,
        keys=stores.keys,
        audit=stores.audit,
        cipher=CryptoCipher(),
        events=_events(settings),
    )


def _build_pipeline() -> Pipeline:
    """Ingest: S3, PostgreSQL, KMS (where a key is configured), pqfile.crypto."""
    from pqfile.config import Settings

    settings = Settings.from_env()
    return _pipeline_on(settings, _postgres(_seed_protector(settings), _attestor(settings)))


def _build_retrieval() -> Retrieval:
    """Retrieve: the pipeline's adapters, the access rules and the readers' recipient keys on
    the same connection handle, and the identity verifier (built once: its settings fail
    closed without an audience)."""
    from pqfile.adapters.postgres import PostgresAccessPolicy, PostgresRecipientDirectory
    from pqfile.adapters.sts_identity import StsCallerIdentityVerifier
    from pqfile.config import Settings
    from pqfile.usecases.retrieve import Retrieval

    settings = Settings.from_env()
    verifier = StsCallerIdentityVerifier.from_settings()
    stores = _postgres(_seed_protector(settings), _attestor(settings))
    return Retrieval(
        pipeline=_pipeline_on(settings, stores),
        access=PostgresAccessPolicy(stores.db),
        identity=verifier,
        recipients=PostgresRecipientDirectory(stores.db),
    )


def _build_documents_query() -> DocumentsQuery:
    """The documents function: 0017's query functions on its own role, and the identity
    verifier (fails closed without an audience, as retrieve's)."""
    from pqfile.adapters.postgres.connection import Database
    from pqfile.adapters.postgres.queries import PostgresDocumentQuery
    from pqfile.adapters.sts_identity import StsCallerIdentityVerifier
    from pqfile.usecases.documents_query import DocumentsQuery

    return DocumentsQuery(
        query=PostgresDocumentQuery(Database.from_env()),
        identity=StsCallerIdentityVerifier.from_settings(),
    )


def _build_rotation() -> Rotation:
    """The rotate-keys workflow: the key store with its pool policy, S3 for rewraps."""
    from pqfile.adapters.s3_manifest import S3ManifestStore
    from pqfile.adapters.s3_rewrap import S3PackageStore
    from pqfile.config import PoolSettings, Settings
    from pqfile.usecases.rotation import Rotation

    settings = Settings.from_env()
    settings.require("PQFILE_ENCRYPTED_BUCKET", "PQFILE_KMS_KEY_ID")
    pool = PoolSettings.from_env()
    stores = _postgres(_seed_protector(settings), _attestor(settings), policy=pool.policy)
    packages = S3PackageStore()
    return Rotation(
        keys=stores.keys,
        documents=stores.documents,
        packages=packages,
        audit=stores.audit,
        encrypted_bucket=settings.storage.encrypted_bucket,
        manifests=S3ManifestStore(packages.s3),
        suites=pool.suites,
        batch_size=pool.rewrap_batch,
        concurrency=pool.rewrap_concurrency,
        events=_events(settings),
    )


def _build_shredding() -> Shredding:
    """The shred step: its own database role (pqfile_shred) and S3 object versions."""
    from pqfile.adapters.postgres.connection import Database
    from pqfile.adapters.postgres.keys import PostgresShredRepository
    from pqfile.adapters.s3_versions import S3PackageVersions
    from pqfile.config import Settings, ShredSettings
    from pqfile.usecases.shred import Shredding

    return Shredding(
        keys=PostgresShredRepository(Database.from_env()),
        versions=S3PackageVersions(),
        backup_retention_days=ShredSettings.from_env().backup_retention_days,
        events=_events(Settings.from_env()),
    )


def _build_audit_reader() -> PostgresAuditLog:
    from pqfile.adapters.postgres.audit import PostgresAuditLog
    from pqfile.adapters.postgres.connection import Database

    return PostgresAuditLog(Database.from_env())


def _build_audit_digester() -> AuditDigester:
    """The digest-signing function: the audit rows as pqfile_auditor (PQFILE_DATABASE_URL),
    the KMS signing key and the digest bucket (PQFILE_DIGEST_*)."""
    from pqfile.adapters.aws import kms_client
    from pqfile.adapters.kms import KmsDigestSigner
    from pqfile.adapters.postgres.audit_leaves import PostgresAuditLeaves
    from pqfile.adapters.postgres.connection import Database
    from pqfile.adapters.s3_digests import S3DigestStore
    from pqfile.config import AuditDigestSettings
    from pqfile.usecases.audit_digest import AuditDigester

    settings = AuditDigestSettings.from_env()
    settings.require()
    return AuditDigester(
        leaves=PostgresAuditLeaves(Database.from_env()),
        signer=KmsDigestSigner(kms_client(), settings.key_arn or "", settings.algorithm),
        store=S3DigestStore(settings.bucket or ""),
    )


def _build_admin() -> Admin:
    """The admin function: the identity verifier, and the connections of its own role
    (``pqfile_admin_function``, PQFILE_DATABASE_URL) and of the auditor
    (PQFILE_AUDITOR_DATABASE_URL), opened on first use."""
    import dataclasses

    from pqfile.adapters.eventbridge import EventBridgePublisher
    from pqfile.adapters.postgres.connection import Database
    from pqfile.adapters.postgres.operator import PostgresOperatorBackend
    from pqfile.adapters.stepfunctions import StepFunctionsWorkflow
    from pqfile.adapters.sts_identity import StsCallerIdentityVerifier
    from pqfile.config import (
        AdminSettings,
        CliSettings,
        ConfigurationError,
        DatabaseSettings,
        EventSettings,
        PoolSettings,
    )
    from pqfile.usecases.admin import Admin

    verifier = StsCallerIdentityVerifier.from_settings()
    admin = AdminSettings.from_env()
    auditor_url = admin.auditor_database_url
    if auditor_url is None:
        raise ConfigurationError("PQFILE_AUDITOR_DATABASE_URL is not set")

    def auditor() -> Database:
        # The auditor's own password secret, never the admin role's (database_role_passwords).
        return Database.from_env(dataclasses.replace(
            DatabaseSettings.from_env(), url=auditor_url,
            password_secret_arn=admin.auditor_password_secret_arn))  # fmt: skip

    pool = PoolSettings.from_env()  # the deployment's: `keys status` judges its floor
    backend = PostgresOperatorBackend(Database.from_env, auditor, policy=pool.policy,
                                      kept_suites=pool.suites)  # fmt: skip
    bus = EventSettings.from_env().bus
    machine = CliSettings.from_env().rotation_state_machine
    return Admin(backend=backend, identity=verifier,
                 events=EventBridgePublisher(bus=bus) if bus else None,
                 rotation=StepFunctionsWorkflow(machine) if machine else None)  # fmt: skip


def run_migrations() -> list[str]:
    """Apply the pending migrations on a connection of its own (the migrate function: the
    only one configured with the owner's credentials), closed afterwards."""
    from pqfile.adapters.postgres.connection import Database
    from pqfile.adapters.postgres.migrations import migrate

    with Database.from_env() as db:
        return migrate(db)


def set_login_passwords(secrets: Mapping[str, str]) -> list[str]:
    """The roles' password logins (terraform/proxy.tf: the RDS Proxy's, or
    ``database_role_passwords``'): each role (key) gets the password of its Secrets Manager
    secret (value: the ARN, JSON ``username`` / ``password``) and leaves rds_iam. The
    migrate function only, with the owner's credentials."""
    from pqfile.adapters.postgres.connection import Database, role_password
    from pqfile.adapters.postgres.logins import set_role_logins

    passwords = {role: role_password(arn, role) for role, arn in secrets.items()}
    with Database.from_env() as db:
        return set_role_logins(db, passwords)


#: The ingest functions' dependencies.
pipeline: Lazy[Pipeline] = Lazy(_build_pipeline)
#: The retrieve function's dependencies.
retrieval: Lazy[Retrieval] = Lazy(_build_retrieval)
#: The documents query function's dependencies.
documents_query: Lazy[DocumentsQuery] = Lazy(_build_documents_query)
#: The rotate-keys functions' dependencies.
rotation: Lazy[Rotation] = Lazy(_build_rotation)
#: The shred function's dependencies.
shredding: Lazy[Shredding] = Lazy(_build_shredding)
#: The admin function's dependencies.
admin: Lazy[Admin] = Lazy(_build_admin)
#: The audit verifier's read-only audit log (pqfile_auditor).
audit_reader: Lazy[PostgresAuditLog] = Lazy(_build_audit_reader)
#: The digest-signing function's use case.
audit_digester: Lazy[AuditDigester] = Lazy(_build_audit_digester)
