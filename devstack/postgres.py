"""A throwaway PostgreSQL for tests, benchmarks and the local stack.

Order of preference (docs/KEYS.md, "Running locally"):

1. ``PQFILE_DATABASE_URL`` when set: nothing is started, ``stop()`` does nothing.
2. The system's PostgreSQL binaries (``initdb`` / ``pg_ctl`` on PATH or under
   ``/usr/lib/postgresql/*/bin``). PostgreSQL refuses to run as root, so as root the
   cluster is created and started as the ``postgres`` user via ``runuser``.
3. The ``pgserver`` package from PyPI, when installed (it brings its own binaries).

Usage::

    handle = start_postgres(Path("/tmp/pq"))   # -> PostgresHandle
    handle.url                                 # postgresql://postgres@127.0.0.1:PORT/postgres
    handle.stop()
"""

# Commands are built from binaries found on PATH and paths we created; no user input.
# ruff: noqa: S603

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "postgres"


@dataclass
class PostgresHandle:
    """A running PostgreSQL: ``url`` connects as the superuser to database ``postgres``."""

    url: str
    data_dir: Path | None = None
    port: int | None = None
    started: bool = False
    ca_file: Path | None = None  # the server's self-signed certificate, when TLS is on
    _stopper: Callable[[], None] | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self._stopper is not None:
            stopper, self._stopper = self._stopper, None
            stopper()

    def url_for(self, database: str, user: str | None = None) -> str:
        """The same server, another database and/or user."""
        return replace_url(self.url, database=database, user=user)


def replace_url(url: str, *, database: str | None = None, user: str | None = None) -> str:
    """Swap the database name and/or user in a ``postgresql://`` URL (query kept)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        hostport = netloc.rsplit("@", 1)[-1]
        netloc = f"{user}@{hostport}"
    path = parts.path if database is None else f"/{database}"
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str) -> str | None:
    """A PostgreSQL program (initdb, pg_ctl, pg_dump, ...) on PATH or in the Debian layout."""
    return _find_binary(name)


def _find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", SUPERUSER, "--", *cmd]
    return cmd


def _start_system(base_dir: Path, initdb: str, pg_ctl: str) -> PostgresHandle:
    base_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="pgdata-", dir=base_dir))
    if os.geteuid() == 0:
        # The cluster's files must belong to the user that runs the server.
        shutil.chown(base_dir, user=SUPERUSER)
        shutil.chown(data_dir, user=SUPERUSER)
        base_dir.chmod(0o755)
    run = subprocess.run
    run(
        _as_postgres_user(
            [initdb, "-D", str(data_dir), "-A", "trust", "-U", SUPERUSER, "--no-sync", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    cert = _write_server_certificate(data_dir)
    last_error = ""
    for _attempt in range(5):
        port = free_port()
        # TLS is on but optional (pg_hba from initdb trusts both): ?sslmode=verify-full with
        # sslrootcert=<ca_file> exercises the encrypted path, plain URLs keep working.
        opts = (
            f"-p {port} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
            f"-c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={data_dir / 'server.key'}"
        )
        proc = run(
            _as_postgres_user(
                [
                    pg_ctl,
                    "-D",
                    str(data_dir),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(data_dir / "server.log"),
                    "-o",
                    opts,
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            break
        last_error = proc.stderr + proc.stdout
    else:
        raise RuntimeError(f"PostgreSQL did not start: {last_error.strip()}")

    def stop() -> None:
        subprocess.run(
            _as_postgres_user([pg_ctl, "-D", str(data_dir), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(data_dir, ignore_errors=True)

    return PostgresHandle(
        url=f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres",
        data_dir=data_dir,
        port=port,
        started=True,
        ca_file=cert,
        _stopper=stop,
    )


def _write_server_certificate(data_dir: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 / localhost, readable only by the server."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = data_dir / "server.crt", data_dir / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.chmod(0o644)
    if os.geteuid() == 0:
        shutil.chown(key_path, user=SUPERUSER)
        shutil.chown(cert_path, user=SUPERUSER)
    return cert_path


def _start_pgserver(base_dir: Path) -> PostgresHandle:  # pragma: no cover - fallback only
    import pgserver  # type: ignore[import-not-found]

    data_dir = Path(tempfile.mkdtemp(prefix="pgserver-", dir=base_dir))
    server = pgserver.get_server(str(data_dir), cleanup_mode="delete")
    uri: str = server.get_uri()
    return PostgresHandle(url=uri, data_dir=data_dir, started=True, _stopper=server.cleanup)


def start_postgres(base_dir: Path | None = None, *, use_env: bool = True) -> PostgresHandle:
    """Start (or point at) a PostgreSQL; see the module docstring for the order."""
    env_url = os.environ.get("PQFILE_DATABASE_URL") if use_env else None
    if env_url:
        return PostgresHandle(url=env_url)
    base = base_dir if base_dir is not None else Path(tempfile.gettempdir()) / "pqfile-pg"
    initdb, pg_ctl = _find_binary("initdb"), _find_binary("pg_ctl")
    if initdb and pg_ctl:
        return _start_system(base, initdb, pg_ctl)
    with contextlib.suppress(ImportError):
        return _start_pgserver(base)
    raise RuntimeError(
        "no PostgreSQL found: set PQFILE_DATABASE_URL, install PostgreSQL (initdb, pg_ctl) "
        "or `pip install pgserver`"
    )


def stop_cluster(data_dir: Path | str, *, remove: bool = True) -> None:
    """Stop a cluster started by another process (``python -m devstack down``)."""
    pg_ctl = _find_binary("pg_ctl")
    data = Path(data_dir)
    if pg_ctl and (data / "postmaster.pid").exists():
        subprocess.run(
            _as_postgres_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            check=False,
        )
    if remove:
        shutil.rmtree(data, ignore_errors=True)


def wait_ready(url: str, timeout: float = 30.0) -> None:
    """Block until the server accepts connections."""
    import pg8000.native

    from pqfile.adapters.postgres import connect_url

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn: pg8000.native.Connection = connect_url(url)
            conn.close()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
