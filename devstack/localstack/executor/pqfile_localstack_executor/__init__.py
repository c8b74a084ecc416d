"""A LocalStack Lambda runtime executor running Python handlers in host subprocesses.

Stock LocalStack runs each Lambda execution environment in a Docker container (its
``docker`` executor, the ``localstack.lambda.runtime_executor`` plugin namespace). Where
there is no Docker engine this plugin takes its place (``LAMBDA_RUNTIME_EXECUTOR=
pqfile-host-subprocess``): an execution environment is one long-lived host process running
``bootstrap.py`` with

- the function's code and layers unpacked by LocalStack (``prepare_for_execution``), on
  ``PYTHONPATH`` in Lambda's order (the code, then each layer's ``python/``);
- the environment LocalStack computes for the function (its variables, the role's
  credentials, ``AWS_ENDPOINT_URL`` pointing at LocalStack's gateway, as LocalStack injects
  it into its containers), with ``LAMBDA_TASK_ROOT`` set to the unpacked code;
- an interpreter for the function's runtime found on the host (``python3.12`` for
  ``python3.12``; ``PQFILE_LAMBDA_PYTHON_<MAJOR>_<MINOR>`` names one explicitly).

Invocations go to the process over a pipe, one at a time (LocalStack never sends an
environment two at once); the answer is the handler's JSON result or AWS's error object
(``errorType`` = the exception's class name). A handler that overruns the function's
timeout has its process killed, as Lambda does. Nothing here is isolation: the handler runs
with the host user's rights.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from plux import Plugin

LOG = logging.getLogger(__name__)
BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
STOP_TIMEOUT_SECONDS = 5.0
#: Host variables an environment keeps; everything else comes from LocalStack.
HOST_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR")


class HostSubprocessExecutorPlugin(Plugin):  # type: ignore[misc]
    namespace = "localstack.lambda.runtime_executor"
    name = "pqfile-host-subprocess"

    def load(self, *args: Any, **kwargs: Any) -> type:
        return runtime_executor_class()


@functools.cache
def find_interpreter(runtime: str) -> str:
    """The host interpreter for a Lambda runtime name such as ``python3.12``.

    ``PQFILE_LAMBDA_PYTHON_3_12`` (for python3.12) names one; else ``python3.12`` on PATH
    or under pyenv, the first that runs (a pyenv shim for a version not selected fails)."""
    if not runtime.startswith("python"):
        raise RuntimeError(f"runtime {runtime!r}: only Python runtimes run on the host")
    version = runtime.removeprefix("python")
    explicit = os.environ.get("PQFILE_LAMBDA_PYTHON_" + version.replace(".", "_"))
    if explicit:
        return explicit
    candidates = []
    for root in (os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")):
        if root:
            candidates += sorted(Path(root, "versions").glob(f"{version}.*/bin/python{version}"))
    found = shutil.which(f"python{version}")
    if found:
        candidates.insert(0, Path(found))
    for candidate in candidates:
        probe = subprocess.run(  # noqa: S603 - an interpreter found on the host
            [str(candidate), "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True, text=True, check=False,
        )
        if probe.returncode == 0:
            return str(candidate)
    raise RuntimeError(f"no python{version} interpreter on this host for runtime {runtime}")


def _executor_base() -> Any:
    # Imported lazily: plux loads this module while LocalStack collects plugins.
    from localstack.services.lambda_.invocation.runtime_executor import RuntimeExecutor

    return RuntimeExecutor


class _Executor:
    """The behaviour; ``runtime_executor_class()`` binds it to LocalStack's ABC."""

    def __init__(self, id: str, function_version: Any) -> None:
        self.id = id
        self.function_version = function_version
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"lambda-{id}-"))
        self.log_path = self.workdir / "output.log"
        self._requests: Any = None
        self._responses_fd: int | None = None
        self._lock = threading.Lock()

    # -- where things are --------------------------------------------------------------
    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        # The handler runs on the host: LocalStack's gateway is on the loopback interface.
        from localstack import config

        host = config.GATEWAY_LISTEN[0].host
        return "127.0.0.1" if host in ("", "0.0.0.0") else host  # noqa: S104 - a comparison

    def get_runtime_endpoint(self) -> str:
        from localstack import config

        port = config.GATEWAY_LISTEN[0].port
        return f"http://{self.get_endpoint_from_executor()}:{port}/_localstack_lambda/{self.id}"

    # -- lifecycle ---------------------------------------------------------------------
    def _python_path(self) -> tuple[Path, list[str]]:
        config = self.function_version.config
        code_dir = Path(config.code.get_unzipped_code_location())
        paths = [str(code_dir)]
        for layer in config.layers or []:
            if layer.code is not None:
                layer_dir = Path(layer.code.get_unzipped_code_location())
                paths += [str(layer_dir / "python"), str(layer_dir)]
        return code_dir, paths

    def start(self, env_vars: dict[str, Any]) -> None:
        config = self.function_version.config
        interpreter = find_interpreter(str(config.runtime))
        code_dir, python_path = self._python_path()
        env = {k: os.environ[k] for k in HOST_VARIABLES if k in os.environ}
        env.update({k: str(v) for k, v in env_vars.items() if v is not None})
        env["LAMBDA_TASK_ROOT"] = str(code_dir)
        env["PYTHONPATH"] = os.pathsep.join(python_path)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        tmp = self.workdir / "tmp"
        tmp.mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmp)
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our bootstrap, a found interpreter
                [interpreter, "-s", str(BOOTSTRAP), str(request_read), str(response_write)],
                cwd=code_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(request_read, response_write),
            )
        os.close(request_read)
        os.close(response_write)
        self._requests = os.fdopen(request_write, "w", encoding="utf-8")
        self._responses_fd = response_read
        LOG.debug("execution environment %s: pid %s (%s)", self.id, self.process.pid, interpreter)

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if self._requests is not None:
            try:
                self._requests.close()
            except OSError:
                pass
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._responses_fd is not None:
            os.close(self._responses_fd)
            self._responses_fd = None
        self.process = None
        shutil.rmtree(self.workdir / "tmp", ignore_errors=True)

    # -- invocations -------------------------------------------------------------------
    def _read_line(self, deadline: float) -> bytes | None:
        assert self._responses_fd is not None
        chunks = b""
        while not chunks.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._responses_fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(self._responses_fd, 1 << 20)
            if not chunk:
                raise EOFError("the execution environment exited")
            chunks += chunk
        return chunks

    def invoke(self, payload: dict[str, Any]) -> Any:
        from localstack.services.lambda_.invocation.lambda_models import InvocationResult

        request_id = str(payload["invoke-id"])
        timeout = float(self.function_version.config.timeout)
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        deadline = time.monotonic() + timeout
        request = {
            "request_id": request_id,
            "arn": payload.get("invoked-function-arn"),
            "payload": payload.get("payload"),
            "trace_id": payload.get("trace-id"),
            "deadline_ms": int(time.time() * 1000 + timeout * 1000),
        }
        with self._lock:
            try:
                assert self._requests is not None
                self._requests.write(json.dumps(request) + "\n")
                self._requests.flush()
                line = self._read_line(deadline)
            except (OSError, EOFError, AssertionError) as exc:
                line = None
                error: dict[str, Any] | None = {
                    "errorMessage": f"RequestId: {request_id} Error: Runtime exited ({exc})",
                    "errorType": "Runtime.ExitError",
                }
            else:
                error = None
            if line is None and error is None:
                self._kill()
                error = {
                    "errorMessage": f"Task timed out after {timeout:.2f} seconds",
                    "errorType": "Sandbox.Timedout",
                }
        logs = self._logs_from(log_offset)
        if error is not None:
            return InvocationResult(request_id, json.dumps(error).encode(), True, logs)
        assert line is not None
        answer = json.loads(line)
        if answer["ok"]:
            return InvocationResult(request_id, answer["payload"].encode(), False, logs)
        return InvocationResult(request_id, json.dumps(answer["error"]).encode(), True, logs)

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _logs_from(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def get_logs(self) -> str:
        return self._logs_from(0)

    @classmethod
    def prepare_version(cls, function_version: Any) -> None:
        # No image, no runtime download: unpack the code and layers where start() finds them.
        find_interpreter(str(function_version.config.runtime))
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()
        for layer in function_version.config.layers or []:
            if layer.code is not None:
                layer.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: Any) -> None:
        return None

    @classmethod
    def validate_environment(cls) -> bool:
        return True


@functools.cache
def runtime_executor_class() -> type:
    """``_Executor`` bound to LocalStack's ``RuntimeExecutor`` ABC (imported on first use)."""
    return type("HostSubprocessRuntimeExecutor", (_Executor, _executor_base()), {})
