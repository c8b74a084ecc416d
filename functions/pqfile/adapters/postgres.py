"""PostgreSQL adapter (pg8000): migrations, the key pool, the document index, the audit trail.

API (docs/KEYS.md describes the behaviour):

- ``Database.from_url(url)`` / ``Database.from_env()``: one pg8000 connection per thread,
  prepared statements cached per connection; ``transaction()`` is a context manager.
  ``PQFILE_DATABASE_URL`` (``postgresql://user:pass@host:port/db?sslmode=verify-full``),
  else ``PQFILE_DATABASE_SECRET_ARN`` (Secrets Manager JSON), with
  ``PQFILE_DATABASE_IAM_AUTH=1`` for an RDS IAM token instead of a password.
- ``migrate(db, directory=None) -> list[str]``: applies ``sql/migrations/NNNN_*.sql`` in
  order, each in its own transaction, recording versions and checksums; safe to re-run.
- ``PostgresKeyStore(db, protector, policy=..., cache=..., actor=...)`` (ports.KeyStore):
  ``select_encryption_key(suite, plaintext_size=0) -> PublicKey``,
  ``select_key_record(suite, plaintext_size=0) -> SelectedKey``, ``get_key(key_id) -> KeyRecord``,
  ``public_key(key_id)``, ``load_secret_key(key_id, purpose)``, ``load_decryption_key(key_id)``,
  ``create_keys(suite, count, actor)``, ``refill(suite, actor)``,
  ``queue_due_for_rotation(actor)``, ``revoke(key_id, reason, actor)``,
  ``expire(key_id, actor)``, ``status_summary()``; rotation runs: ``rotations(status)``,
  ``begin_rotation(id)``, ``documents_on_key(key_id)``, ``record_rewrap(id, document_id, ...)``,
  ``finish_rotation(id)``.
- ``PostgresDocumentRepository(db)`` (ports.DocumentRepository): ``begin``, ``get``,
  ``find_by_source``, ``find_by_encrypted_object``, ``assign_key``, ``mark_stored``,
  ``mark_plaintext_deleted``, ``mark_failed``.
- ``PostgresAuditLog(db)`` (ports.AuditLog): ``append(...) -> seq``, ``tail(limit)``,
  ``head()``, ``verify_chain() -> ChainReport``.

Errors: pg8000 errors become ``TransientError`` (connection lost, serialization failure,
deadlock, too many connections), ``PermissionDeniedError``, ``IllegalTransitionError`` (the
database refused a key status change), ``ImmutableRowError`` or ``DatabaseError``. Only the
server's primary message is kept: its DETAIL may quote row values.
"""

# SQL text only ever interpolates this module's constant column lists; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.native
from botocore.exceptions import BotoCoreError, ClientError

from pqfile.crypto import kem
from pqfile.errors import (
    CustodyError,
    DocumentNotFoundError,
    KeyNotFoundError,
    KeyNotUsableError,
    NoActiveKeyError,
    PQFileError,
    TransientError,
)
from pqfile.keys.audit_chain import AuditRow, ChainReport, canonical_details, verify_rows
from pqfile.keys.cache import UnwrappedKeyCache
from pqfile.keys.model import KeyRecord, KeyStatus, Purpose, usable_for
from pqfile.keys.policy import PoolPolicy, usage_spread
from pqfile.ports import DocumentRecord, SeedProtector

# --- errors ------------------------------------------------------------------------------


