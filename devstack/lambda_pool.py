"""Warm worker subprocesses that run Lambda handlers for the emulator, like Lambda's containers.

One pool per emulator process. Workers are keyed by the function's identity and
configuration and by the source tree's state, so a changed environment, handler or source
file gets fresh workers (a "redeploy") while unchanged ones stay warm. Concurrent invocations
of one function each get their own worker; nothing global is locked while a handler runs,
so a handler may call back into the emulator (an S3 put that triggers another invocation).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger("devstack.lambda")

WORKER_SCRIPT = Path(__file__).with_name("lambda_worker.py")
INIT_TIMEOUT_SECONDS = 30.0  # Lambda's init phase limit is 10 s; imports here are cold
IDLE_SECONDS = 300.0  # an idle worker is stopped after this, like a reclaimed container
REPLY_LIMIT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class FunctionSpec:
    """What a worker is started for: everything that must match for a warm worker to be reused."""

    function_name: str
    function_arn: str
    version: str
    handler: str
    runtime: str
    region: str
    timeout_seconds: float
    memory_mb: int
    environment: tuple[tuple[str, str], ...]

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.function_name}"


@dataclass
class InvocationResult:
    payload: str  # JSON text, as Lambda returns it
    errored: bool
    logs: str
    request_id: str
    duration_ms: float = 0.0


@dataclass(eq=False)  # identity semantics: workers live in sets
class _Worker:
    process: subprocess.Popen[bytes]
    key: str
    function_arn: str
    buffer: bytearray = field(default_factory=bytearray)
    init_error: dict[str, Any] | None = None
    init_logs: str = ""
    log_offset: int = 0  # where the current invocation's output starts in the worker's log
    last_used: float = field(default_factory=time.monotonic)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


class _WorkerGone(Exception):
    """The worker exited or closed its pipe before answering."""


class LambdaWorkerPool:
    def __init__(self, code_paths: list[Path], endpoint_url: str, python: str = sys.executable):
        self.code_paths = [str(Path(p).resolve()) for p in code_paths]
        self.endpoint_url = endpoint_url
        self.python = python
        self._idle: dict[str, list[_Worker]] = {}
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()  # guards the two collections above, never held for I/O
        self._source_stamp = ("", 0.0)
        self._cold_starts = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))
        self._closed = False
        threading.Thread(target=self._reap_idle_forever, name="lambda-reaper", daemon=True).start()

    # -- public ---------------------------------------------------------------------------

    def invoke(
        self, spec: FunctionSpec, event: Any, request_id: str | None = None
    ) -> InvocationResult:
        request_id = request_id or str(uuid.uuid4())
        key = self._key(spec)
        try:
            worker = self._acquire(spec, key)
        except Exception as exc:
            LOG.exception("could not start a worker for %s", spec.function_name)
            return self._failure(request_id, "Runtime.StartError", str(exc), "")
        if worker.init_error is not None:
            # Like Lambda: a failed init fails the invocation; the next one retries init.
            self._discard(worker)
            return InvocationResult(
                json.dumps(worker.init_error), True, worker.init_logs, request_id
            )
        started = time.monotonic()  # after a cold start: Lambda's timeout excludes init
        header = {
            "request_id": request_id,
            "invoked_function_arn": spec.function_arn,
            "timeout_ms": int(spec.timeout_seconds * 1000),
        }
        try:
            assert worker.process.stdin is not None
            worker.process.stdin.write(
                json.dumps(header).encode() + b"\n" + json.dumps(event).encode() + b"\n"
            )
            worker.process.stdin.flush()
            reply = self._read_message(worker, started + spec.timeout_seconds)
        except TimeoutError:
            logs = self._logs_so_far(worker)
            self._discard(worker)
            seconds = f"{spec.timeout_seconds:.2f}"
            message = f"RequestId: {request_id} Error: Task timed out after {seconds} seconds"
            return self._failure(request_id, "Sandbox.Timedout", message, logs, started)
        except (_WorkerGone, OSError) as exc:
            self._discard(worker)
            code = worker.process.returncode
            message = (
                f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}"
            )
            return self._failure(request_id, "Runtime.ExitError", message, str(exc), started)
        worker.log_offset = int(reply.get("log_end", worker.log_offset))
        self._release(worker)
        return InvocationResult(
            payload=reply["payload"],
            errored=bool(reply["errored"]),
            logs=reply.get("logs", ""),
            request_id=request_id,
            duration_ms=(time.monotonic() - started) * 1000,
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = [w for ws in self._idle.values() for w in ws] + list(self._busy)
            self._idle.clear()
            self._busy.clear()
        for worker in workers:
            worker.kill()

    def worker_count(self) -> int:
        with self._lock:
            return sum(len(ws) for ws in self._idle.values()) + len(self._busy)

    # -- workers --------------------------------------------------------------------------

    def _key(self, spec: FunctionSpec) -> str:
        material = json.dumps(
            [spec.__dict__, self.code_paths, self._source_generation()], default=str
        )
        return hashlib.sha256(material.encode()).hexdigest()

    def _source_generation(self) -> str:
        """A stamp of the handler source tree, recomputed at most once a second."""
        stamp, computed_at = self._source_stamp
        now = time.monotonic()
        if stamp and now - computed_at < 1.0:
            return stamp
        newest = 0.0
        count = 0
        for root in self.code_paths:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
                for name in filenames:
                    if name.endswith(".py"):
                        count += 1
                        try:
                            newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
                        except OSError:
                            continue
        stamp = f"{count}:{newest}"
        self._source_stamp = (stamp, now)
        return stamp

    def _acquire(self, spec: FunctionSpec, key: str) -> _Worker:
        # Cold starts are CPU-bound: at most `_cold_starts` at once. While one waits its turn,
        # a worker that another invocation releases is taken instead (a burst reuses workers).
        while True:
            worker = self._take_idle(spec, key)
            if worker is not None:
                return worker
            if self._cold_starts.acquire(timeout=0.05):
                break
        try:
            worker = self._take_idle(spec, key) or self._spawn(spec, key)
        finally:
            self._cold_starts.release()
        with self._lock:
            self._busy.add(worker)
        return worker

    def _take_idle(self, spec: FunctionSpec, key: str) -> _Worker | None:
        outdated: list[_Worker] = []
        found: _Worker | None = None
        with self._lock:
            if self._closed:
                raise RuntimeError("the Lambda worker pool is closed")
            idle = self._idle.get(key, [])
            while idle and found is None:
                worker = idle.pop()
                if worker.process.poll() is None:
                    self._busy.add(worker)
                    found = worker
                else:
                    outdated.append(worker)
            # Same function, other configuration or source: those workers will not serve again.
            for other_key, workers in list(self._idle.items()):
                if other_key != key and workers and workers[0].function_arn == spec.function_arn:
                    outdated.extend(self._idle.pop(other_key))
        for old in outdated:
            old.kill()
        return found

    def _release(self, worker: _Worker) -> None:
        worker.last_used = time.monotonic()
        with self._lock:
            self._busy.discard(worker)
            if self._closed:
                closed = True
            else:
                closed = False
                self._idle.setdefault(worker.key, []).append(worker)
        if closed:
            worker.kill()

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
        worker.kill()

    def _spawn(self, spec: FunctionSpec, key: str) -> _Worker:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [self.python, "-u", str(WORKER_SCRIPT), spec.handler, *self.code_paths],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # start-up failures land in the emulator's log; then fd 2 is captured
            env=self._environment(spec),
            cwd=self.code_paths[0],
            close_fds=True,
            start_new_session=True,  # a Ctrl-C on the emulator's terminal is the emulator's
        )
        worker = _Worker(process=process, key=key, function_arn=spec.function_arn)
        try:
            ready = self._read_message(worker, time.monotonic() + INIT_TIMEOUT_SECONDS)
        except (TimeoutError, _WorkerGone) as exc:
            worker.kill()
            raise RuntimeError(f"worker for {spec.handler} did not start: {exc!r}") from exc
        worker.init_error = ready.get("init_error")
        worker.init_logs = ready.get("logs", "")
        worker.log_offset = int(ready.get("log_end", 0))
        LOG.info("started worker pid %s for %s (%s)", process.pid, spec.function_name, spec.handler)
        return worker

    @staticmethod
    def _logs_so_far(worker: _Worker) -> str:
        """What a still-running invocation has written (Linux: the worker's fd 1 via /proc)."""
        try:
            with open(f"/proc/{worker.process.pid}/fd/1", "rb") as log:
                log.seek(worker.log_offset)
                return log.read(1 << 20).decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _environment(self, spec: FunctionSpec) -> dict[str, str]:
        """What Lambda gives a function, plus its own variables; nothing from the emulator."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - the user's own, as a fallback
            "PYTHONPATH": os.pathsep.join(self.code_paths),
            "PYTHONUNBUFFERED": "1",
            "LAMBDA_TASK_ROOT": self.code_paths[0],
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_SESSION_TOKEN": "test",
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_XRAY_SDK_ENABLED": "false",
            "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
        }
        if "TMPDIR" in os.environ:
            env["TMPDIR"] = os.environ["TMPDIR"]
        env.update(dict(spec.environment))
        # Reserved: Lambda does not let a function's configuration set these.
        env.update(
            {
                "_HANDLER": spec.handler,
                "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(spec.timeout_seconds)),
                "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
                "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[{spec.version}]{uuid.uuid4().hex}",
            }
        )
        return env

    def _read_message(self, worker: _Worker, deadline: float) -> dict[str, Any]:
        stdout = worker.process.stdout
        assert stdout is not None
        fd = stdout.fileno()
        while b"\n" not in worker.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                worker.process.wait()
                raise _WorkerGone(f"exit status {worker.process.returncode}")
            worker.buffer.extend(chunk)
            if len(worker.buffer) > REPLY_LIMIT_BYTES:
                raise _WorkerGone("reply too large")
        line, _, rest = bytes(worker.buffer).partition(b"\n")
        worker.buffer[:] = rest
        message: dict[str, Any] = json.loads(line)
        return message

    def _failure(
        self, request_id: str, error_type: str, message: str, logs: str, started: float = 0.0
    ) -> InvocationResult:
        payload = json.dumps({"errorMessage": message, "errorType": error_type})
        duration = (time.monotonic() - started) * 1000 if started else 0.0
        return InvocationResult(payload, True, logs, request_id, duration)

    def _reap_idle_forever(self) -> None:
        while not self._closed:
            time.sleep(15)
            cutoff = time.monotonic() - IDLE_SECONDS
            stale: list[_Worker] = []
            with self._lock:
                for key, workers in list(self._idle.items()):
                    keep = [
                        w for w in workers if w.last_used >= cutoff and w.process.poll() is None
                    ]
                    stale.extend(w for w in workers if w not in keep)
                    if keep:
                        self._idle[key] = keep
                    else:
                        del self._idle[key]
            for worker in stale:
                worker.kill()
