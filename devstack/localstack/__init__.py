"""LocalStack on the host, without Docker: its own virtualenv, one server, its deploy.

``ensure_venv()`` installs LocalStack (``localstack-core[runtime]``), ``terraform-local``
(tflocal) and the Lambda executor plugin of ``executor/`` into ``.venv-localstack/`` with the
exact pins of ``constraints.txt``, once (a stamp keyed on the pins and the plugin's source).
LocalStack 2026.3 needs Python 3.12+: ``find_python()`` takes ``PQFILE_LOCALSTACK_PYTHON``,
else a python3.13 / python3.12 on PATH or under pyenv.

``LocalStackServer.start()`` runs ``python -m localstack.runtime.main`` on a free loopback
port with everything it keeps under a temporary folder, the settings it needs outside Docker
(ENVIRONMENT.md "LocalStack on the host") and ``LAMBDA_RUNTIME_EXECUTOR`` naming the plugin;
``stop()`` asks it to stop, waits ``STOP_TIMEOUT_SECONDS``, then kills its process group
(a shutdown can hang while executions retry). The handler processes are in that group.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
CONSTRAINTS = HERE / "constraints.txt"
EXECUTOR_DIR = HERE / "executor"
DEFAULT_VENV = REPO_ROOT / ".venv-localstack"
EXECUTOR_NAME = "pqfile-host-subprocess"
LOCALSTACK_REQUIREMENT = "localstack-core[runtime]"
TOOLS = ("terraform-local",)
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 10.0
#: The services the project's Terraform and journey use (LocalStack loads the rest lazily).
SERVICES = "s3,sts,iam,kms,sqs,events,stepfunctions,lambda,logs,secretsmanager,sns,cloudwatch,ec2"


class LocalStackError(RuntimeError):
    """LocalStack could not be installed, started or reached; the message says why."""


def find_python() -> str:
    """An interpreter for LocalStack's virtualenv (Python 3.12+)."""
    explicit = os.environ.get("PQFILE_LOCALSTACK_PYTHON")
    if explicit:
        return explicit
    for name in ("python3.13", "python3.12"):
        found = shutil.which(name)
        if found and _runs(found):
            return found
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    for version in ("3.13", "3.12"):
        for candidate in sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}")):
            if _runs(str(candidate)):
                return str(candidate)
    raise LocalStackError(
        "LocalStack needs Python 3.12 or newer: install python3.12 or python3.13 "
        "(or set PQFILE_LOCALSTACK_PYTHON to one)"
    )


def _runs(python: str) -> bool:
    try:
        subprocess.run([python, "-c", "pass"], check=True, capture_output=True, timeout=30)  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _fingerprint(server: bool) -> str:
    digest = hashlib.sha256(CONSTRAINTS.read_bytes())
    digest.update(b"server" if server else b"tools")
    if server:
        for path in _executor_sources():
            digest.update(path.relative_to(EXECUTOR_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _executor_sources() -> list[Path]:
    package = EXECUTOR_DIR / "pqfile_localstack_executor"
    return [EXECUTOR_DIR / "pyproject.toml", *sorted(package.glob("*.py"))]


def venv_dir() -> Path:
    return Path(os.environ.get("PQFILE_LOCALSTACK_VENV") or DEFAULT_VENV)


def ensure_venv(server: bool = True, say: bool = True) -> Path:
    """The virtualenv with tflocal (and, with ``server``, LocalStack and the plugin)."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    stamp = venv / (".installed-server" if server else ".installed-tools")
    fingerprint = _fingerprint(server)
    if stamp.exists() and stamp.read_text() == fingerprint and python.exists():
        return venv
    if not python.exists():
        subprocess.run([find_python(), "-m", "venv", str(venv)], check=True)  # noqa: S603
    wanted = [*TOOLS]
    if server:
        wanted += [LOCALSTACK_REQUIREMENT, "service-identity"]
    if say:
        print(f"installing {', '.join(wanted)}{' and the executor plugin' if server else ''} "
              f"into {venv} (pinned: devstack/localstack/constraints.txt) ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="pqfile-ls-executor-") as tmp:
        if server:
            # Built from a copy: pip leaves build/ and *.egg-info beside the sources.
            source = Path(tmp) / "executor"
            shutil.copytree(EXECUTOR_DIR, source, ignore=shutil.ignore_patterns(
                "build", "*.egg-info", "__pycache__"))
            wanted.append(str(source))
        proc = subprocess.run(  # noqa: S603 - the venv's pip, pinned requirements
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-input", "-c", str(CONSTRAINTS), *wanted],
            capture_output=True, text=True, check=False,
        )
    if proc.returncode != 0:
        errors = [line for line in (proc.stdout + proc.stderr).splitlines()
                  if "is ignored: it is neither" not in line]
        raise LocalStackError(
            "installing LocalStack's virtualenv failed:\n" + "\n".join(errors[-30:]))
    stamp.write_text(fingerprint)
    return venv


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStackServer:
    """One LocalStack process on the loopback interface."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop LocalStack and every process it started; a kill after the timeout."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        # The group: LocalStack if it hung, and any handler process still running.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        shutil.rmtree(self.workdir, ignore_errors=True)


def server_env(port: int, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALSTACK_"))}
    env.update({
        "OVERRIDE_IN_DOCKER": "0",  # the machine may have a /.dockerenv
        "GATEWAY_SERVER": "hypercorn",  # the default server binds 0.0.0.0 whatever it is told
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "DNS_ADDRESS": "0",
        "FILESYSTEM_ROOT": str(workdir / "fs"),
        "TMPDIR": str(workdir / "tmp"),
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "DISABLE_EVENTS": "1",
        "LAMBDA_RUNTIME_EXECUTOR": EXECUTOR_NAME,
        "SERVICES": SERVICES,
        "EAGER_SERVICE_LOADING": "0",
    })
    return env


def start(venv: Path | None = None, port: int | None = None) -> LocalStackServer:
    """Start LocalStack from ``venv`` (``ensure_venv()`` when None); wait until it answers."""
    venv = venv or ensure_venv()
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pqfile-localstack-"))
    (workdir / "fs").mkdir()
    (workdir / "tmp").mkdir()
    log_path = workdir / "localstack.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - the venv's interpreter, a fixed module
            [str(venv / "bin" / "python"), "-m", "localstack.runtime.main"],
            env=server_env(port, workdir),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() kills all of it
        )
    server = LocalStackServer(port=port, process=process, workdir=workdir, log_path=log_path)
    atexit.register(server.stop)
    try:
        wait_ready(server)
    except BaseException:
        tail = server.log_tail()
        server.stop()
        if isinstance(tail, str) and tail:
            print(tail, flush=True)
        raise
    return server


def wait_ready(server: LocalStackServer, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    url = server.endpoint_url + "/_localstack/health"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise LocalStackError(
                f"LocalStack exited ({server.process.returncode}) while starting:\n"
                + server.log_tail()
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise LocalStackError(f"LocalStack did not answer on {url} within {timeout:.0f} s")


@contextlib.contextmanager
def running(port: int | None = None) -> Iterator[LocalStackServer]:
    """LocalStack for the length of a ``with`` block; stopped however the block ends."""
    server = start(port=port)
    try:
        yield server
    finally:
        server.stop()