class DatabaseError(PQFileError):
    """The database refused a statement (not retryable)."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class PermissionDeniedError(DatabaseError):
    """The connected role lacks a privilege (least privilege at work)."""


class ImmutableRowError(DatabaseError):
    """An append-only or immutable row was to be changed (audit rows, key material)."""


class IllegalTransitionError(KeyNotUsableError):
    """A key status change the lifecycle forbids (e.g. revoked -> active)."""


class MigrationError(PQFileError):
    """A migration is missing, changed after being applied, or failed."""


_DB_ERRORS = (pg8000.native.DatabaseError, pg8000.native.InterfaceError, OSError)
_TRANSIENT_STATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300", "53400"}


def _sqlstate(exc: BaseException) -> str:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return str(info.get("C", ""))


def _connection_lost(exc: BaseException) -> bool:
    """Is this connection unusable now (so the next call must open a new one)?"""
    if not isinstance(exc, pg8000.native.DatabaseError):
        return True  # InterfaceError, socket errors
    code = _sqlstate(exc)
    return code.startswith("08") or code in {"57P01", "57P02", "57P03"}


def _translate(exc: BaseException) -> PQFileError:
    if isinstance(exc, pg8000.native.DatabaseError):
        info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        code = str(info.get("C", ""))
        message = str(info.get("M", "database error"))
        if code in _TRANSIENT_STATES or code.startswith("08"):
            return TransientError(f"database: {message}")
        if code == "42501":
            return PermissionDeniedError(message, code)
        if code == "PQ001":
            return IllegalTransitionError(message)
        if code in {"PQ002", "PQ003"}:
            return ImmutableRowError(message, code)
        return DatabaseError(message, code or None)
    return TransientError(f"database connection failed: {type(exc).__name__}")


# --- connections ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionParams:
    user: str
    host: str = "localhost"
    port: int = 5432
    database: str | None = None
    password: str | None = None
    unix_sock: str | None = None
    sslmode: str = "disable"
    sslrootcert: str | None = None
    timeout: float | None = 10.0
    application_name: str = "pqfile"

    def __repr__(self) -> str:  # never show the password
        return (
            f"ConnectionParams(user={self.user!r}, host={self.host!r}, port={self.port}, "
            f"database={self.database!r}, sslmode={self.sslmode!r})"
        )


def parse_database_url(url: str) -> ConnectionParams:
    """``postgresql://user[:password]@host[:port]/database?sslmode=...&sslrootcert=...``.

    ``?host=/path`` selects a Unix socket directory (as libpq does).
    """
    parts = urlsplit(url)
    if parts.scheme not in {"postgresql", "postgres"}:
        raise ValueError("database URL must start with postgresql://")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    sslmode = query.get("sslmode", "disable")
    if sslmode not in {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}:
        raise ValueError(f"unsupported sslmode {sslmode!r}")
    unix_dir = query.get("host")
    port = parts.port or int(query.get("port", "5432"))
    timeout = float(query["connect_timeout"]) if "connect_timeout" in query else 10.0
    return ConnectionParams(
        user=unquote(parts.username or "postgres"),
        host=parts.hostname or "localhost",
        port=port,
        database=unquote(parts.path.lstrip("/")) or None,
        password=unquote(parts.password) if parts.password is not None else None,
        unix_sock=f"{unix_dir}/.s.PGSQL.{port}" if unix_dir else None,
        sslmode=sslmode,
        sslrootcert=query.get("sslrootcert"),
        timeout=timeout,
        application_name=query.get("application_name", "pqfile"),
    )


def ssl_context_for(params: ConnectionParams) -> ssl.SSLContext | bool | None:
    """pg8000's ``ssl_context``: False = no TLS, None = TLS if offered (unverified),
    a context = TLS required (verified for verify-ca / verify-full)."""
    if params.sslmode == "disable":
        return False
    if params.sslmode in {"allow", "prefer"}:
        return None
    if params.sslmode == "require":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context(cafile=params.sslrootcert)
    ctx.check_hostname = params.sslmode == "verify-full"
    return ctx


def connect(params: ConnectionParams) -> pg8000.native.Connection:
    try:
        return pg8000.native.Connection(
            user=params.user,
            host=params.host,
            port=params.port,
            database=params.database,
            password=params.password,
            unix_sock=params.unix_sock,
            ssl_context=ssl_context_for(params),
            timeout=params.timeout,
            application_name=params.application_name,
        )
    except (pg8000.native.DatabaseError, pg8000.native.InterfaceError, OSError) as exc:
        raise _translate(exc) from None


def connect_url(url: str) -> pg8000.native.Connection:
    return connect(parse_database_url(url))


def params_from_env(env: Mapping[str, str] | None = None) -> Callable[[], ConnectionParams]:
    """How to build connection parameters from the environment (re-evaluated per connect,
    so a rotated secret or a fresh 15-minute IAM token is picked up)."""
    env = os.environ if env is None else env
    url = env.get("PQFILE_DATABASE_URL")
    secret_arn = env.get("PQFILE_DATABASE_SECRET_ARN")
    iam = env.get("PQFILE_DATABASE_IAM_AUTH", "").lower() in {"1", "true", "yes"}
    if not url and not secret_arn:
        raise PQFileError("set PQFILE_DATABASE_URL or PQFILE_DATABASE_SECRET_ARN")

    def build() -> ConnectionParams:
        if url:
            params = parse_database_url(url)
        else:
            params = _params_from_secret(str(secret_arn), env)
        if iam:
            params = _with_iam_token(params, env)
        return params

    return build


def _params_from_secret(secret_arn: str, env: Mapping[str, str]) -> ConnectionParams:
    from pqfile.adapters.aws import client

    try:
        raw = client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
        secret = json.loads(raw)
    except (BotoCoreError, ClientError, KeyError, ValueError) as exc:
        raise TransientError(f"database secret unavailable: {type(exc).__name__}") from None
    return ConnectionParams(
        user=str(secret["username"]),
        password=str(secret.get("password")) if secret.get("password") else None,
        host=str(secret.get("host") or env.get("PQFILE_DATABASE_HOST", "localhost")),
        port=int(secret.get("port") or env.get("PQFILE_DATABASE_PORT", "5432")),
        database=str(secret.get("dbname") or env.get("PQFILE_DATABASE_NAME", "pqfile")),
        sslmode=env.get("PQFILE_DATABASE_SSLMODE", "verify-full"),
        sslrootcert=env.get("PQFILE_DATABASE_SSLROOTCERT"),
    )


def _with_iam_token(params: ConnectionParams, env: Mapping[str, str]) -> ConnectionParams:
    from pqfile.adapters.aws import client

    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    token = client("rds").generate_db_auth_token(
        DBHostname=params.host, Port=params.port, DBUsername=params.user, Region=region
    )
    sslmode = params.sslmode if params.sslmode.startswith("verify") else "verify-full"
    return ConnectionParams(
        user=params.user,
        host=params.host,
        port=params.port,
        database=params.database,
        password=str(token),
        sslmode=sslmode,
        sslrootcert=params.sslrootcert,
        timeout=params.timeout,
        application_name=params.application_name,
    )


class Session:
    """One connection and its prepared statements. Not shared between threads."""

    def __init__(self, conn: pg8000.native.Connection) -> None:
        self.conn = conn
        self._prepared: dict[str, Any] = {}

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        """A parameterised statement, prepared once per connection (one round trip)."""
        stmt = self._prepared.get(sql)
        if stmt is None:
            stmt = self.conn.prepare(sql)
            self._prepared[sql] = stmt
        return cast(list[list[Any]], stmt.run(**params) or [])

    def script(self, sql: str) -> None:
        """Several statements without parameters (simple query protocol)."""
        self.conn.run(sql)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


class Database:
    """A thread-safe handle: each thread gets its own connection, opened on first use."""

    def __init__(self, connect_fn: Callable[[], pg8000.native.Connection]) -> None:
        self._connect = connect_fn
        self._local = threading.local()
        self._sessions: list[Session] = []
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> Database:
        params = parse_database_url(url)
        return cls(lambda: connect(params))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Database:
        build = params_from_env(env)
        return cls(lambda: connect(build()))

    def _session(self) -> Session:
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            session = Session(self._connect())
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _drop(self, session: Session) -> None:
        session.close()
        self._local.session = None
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """Autocommit use of this thread's connection; errors translated."""
        session = self._session()
        try:
            yield session
        except _DB_ERRORS as exc:
            if _connection_lost(exc):
                self._drop(session)
            raise _translate(exc) from None

    @contextlib.contextmanager
    def transaction(self, isolation: str | None = None) -> Iterator[Session]:
        """BEGIN ... COMMIT, or ROLLBACK on any exception."""
        session = self._session()
        begin = "BEGIN" if isolation is None else f"BEGIN ISOLATION LEVEL {isolation}"
        try:
            session.script(begin)
            try:
                yield session
            except BaseException:
                with contextlib.suppress(Exception):
                    session.script("ROLLBACK")
                raise
            session.script("COMMIT")
        except _DB_ERRORS as exc:
            if _connection_lost(exc):
                self._drop(session)
            else:
                with contextlib.suppress(Exception):
                    session.script("ROLLBACK")
            raise _translate(exc) from None

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        with self.session() as s:
            return s.run(sql, **params)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection (pg8000 connections hold reference cycles, so an
        unreferenced Database may keep its connections open until the garbage collector runs)."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()


