"""PostgreSQL connections (pg8000): parameters, URL parsing, per-thread sessions, errors.

- ``Database.from_url(url)`` / ``Database.from_env()``: one pg8000 connection per thread,
  prepared statements cached per connection; ``transaction()`` is a context manager.
  ``PQFILE_DATABASE_URL`` (``postgresql://user:pass@host:port/db?sslmode=verify-full``),
  else ``PQFILE_DATABASE_SECRET_ARN`` (Secrets Manager JSON), with
  ``PQFILE_DATABASE_IAM_AUTH=1`` for an RDS IAM token instead of a password, or
  ``PQFILE_DATABASE_PASSWORD_SECRET_ARN`` for the URL's role's password from its own secret
  (``database_role_passwords``: LocalStack in Docker; docs/OPERATIONS.md "Database logins").
- ``Runner``: what the repositories run statements on, a ``Database`` (each statement
  commits on its own) or a ``Session`` inside ``Database.transaction()``.

TLS: a URL without ``sslmode`` verifies the server (``verify-full``), except for a loopback
host (``localhost``, 127.0.0.0/8, ``::1``) or a Unix socket, where it stays ``disable``
(the local stack's throwaway cluster); docs/KEYS.md, "Connections".

Errors: pg8000 errors become ``TransientError`` (connection lost, serialization failure,
deadlock, too many connections, a lock or statement timeout), ``PermissionDeniedError``,
``IllegalTransitionError`` (the database refused a transition: SQLSTATE PQ001),
``ImmutableRowError`` (PQ002, PQ003), ``InvariantError`` (PQ004), ``NoActiveKeyError``
(PQ006), ``AuditRefusedError`` (PQ007) or ``DatabaseError``. Only the server's primary
message is kept: its DETAIL may quote row values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.native
from botocore.exceptions import BotoCoreError, ClientError

from pqfile.adapters.postgres.tracing import (
    _XRAY_MODULE,
    _sqlstate,
    statement_name,
    traced,
)
from pqfile.config import DatabaseSettings
from pqfile.errors import NoActiveKeyError, PQFileError, TransientError
from pqfile.keys.model import IllegalTransitionError

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


class InvariantError(DatabaseError):
    """The database refused a write that breaks an invariant (a key id that is not
    H(public key), a wrong length, a missing attestation, ...): SQLSTATE PQ004."""


class AuditRefusedError(DatabaseError):
    """``audit_append`` refused the row: an operation the role may not append, a malformed
    actor, or details over their caps (SQLSTATE PQ007)."""


_DB_ERRORS = (pg8000.native.DatabaseError, pg8000.native.InterfaceError, OSError)
# 57014: statement_timeout (the per-role timeouts of migration 0010), retried like a lock
# timeout (55P03).
_TRANSIENT_STATES = {
    "40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "53300", "53400",
}


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
        if code == "PQ004":
            return InvariantError(message, code)
        if code == "PQ006":
            return NoActiveKeyError(message)
        if code == "PQ007":
            return AuditRefusedError(message, code)
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
    #: False behind an RDS Proxy (``?statements=unnamed``): a named prepared statement is
    #: session state that pins the client to one pooled connection; the unnamed statement
    #: of the extended protocol is not (docs/OPERATIONS.md "Capacity").
    named_statements: bool = True

    def __repr__(self) -> str:  # never show the password
        return (
            f"ConnectionParams(user={self.user!r}, host={self.host!r}, port={self.port}, "
            f"database={self.database!r}, sslmode={self.sslmode!r})"
        )


def default_sslmode(host: str | None, unix_socket_dir: str | None = None) -> str:
    """``verify-full`` unless the server is this machine: a Unix socket or a loopback host
    (``localhost``, 127.0.0.0/8, ``::1``), where TLS stays off (``disable``)."""
    if unix_socket_dir or not host or host.lower() == "localhost":
        return "disable"
    try:
        return "disable" if ipaddress.ip_address(host).is_loopback else "verify-full"
    except ValueError:
        return "verify-full"  # a DNS name: the server is somewhere else


def parse_database_url(url: str) -> ConnectionParams:
    """``postgresql://user[:password]@host[:port]/database?sslmode=...&sslrootcert=...``.

    ``?host=/path`` selects a Unix socket directory (as libpq does). Without ``sslmode``,
    TLS is verified (``verify-full``) except on loopback or a Unix socket (``disable``).
    """
    parts = urlsplit(url)
    if parts.scheme not in {"postgresql", "postgres"}:
        raise ValueError("database URL must start with postgresql://")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    sslmode = query.get("sslmode") or default_sslmode(parts.hostname, query.get("host"))
    if sslmode not in {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}:
        raise ValueError(f"unsupported sslmode {sslmode!r}")
    statements = query.get("statements", "named")
    if statements not in {"named", "unnamed"}:
        raise ValueError(f"unsupported statements {statements!r} (named or unnamed)")
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
        named_statements=statements == "named",
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
        conn = pg8000.native.Connection(
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
    except pg8000.native.InterfaceError as exc:
        if params.password is None and "no password" in str(exc):
            raise _no_password(params.user) from None
        raise _translate(exc) from None
    except (pg8000.native.DatabaseError, OSError) as exc:
        raise _translate(exc) from None
    except AttributeError:
        # pg8000 answers a SCRAM challenge without a password with an AttributeError.
        if params.password is not None:
            raise
        raise _no_password(params.user) from None
    conn.pqfile_named_statements = params.named_statements  # read by Session
    return conn


def _no_password(role: str) -> DatabaseError:
    """Not transient: retrying cannot help until the role's password is configured."""
    return DatabaseError(
        f"database login refused: the server wants a password for role {role!r} and none "
        "is configured (PQFILE_DATABASE_PASSWORD_SECRET_ARN)",
        "28P01",
    )


