"""PostgreSQL adapter (pg8000): one repository per aggregate, SQL only (docs/KEYS.md).

- :mod:`.connection`: connection parameters, ``Database`` / ``Session``, error translation.
- :mod:`.migrations`: ``migrate(db)`` over ``sql/migrations/NNNN_*.sql``.
- :mod:`.keys`: ``encryption_keys`` (ports.KeyRepository).
- :mod:`.rotations`: ``key_rotations`` (ports.RotationRepository).
- :mod:`.audit`: ``access_logs`` (ports.AuditLog) and chain verification.
- :mod:`.documents`: ``documents`` (ports.DocumentRepository).
- :mod:`.access`: ``access_rules`` (ports.AccessPolicy; grant, revoke, list) and
  ``recipient_keys`` (ports.RecipientDirectory; register, revoke, list).
- :mod:`.keystore`: the key storage unit of work, and ``PostgresKeyStore``: the domain's
  :class:`pqfile.keys.pool.KeyPool` wired to it.

The names below are re-exported for callers that import them from the package.
"""

from pqfile.adapters.postgres.access import (
    PostgresAccessPolicy,
    PostgresAccessRules,
    PostgresRecipientDirectory,
    PostgresRecipientKeys,
)
from pqfile.adapters.postgres.audit import AuditRepository, PostgresAuditLog, append_audit
from pqfile.adapters.postgres.connection import (
    AuditRefusedError,
    ConnectionParams,
    Database,
    DatabaseError,
    ImmutableRowError,
    InvariantError,
    PermissionDeniedError,
    Runner,
    Session,
    connect,
    connect_url,
    params_from_env,
    parse_database_url,
    ssl_context_for,
)
from pqfile.adapters.postgres.documents import PostgresDocumentRepository
from pqfile.adapters.postgres.keys import PostgresKeyRepository
from pqfile.adapters.postgres.keystore import PostgresKeyStorage, PostgresKeyStore
from pqfile.adapters.postgres.migrations import (
    Migration,
    MigrationError,
    applied_versions,
    default_migrations_dir,
    load_migrations,
    migrate,
)
from pqfile.adapters.postgres.rotations import PostgresRotationRepository
from pqfile.keys.custody import seed_context
from pqfile.keys.model import IllegalTransitionError, SelectedKey
from pqfile.keys.rotation_runs import RotationRun

__all__ = [
    "AuditRefusedError",
    "AuditRepository",
    "ConnectionParams",
    "Database",
    "DatabaseError",
    "IllegalTransitionError",
    "ImmutableRowError",
    "InvariantError",
    "Migration",
    "MigrationError",
    "PermissionDeniedError",
    "PostgresAccessPolicy",
    "PostgresAccessRules",
    "PostgresAuditLog",
    "PostgresDocumentRepository",
    "PostgresKeyRepository",
    "PostgresKeyStorage",
    "PostgresKeyStore",
    "PostgresRecipientDirectory",
    "PostgresRecipientKeys",
    "PostgresRotationRepository",
    "RotationRun",
    "Runner",
    "SelectedKey",
    "Session",
    "append_audit",
    "applied_versions",
    "connect",
    "connect_url",
    "default_migrations_dir",
    "load_migrations",
    "migrate",
    "params_from_env",
    "parse_database_url",
    "seed_context",
    "ssl_context_for",
]