# --- migrations ---------------------------------------------------------------------------

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_MIGRATION_LOCK = 0x70716669  # "pqfi": one migrator at a time per database


def default_migrations_dir() -> Path:
    env = os.environ.get("PQFILE_MIGRATIONS_DIR")
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).resolve().parents[3] / "sql" / "migrations",
        Path.cwd() / "sql" / "migrations",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise MigrationError("sql/migrations not found (set PQFILE_MIGRATIONS_DIR)")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file name must be NNNN_name.sql: {path.name}")
        migrations.append(
            Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8"))
        )
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migration versions must run 1..N without gaps: {versions}")
    return migrations


def migrate(db: Database, directory: Path | None = None) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    migrations = load_migrations(directory or default_migrations_dir())
    applied_now: list[str] = []
    with db.transaction() as s:
        s.run("SELECT pg_advisory_xact_lock(:k)", k=_MIGRATION_LOCK)
        s.script(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        newest = s.run("SELECT max(version) FROM schema_migrations")[0][0]
        if newest is not None and int(newest) > len(migrations):
            raise MigrationError(
                f"the database is at version {int(newest):04d}, newer than these migrations "
                f"({len(migrations):04d}): deploy the newer code instead"
            )
    for migration in migrations:
        with db.transaction() as s:
            # Serialise concurrent migrators; the lock ends with the transaction.
            s.run("SELECT pg_advisory_xact_lock(:k)", k=_MIGRATION_LOCK)
            rows = s.run(
                "SELECT checksum FROM schema_migrations WHERE version = :v", v=migration.version
            )
            if rows:
                if rows[0][0] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} changed after it "
                        "was applied; migrations are forward-only: add a new one"
                    )
                continue
            s.script(migration.sql)
            s.run(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)",
                v=migration.version,
                n=migration.name,
                c=migration.checksum,
            )
            applied_now.append(f"{migration.version:04d}_{migration.name}")
    return applied_now


def applied_versions(db: Database) -> list[int]:
    rows = db.run("SELECT version FROM schema_migrations ORDER BY version")
    return [int(r[0]) for r in rows]


# --- audit -------------------------------------------------------------------------------

_AUDIT_COLUMNS = (
    "seq, occurred_at, operation, outcome, actor, document_id, key_id, request_id, details, "
    "prev_hash, row_hash, db_role"
)
_APPEND_SQL = (
    "SELECT audit_append(:operation, :outcome, :actor, :document_id, :key_id, :request_id, "
    ":details)"
)


def _audit_row(r: Sequence[Any]) -> AuditRow:
    return AuditRow(
        seq=int(r[0]),
        occurred_at=r[1],
        operation=r[2],
        outcome=r[3],
        actor=r[4],
        document_id=r[5],
        key_id=r[6],
        request_id=r[7],
        details=r[8],
        prev_hash=bytes(r[9]),
        row_hash=bytes(r[10]),
        db_role=r[11],
    )


def append_audit(
    session: Session,
    *,
    operation: str,
    outcome: str,
    actor: str,
    document_id: str | None = None,
    key_id: str | None = None,
    request_id: str | None = None,
    details: Mapping[str, object] | None = None,
) -> int:
    """Append inside the caller's transaction (the row commits or rolls back with it)."""
    rows = session.run(
        _APPEND_SQL,
        operation=operation,
        outcome=outcome,
        actor=actor,
        document_id=document_id,
        key_id=key_id,
        request_id=request_id,
        details=canonical_details(details),
    )
    return int(rows[0][0])