def connect_url(url: str) -> pg8000.native.Connection:
    return connect(parse_database_url(url))


def params_from_env(
    settings: DatabaseSettings | None = None,
) -> Callable[[], ConnectionParams]:
    """How to build connection parameters from the settings (re-evaluated per connect,
    so a rotated secret or a fresh 15-minute IAM token is picked up)."""
    s = settings if settings is not None else DatabaseSettings.from_env()
    if not s.url and not s.secret_arn:
        raise PQFileError("set PQFILE_DATABASE_URL or PQFILE_DATABASE_SECRET_ARN")

    def build() -> ConnectionParams:
        params = parse_database_url(s.url) if s.url else _params_from_secret(s)
        if s.iam_auth:
            params = _with_iam_token(params, s.region)
        elif s.password_secret_arn:
            params = dataclasses.replace(
                params, password=role_password(s.password_secret_arn, params.user)
            )
        return params

    return build


def _params_from_secret(s: DatabaseSettings) -> ConnectionParams:
    from pqfile.adapters.aws import client

    try:
        raw = client("secretsmanager").get_secret_value(SecretId=str(s.secret_arn))["SecretString"]
        secret = json.loads(raw)
    except (BotoCoreError, ClientError, KeyError, ValueError) as exc:
        raise TransientError(f"database secret unavailable: {type(exc).__name__}") from None
    return ConnectionParams(
        user=str(secret["username"]),
        password=str(secret.get("password")) if secret.get("password") else None,
        host=str(secret.get("host") or s.host),
        port=int(secret.get("port") or s.port),
        database=str(secret.get("dbname") or s.name),
        sslmode=s.sslmode,
        sslrootcert=s.sslrootcert,
    )


def role_password(secret_arn: str, role: str) -> str:
    """The password of ``role`` from its login secret (JSON ``username``, ``password``; the
    secrets of terraform/proxy.tf). A secret that names another role is refused: a function
    must never log in as a role it was not given."""
    from pqfile.adapters.aws import client

    try:
        raw = client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
        login = json.loads(raw)
    except (BotoCoreError, ClientError, KeyError, ValueError) as exc:
        raise TransientError(f"database login secret unavailable: {type(exc).__name__}") from None
    if not isinstance(login, dict) or login.get("username") != role:
        raise PQFileError(f"the login secret of database role {role!r} names another role")
    password = login.get("password")
    if not isinstance(password, str) or not password:
        raise PQFileError(f"the login secret of database role {role!r} holds no password")
    return password


def _with_iam_token(params: ConnectionParams, region: str) -> ConnectionParams:
    from pqfile.adapters.aws import client

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
        named_statements=params.named_statements,
    )


class Runner(Protocol):
    """Runs one parameterised statement: a ``Database`` or a ``Session`` in a transaction."""

    def run(self, sql: str, **params: Any) -> list[list[Any]]: ...


class Session:
    """One connection and its prepared statements. Not shared between threads."""

    def __init__(self, conn: pg8000.native.Connection) -> None:
        self.conn = conn
        self._prepared: dict[str, Any] = {}
        self._names: dict[str, str] = {}
        self._named = bool(getattr(conn, "pqfile_named_statements", True))

    def _user(self) -> str | None:
        user = getattr(self.conn, "user", None)
        return user.decode("utf-8", "replace") if isinstance(user, bytes) else user

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        """A parameterised statement, prepared once per connection (one round trip); behind
        an RDS Proxy (``?statements=unnamed``) pg8000's unnamed statement instead, which
        parses on every call but does not pin the connection."""
        if _XRAY_MODULE in sys.modules:
            name = self._names.get(sql) or self._names.setdefault(sql, statement_name(sql))
            with traced(name, self._user()):
                return self._run(sql, params)
        return self._run(sql, params)

    def _run(self, sql: str, params: dict[str, Any]) -> list[list[Any]]:
        if not self._named:
            return cast(list[list[Any]], self.conn.run(sql, **params) or [])
        stmt = self._prepared.get(sql)
        if stmt is None:
            stmt = self.conn.prepare(sql)
            self._prepared[sql] = stmt
        return cast(list[list[Any]], stmt.run(**params) or [])

    def script(self, sql: str) -> None:
        """Several statements without parameters (simple query protocol)."""
        if _XRAY_MODULE in sys.modules:
            with traced(statement_name(sql, script=True), self._user()):
                self.conn.run(sql)
            return
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
    def from_env(cls, settings: DatabaseSettings | None = None) -> Database:
        build = params_from_env(settings)
        return cls(lambda: connect(build()))

    def _session(self) -> Session:
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            with traced("connect"):
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