class PostgresAuditLog:
    """ports.AuditLog over ``access_logs``; rows are appended only via ``audit_append()``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def append(
        self,
        *,
        operation: str,
        outcome: str,
        actor: str,
        document_id: str | None = None,
        key_id: str | None = None,
        request_id: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> int:
        with self._db.session() as s:
            return append_audit(
                s,
                operation=operation,
                outcome=outcome,
                actor=actor,
                document_id=document_id,
                key_id=key_id,
                request_id=request_id,
                details=details,
            )

    def tail(self, limit: int = 20) -> Iterator[Mapping[str, object]]:
        rows = self._db.run(
            f"SELECT {_AUDIT_COLUMNS} FROM access_logs ORDER BY seq DESC LIMIT :n",
            n=max(0, int(limit)),
        )
        return iter([_audit_row(r).as_dict() for r in reversed(rows)])

    def head(self) -> tuple[int, bytes]:
        rows = self._db.run("SELECT seq, row_hash FROM audit_chain_head WHERE singleton")
        return int(rows[0][0]), bytes(rows[0][1])

    def verify_chain(
        self, batch_size: int = 5000, anchors: Mapping[int, bytes] | None = None
    ) -> ChainReport:
        """Recompute every hash from a consistent snapshot; name the first broken row."""
        with self._db.transaction("REPEATABLE READ READ ONLY") as s:
            head_rows = s.run("SELECT seq, row_hash FROM audit_chain_head WHERE singleton")
            head = (int(head_rows[0][0]), bytes(head_rows[0][1]))

            def rows() -> Iterator[AuditRow]:
                after = -1
                while True:
                    chunk = s.run(
                        f"SELECT {_AUDIT_COLUMNS} FROM access_logs WHERE seq > :after "
                        "ORDER BY seq LIMIT :n",
                        after=after,
                        n=batch_size,
                    )
                    for r in chunk:
                        yield _audit_row(r)
                    if len(chunk) < batch_size:
                        return
                    after = int(chunk[-1][0])

            return verify_rows(rows(), head, anchors)


# --- keys ----------------------------------------------------------------------------------

_KEY_COLUMNS = (
    "id, suite, public_key, kms_key_arn, status, usage_count, bytes_encrypted, created_at, "
    "activated_at, rotate_after, rotation_queued_at, expired_at, revoked_at, revoke_reason, "
    "last_used_at"
)

# Least-used active key of a suite; SKIP LOCKED lets concurrent callers take the next one
# instead of queueing behind each other. The outer status check re-validates the row after
# the lock (a key revoked meanwhile is never handed out). Few columns come back: this is
# the hot path; public keys never change, so callers take them from a per-process cache.
_SELECT_KEY_SQL = """
UPDATE encryption_keys AS k
   SET usage_count = k.usage_count + 1,
       bytes_encrypted = k.bytes_encrypted + :nbytes,
       last_used_at = now()
 WHERE k.id = (
         SELECT c.id FROM encryption_keys AS c
          WHERE c.suite = :suite AND c.status = 'active' AND c.rotate_after > now()
            AND c.usage_count < :max_documents AND c.bytes_encrypted < :max_bytes
          ORDER BY c.usage_count, c.id
          LIMIT 1
          FOR UPDATE SKIP LOCKED)
   AND k.status = 'active'
RETURNING k.id, k.suite, k.usage_count, k.bytes_encrypted
"""


_SELECT_KEY_WAIT_SQL = _SELECT_KEY_SQL.replace("FOR UPDATE SKIP LOCKED", "FOR UPDATE")


@dataclass(frozen=True)
class SelectedKey:
    """What a selection returns: the key to encrypt to, and its usage after this use."""

    key_id: str
    suite: str
    usage_count: int
    bytes_encrypted: int


def _key_record(r: Sequence[Any]) -> KeyRecord:
    return KeyRecord(
        key_id=r[0],
        suite=r[1],
        public_key=bytes(r[2]),
        kms_key_arn=r[3],
        status=KeyStatus.from_name(r[4]),
        usage_count=int(r[5]),
        bytes_encrypted=int(r[6]),
        created_at=r[7],
        activated_at=r[8],
        rotate_after=r[9],
        rotation_queued_at=r[10],
        expired_at=r[11],
        revoked_at=r[12],
        revoke_reason=r[13],
        last_used_at=r[14],
    )


_ROTATION_COLUMNS = (
    "id, old_key_id, new_key_id, reason, status, documents_total, documents_rewrapped, "
    "documents_failed, error"
)


@dataclass(frozen=True)
class RotationRun:
    """One row of ``key_rotations``."""

    rotation_id: int
    old_key_id: str
    new_key_id: str | None
    reason: str
    status: str  # queued | running | completed | failed
    documents_total: int
    documents_rewrapped: int
    documents_failed: int
    error: str | None


def _rotation(r: Sequence[Any]) -> RotationRun:
    return RotationRun(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), int(r[6]), int(r[7]), r[8])


def _lock_rotation(s: Session, rotation_id: int) -> RotationRun:
    """The rotation run, its row locked until the transaction ends."""
    rows = s.run(
        f"SELECT {_ROTATION_COLUMNS} FROM key_rotations WHERE id = :id FOR UPDATE",
        id=rotation_id,
    )
    if not rows:
        raise PQFileError(f"no rotation run {rotation_id}")
    return _rotation(rows[0])


def seed_context(key_id: str, suite: str) -> dict[str, str]:
    """The KMS encryption context of a key's seed: binds the wrapped seed to its row."""
    return {"pqfile:purpose": "key-seed", "pqfile:key-id": key_id, "pqfile:suite": suite}


def _suite_name(suite: kem.Suite | str) -> str:
    return suite.value if isinstance(suite, kem.Suite) else kem.Suite.from_name(suite).value


class PostgresKeyStore:
    """The key pool: selection, custody (KMS-wrapped seeds) and the lifecycle, audited."""

    def __init__(
        self,
        db: Database,
        protector: SeedProtector,
        *,
        policy: PoolPolicy | None = None,
        cache: UnwrappedKeyCache[kem.SecretKey] | None = None,
        actor: str = "pqfile",
    ) -> None:
        self._db = db
        self._protector = protector
        self.policy = policy or PoolPolicy()
        self.cache: UnwrappedKeyCache[kem.SecretKey] = (
            cache if cache is not None else UnwrappedKeyCache()
        )
        self._actor = actor
        self._public_keys: dict[str, kem.PublicKey] = {}

    # -- selection (ingest) --

    def select_key_record(self, suite: kem.Suite | str, plaintext_size: int = 0) -> SelectedKey:
        """Take the least-used active key of ``suite`` and count one use of it."""
        name = _suite_name(suite)
        for attempt in range(3):
            # Every eligible key may be locked at once when the pool is smaller than the
            # number of callers: the last attempt waits for a lock instead of skipping.
            rows = self._db.run(
                _SELECT_KEY_SQL if attempt < 2 else _SELECT_KEY_WAIT_SQL,
                suite=name,
                nbytes=max(0, int(plaintext_size)),
                max_documents=self.policy.max_documents,
                max_bytes=self.policy.max_bytes,
            )
            if rows:
                r = rows[0]
                return SelectedKey(r[0], r[1], int(r[2]), int(r[3]))
            # Nothing returned: no eligible key, or every eligible key was locked right now.
            if not self._has_eligible(name):
                break
        raise NoActiveKeyError(f"no active {name} key in the pool (run `pqfile keys refill`)")

    def _has_eligible(self, suite: str) -> bool:
        rows = self._db.run(
            "SELECT count(*) FROM encryption_keys WHERE suite = :suite AND status = 'active' "
            "AND rotate_after > now() AND usage_count < :max_documents "
            "AND bytes_encrypted < :max_bytes",
            suite=suite,
            max_documents=self.policy.max_documents,
            max_bytes=self.policy.max_bytes,
        )
        return int(rows[0][0]) > 0

    def select_encryption_key(
        self, suite: kem.Suite | str, plaintext_size: int = 0
    ) -> kem.PublicKey:
        selected = self.select_key_record(suite, plaintext_size)
        cached = self._public_keys.get(selected.key_id)
        return cached if cached is not None else self.public_key(selected.key_id)

    def _public(self, key_id: str, suite: str, raw: bytes) -> kem.PublicKey:
        # Public keys never change (trigger-enforced): check and parse each one once.
        cached = self._public_keys.get(key_id)
        if cached is None:
            cached = kem.public_key_from_bytes(kem.Suite.from_name(suite), raw)
            if cached.key_id != key_id:
                raise CustodyError(f"public key does not match key id {key_id}")
            if len(self._public_keys) >= 4096:
                self._public_keys.clear()
            self._public_keys[key_id] = cached
        return cached

    # -- lookups --

    def get_key(self, key_id: str) -> KeyRecord:
        rows = self._db.run(f"SELECT {_KEY_COLUMNS} FROM encryption_keys WHERE id = :id", id=key_id)
        if not rows:
            raise KeyNotFoundError(f"no key {key_id}")
        return _key_record(rows[0])

    def public_key(self, key_id: str) -> kem.PublicKey:
        record = self.get_key(key_id)
        return self._public(record.key_id, record.suite, record.public_key)

    def list_keys(
        self, suite: str | None = None, status: KeyStatus | None = None
    ) -> list[KeyRecord]:
        rows = self._db.run(
            f"SELECT {_KEY_COLUMNS} FROM encryption_keys "
            "WHERE (CAST(:suite AS text) IS NULL OR suite = CAST(:suite AS text)) "
            "AND (CAST(:status AS text) IS NULL OR status = CAST(:status AS text)) "
            "ORDER BY suite, created_at, id",
            suite=suite,
            status=None if status is None else status.value,
        )
        return [_key_record(r) for r in rows]

    # -- custody --

    def load_secret_key(self, key_id: str, purpose: Purpose = Purpose.DECRYPT) -> kem.SecretKey:
        """Unwrap a key's seed for ``purpose``. The status is read from the database on every
        call, so a revoked key is refused even while its secret sits in the cache."""
        rows = self._db.run(
            "SELECT suite, status, wrapped_seed FROM encryption_keys WHERE id = :id", id=key_id
        )
        if not rows:
            raise KeyNotFoundError(f"no key {key_id}")
        suite_name, status_name, wrapped = rows[0][0], rows[0][1], bytes(rows[0][2])
        status = KeyStatus.from_name(status_name)
        if status is KeyStatus.REVOKED:
            self.cache.discard(key_id)
        if not usable_for(status, purpose):
            raise KeyNotUsableError(
                f"key {key_id} is {status.value}: not usable to {purpose.value}"
            )
        cached = self.cache.get(key_id)
        if cached is not None:
            return cached
        suite = kem.Suite.from_name(suite_name)
        seed = self._protector.unwrap(wrapped, seed_context(key_id, suite.value))
        try:
            secret = kem.secret_key_from_seed(suite, seed)
        except PQFileError:
            raise CustodyError(f"unwrapped seed for key {key_id} is malformed") from None
        if secret.public_key().key_id != key_id:
            raise CustodyError(f"unwrapped seed does not belong to key {key_id}")
        self.cache.put(key_id, secret)
        return secret

    def load_decryption_key(self, key_id: str) -> kem.SecretKey:
        return self.load_secret_key(key_id, Purpose.DECRYPT)

    # -- lifecycle (pqfile_rotate) --

    def create_keys(
        self,
        suite: kem.Suite | str,
        count: int,
        *,
        actor: str | None = None,
        request_id: str | None = None,
    ) -> list[KeyRecord]:
        """Generate ``count`` keys, wrap their seeds with KMS and insert them, audited."""
        name = _suite_name(suite)
        with self._db.transaction() as s:
            return self._create_in(s, name, count, actor or self._actor, request_id)

    def _create_in(
        self, s: Session, suite: str, count: int, actor: str, request_id: str | None
    ) -> list[KeyRecord]:
        # KMS calls first, audit rows last: audit_append() holds the chain head's row lock
        # until this transaction commits, and every other audit writer waits on it.
        wrapped_keys: list[tuple[str, bytes, bytes, str]] = []
        for _ in range(count):
            secret = kem.generate(kem.Suite.from_name(suite))
            public = secret.public_key()
            wrapped, arn = self._protector.wrap(secret.seed, seed_context(public.key_id, suite))
            wrapped_keys.append((public.key_id, public.raw, wrapped, arn))
        created: list[KeyRecord] = []
        for key_id, raw, wrapped, arn in wrapped_keys:
            rows = s.run(
                "INSERT INTO encryption_keys (id, suite, public_key, wrapped_seed, kms_key_arn, "
                "rotate_after) VALUES (:id, :suite, :pk, :ws, :arn, now() + "
                "make_interval(secs => :age)) "
                f"RETURNING {_KEY_COLUMNS}",
                id=key_id,
                suite=suite,
                pk=raw,
                ws=wrapped,
                arn=arn,
                age=self.policy.max_age.total_seconds(),
            )
            created.append(_key_record(rows[0]))
        for record in created:
            append_audit(
                s,
                operation="key.create",
                outcome="success",
                actor=actor,
                key_id=record.key_id,
                request_id=request_id,
                details={"suite": suite, "kms_key_arn": record.kms_key_arn},
            )
        return created

    def refill(
        self, suite: kem.Suite | str, *, actor: str | None = None, request_id: str | None = None
    ) -> list[KeyRecord]:
        """Top the pool up to the policy's target when it is below its floor."""
        name = _suite_name(suite)
        with self._db.transaction() as s:
            # One refiller per suite at a time; others wait, then see the refilled pool.
            s.run("SELECT pg_advisory_xact_lock(hashtext(:k))", k=f"pqfile:refill:{name}")
            rows = s.run(
                "SELECT count(*) FROM encryption_keys WHERE suite = :suite AND status = 'active'",
                suite=name,
            )
            missing = self.policy.keys_to_create(int(rows[0][0]))
            if missing == 0:
                return []
            return self._create_in(s, name, missing, actor or self._actor, request_id)

    def queue_due_for_rotation(
        self, *, actor: str | None = None, request_id: str | None = None
    ) -> list[tuple[str, str]]:
        """Queue every active key past its age or usage caps; returns (key id, reason)."""
        actor = actor or self._actor
        now_rows = self._db.run("SELECT now()")
        now: dt.datetime = now_rows[0][0]
        due = self.policy.due_for_rotation(self.list_keys(status=KeyStatus.ACTIVE), now)
        queued: list[tuple[str, str]] = []
        for key, reason in due:
            with self._db.transaction() as s:
                rows = s.run(
                    "UPDATE encryption_keys SET status = 'rotation_queued' "
                    "WHERE id = :id AND status = 'active' RETURNING id",
                    id=key.key_id,
                )
                if not rows:
                    continue  # changed meanwhile
                s.run(
                    "INSERT INTO key_rotations (old_key_id, reason) VALUES (:id, :reason)",
                    id=key.key_id,
                    reason=reason.value,
                )
                append_audit(
                    s,
                    operation="key.rotation_queued",
                    outcome="success",
                    actor=actor,
                    key_id=key.key_id,
                    request_id=request_id,
                    details={
                        "reason": reason.value,
                        "usage_count": key.usage_count,
                        "bytes_encrypted": key.bytes_encrypted,
                    },
                )
            queued.append((key.key_id, reason.value))
        return queued

    def _change_status(
        self,
        key_id: str,
        new: KeyStatus,
        *,
        actor: str,
        operation: str,
        reason: str | None,
        request_id: str | None,
    ) -> KeyRecord:
        with self._db.transaction() as s:
            rows = s.run("SELECT status FROM encryption_keys WHERE id = :id FOR UPDATE", id=key_id)
            if not rows:
                raise KeyNotFoundError(f"no key {key_id}")
            old = KeyStatus.from_name(rows[0][0])
            if old is new:
                raise IllegalTransitionError(f"key {key_id} is already {new.value}")
            updated = s.run(
                "UPDATE encryption_keys SET status = :status, "
                "revoke_reason = coalesce(CAST(:reason AS text), revoke_reason) "
                f"WHERE id = :id RETURNING {_KEY_COLUMNS}",
                status=new.value,
                reason=reason,
                id=key_id,
            )
            details: dict[str, object] = {"from": old.value, "to": new.value}
            if reason is not None:
                details["reason"] = reason
            append_audit(
                s,
                operation=operation,
                outcome="success",
                actor=actor,
                key_id=key_id,
                request_id=request_id,
                details=details,
            )
        if new is KeyStatus.REVOKED:
            self.cache.discard(key_id)
        return _key_record(updated[0])

    def revoke(
        self, key_id: str, reason: str, *, actor: str | None = None, request_id: str | None = None
    ) -> KeyRecord:
        if not reason.strip():
            raise ValueError("a revocation needs a reason")
        return self._change_status(
            key_id,
            KeyStatus.REVOKED,
            actor=actor or self._actor,
            operation="key.revoke",
            reason=reason,
            request_id=request_id,
        )

    def expire(
        self, key_id: str, *, actor: str | None = None, request_id: str | None = None
    ) -> KeyRecord:
        return self._change_status(
            key_id,
            KeyStatus.EXPIRED,
            actor=actor or self._actor,
            operation="key.expire",
            reason=None,
            request_id=request_id,
        )

    # -- rotation runs (pqfile_rotate) --

    def rotations(self, status: str | None = None) -> list[RotationRun]:
        rows = self._db.run(
            f"SELECT {_ROTATION_COLUMNS} FROM key_rotations "
            "WHERE (CAST(:status AS text) IS NULL OR status = CAST(:status AS text)) ORDER BY id",
            status=status,
        )
        return [_rotation(r) for r in rows]

    def begin_rotation(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRun:
        """Pick the new key (least-used active key of the same suite) and start the run.
        Idempotent: a running run is returned as it is."""
        with self._db.transaction() as s:
            run = _lock_rotation(s, rotation_id)
            if run.status != "queued":
                return run
            new = s.run(
                "SELECT n.id FROM encryption_keys n JOIN encryption_keys o ON o.id = :old "
                "WHERE n.suite = o.suite AND n.status = 'active' AND n.id <> o.id "
                "AND n.rotate_after > now() ORDER BY n.usage_count, n.id LIMIT 1",
                old=run.old_key_id,
            )
            if not new:
                raise NoActiveKeyError(f"no active key to rotate {run.old_key_id} onto")
            updated = s.run(
                "UPDATE key_rotations SET status = 'running', new_key_id = :new, "
                "started_at = now(), updated_at = now(), documents_total = "
                "(SELECT count(*) FROM documents WHERE key_id = :old) "
                f"WHERE id = :id RETURNING {_ROTATION_COLUMNS}",
                new=new[0][0],
                old=run.old_key_id,
                id=rotation_id,
            )
            run = _rotation(updated[0])
            append_audit(
                s,
                operation="key.rotation_started",
                outcome="success",
                actor=actor or self._actor,
                key_id=run.old_key_id,
                request_id=request_id,
                details={
                    "rotation_id": run.rotation_id,
                    "new_key_id": run.new_key_id,
                    "documents_total": run.documents_total,
                },
            )
        return run

    def documents_on_key(self, key_id: str, limit: int = 100) -> list[str]:
        """Ids of documents still encrypted to ``key_id`` (a rotation's work list)."""
        rows = self._db.run(
            "SELECT document_id FROM documents WHERE key_id = :k ORDER BY document_id LIMIT :n",
            k=key_id,
            n=limit,
        )
        return [str(r[0]) for r in rows]

    def record_rewrap(
        self,
        rotation_id: int,
        document_id: str,
        *,
        encrypted_version_id: str | None,
        encrypted_size: int,
        actor: str | None = None,
        request_id: str | None = None,
    ) -> bool:
        """Point a rewrapped document at the run's new key; False if it was already moved."""
        with self._db.transaction() as s:
            rows = s.run(
                "SELECT old_key_id, new_key_id, status FROM key_rotations WHERE id = :id",
                id=rotation_id,
            )
            if not rows or rows[0][2] != "running" or rows[0][1] is None:
                raise PQFileError(f"rotation run {rotation_id} is not running")
            old, new = str(rows[0][0]), str(rows[0][1])
            moved = s.run(
                "UPDATE documents SET key_id = :new, encrypted_version_id = :v, "
                "encrypted_size = :n, updated_at = now() "
                "WHERE document_id = :d AND key_id = :old RETURNING plaintext_size",
                new=new,
                old=old,
                v=encrypted_version_id,
                n=encrypted_size,
                d=document_id,
            )
            if not moved:
                return False
            s.run(
                "UPDATE encryption_keys SET usage_count = usage_count + 1, "
                "bytes_encrypted = bytes_encrypted + :b, last_used_at = now() WHERE id = :id",
                b=int(moved[0][0] or 0),
                id=new,
            )
            s.run(
                "UPDATE key_rotations SET documents_rewrapped = documents_rewrapped + 1, "
                "updated_at = now() WHERE id = :id",
                id=rotation_id,
            )
            append_audit(
                s,
                operation="document.rewrap",
                outcome="success",
                actor=actor or self._actor,
                document_id=document_id,
                key_id=new,
                request_id=request_id,
                details={"rotation_id": rotation_id, "from_key_id": old},
            )
        return True

    def finish_rotation(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRun:
        """Complete the run and expire the old key once no document uses it; else mark the
        run failed (the old key keeps decrypting)."""
        actor = actor or self._actor
        with self._db.transaction() as s:
            run = _lock_rotation(s, rotation_id)
            if run.status != "running":
                return run
            left = int(
                s.run("SELECT count(*) FROM documents WHERE key_id = :k", k=run.old_key_id)[0][0]
            )
            if left:
                status, error = "failed", f"{left} document(s) still use the old key"
            else:
                status, error = "completed", None
                s.run(
                    "UPDATE encryption_keys SET status = 'expired' WHERE id = :id "
                    "AND status IN ('active', 'rotation_queued')",
                    id=run.old_key_id,
                )
            updated = s.run(
                "UPDATE key_rotations SET status = :st, error = :err, updated_at = now(), "
                "completed_at = CASE WHEN :st = 'completed' THEN now() END, "
                "documents_failed = :left "
                f"WHERE id = :id RETURNING {_ROTATION_COLUMNS}",
                st=status,
                err=error,
                left=left,
                id=rotation_id,
            )
            run = _rotation(updated[0])
            if status == "completed":
                append_audit(
                    s,
                    operation="key.expire",
                    outcome="success",
                    actor=actor,
                    key_id=run.old_key_id,
                    request_id=request_id,
                    details={"rotation_id": rotation_id, "to": "expired"},
                )
            append_audit(
                s,
                operation="key.rotation_finished",
                outcome="success" if status == "completed" else "failure",
                actor=actor,
                key_id=run.old_key_id,
                request_id=request_id,
                details={
                    "rotation_id": rotation_id,
                    "new_key_id": run.new_key_id,
                    "documents_rewrapped": run.documents_rewrapped,
                    "documents_left": left,
                },
            )
        return run

    # -- reporting --

    def status_summary(self) -> dict[str, Any]:
        """Counts per suite and status, oldest active key age, usage spread of active keys."""
        rows = self._db.run(
            "SELECT suite, status, count(*), "
            "EXTRACT(EPOCH FROM now() - min(created_at))::float8 FROM encryption_keys "
            "GROUP BY suite, status ORDER BY suite, status"
        )
        usage_rows = self._db.run(
            "SELECT suite, usage_count FROM encryption_keys WHERE status = 'active'"
        )

        def empty() -> dict[str, Any]:
            return {"counts": {st.value: 0 for st in KeyStatus}, "oldest_active_age_seconds": None}

        suites: dict[str, dict[str, Any]] = {s.value: empty() for s in kem.Suite}
        for suite, status, count, oldest in rows:
            entry = suites.setdefault(suite, empty())
            entry["counts"][status] = int(count)
            if status == KeyStatus.ACTIVE.value:
                entry["oldest_active_age_seconds"] = round(float(oldest), 1)
        for suite, entry in suites.items():
            spread = usage_spread(int(u) for s_, u in usage_rows if s_ == suite)
            entry["usage"] = {
                "active_keys": spread.keys,
                "min": spread.min_usage,
                "max": spread.max_usage,
                "total": spread.total_usage,
                "max_over_min": round(spread.ratio, 3) if spread.ratio is not None else None,
            }
            entry["below_floor"] = entry["counts"]["active"] < self.policy.floor_active
        rotations: dict[str, int] | None
        try:
            counts = dict.fromkeys(("queued", "running", "completed", "failed"), 0)
            for status, count in self._db.run(
                "SELECT status, count(*) FROM key_rotations GROUP BY status"
            ):
                counts[str(status)] = int(count)
            rotations = counts
        except PermissionDeniedError:
            rotations = None  # e.g. the ingest role: no access to rotation runs
        return {
            "rotations": rotations,
            "policy": {
                "target_active": self.policy.target_active,
                "floor_active": self.policy.floor_active,
                "max_age_days": self.policy.max_age.total_seconds() / 86400,
                "max_documents": self.policy.max_documents,
                "max_bytes": self.policy.max_bytes,
            },
            "suites": suites,
        }


# --- documents -----------------------------------------------------------------------------

_DOC_COLUMNS = (
    "document_id, source_bucket, source_key, source_version_id, source_etag, status, key_id, "
    "suite, encrypted_bucket, encrypted_key, encrypted_version_id, plaintext_size, "
    "encrypted_size, error"
)
_SOURCE_REF = "coalesce('v:' || CAST(:version_id AS text), 'e:' || CAST(:etag AS text))"


def _doc(r: Sequence[Any]) -> DocumentRecord:
    return DocumentRecord(
        document_id=r[0],
        source_bucket=r[1],
        source_key=r[2],
        source_version_id=r[3],
        source_etag=r[4],
        status=r[5],
        key_id=r[6],
        suite=r[7],
        encrypted_bucket=r[8],
        encrypted_key=r[9],
        encrypted_version_id=r[10],
        plaintext_size=None if r[11] is None else int(r[11]),
        encrypted_size=None if r[12] is None else int(r[12]),
        error=r[13],
    )


class PostgresDocumentRepository:
    """ports.DocumentRepository over ``documents``; every write is idempotent."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def begin(
        self,
        *,
        document_id: str,
        source_bucket: str,
        source_key: str,
        source_version_id: str | None,
        source_etag: str | None,
        plaintext_size: int,
    ) -> DocumentRecord:
        if source_version_id is None and source_etag is None:
            raise ValueError("a document's source needs a version id or an ETag")
        rows = self._db.run(
            "INSERT INTO documents (document_id, source_bucket, source_key, source_version_id, "
            "source_etag, plaintext_size) VALUES (:document_id, :bucket, :key, :version_id, "
            f":etag, :size) ON CONFLICT DO NOTHING RETURNING {_DOC_COLUMNS}",
            document_id=document_id,
            bucket=source_bucket,
            key=source_key,
            version_id=source_version_id,
            etag=source_etag,
            size=plaintext_size,
        )
        if rows:
            return _doc(rows[0])
        existing = self.find_by_source(source_bucket, source_key, source_version_id, source_etag)
        if existing is None:
            raise DatabaseError(f"document id {document_id} is taken by another source object")
        return existing

    def find_by_source(
        self, bucket: str, key: str, version_id: str | None, etag: str | None
    ) -> DocumentRecord | None:
        rows = self._db.run(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE source_bucket = :bucket "
            f"AND source_key = :key AND source_ref = {_SOURCE_REF}",
            bucket=bucket,
            key=key,
            version_id=version_id,
            etag=etag,
        )
        return _doc(rows[0]) if rows else None

    def get(self, document_id: str) -> DocumentRecord | None:
        rows = self._db.run(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE document_id = :d", d=document_id
        )
        return _doc(rows[0]) if rows else None

    def get_document(self, document_id: str) -> DocumentRecord:
        record = self.get(document_id)
        if record is None:
            raise DocumentNotFoundError(f"no document {document_id}")
        return record

    def find_by_encrypted_object(self, bucket: str, key: str) -> DocumentRecord | None:
        rows = self._db.run(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE encrypted_bucket = :b "
            "AND encrypted_key = :k ORDER BY created_at LIMIT 1",
            b=bucket,
            k=key,
        )
        return _doc(rows[0]) if rows else None

    def assign_key(self, document_id: str, key_id: str, suite: str) -> DocumentRecord:
        self._db.run(
            "UPDATE documents SET key_id = :k, suite = :s, updated_at = now() "
            "WHERE document_id = :d AND key_id IS NULL",
            k=key_id,
            s=suite,
            d=document_id,
        )
        return self.get_document(document_id)

    def mark_stored(
        self,
        document_id: str,
        *,
        encrypted_bucket: str,
        encrypted_key: str,
        encrypted_version_id: str | None,
        encrypted_size: int,
    ) -> tuple[DocumentRecord, bool]:
        rows = self._db.run(
            "UPDATE documents SET status = 'stored', encrypted_bucket = :b, encrypted_key = :k, "
            "encrypted_version_id = :v, encrypted_size = :n, error = NULL, stored_at = now(), "
            "updated_at = now() WHERE document_id = :d AND status <> 'stored' "
            f"RETURNING {_DOC_COLUMNS}",
            b=encrypted_bucket,
            k=encrypted_key,
            v=encrypted_version_id,
            n=encrypted_size,
            d=document_id,
        )
        if rows:
            return _doc(rows[0]), True
        return self.get_document(document_id), False

    def mark_plaintext_deleted(self, document_id: str) -> None:
        self._db.run(
            "UPDATE documents SET plaintext_deleted_at = coalesce(plaintext_deleted_at, now()), "
            "updated_at = now() WHERE document_id = :d",
            d=document_id,
        )

    def mark_failed(self, document_id: str, error: str) -> None:
        self._db.run(
            "UPDATE documents SET status = 'failed', error = :e, updated_at = now() "
            "WHERE document_id = :d AND status <> 'stored'",
            e=error[:2000],
            d=document_id,
        )
