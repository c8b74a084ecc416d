"""The emulated AWS: a moto server with the few additions the PQFile stack needs.

moto (pinned in constraints.txt) serves S3, KMS, Lambda, Step Functions, EventBridge and the
rest. Before the server starts, `apply_patches()` applies `devstack.moto_patches`, one module
per change, each with its own check of the moto internal it touches:

- `lambda_handlers`: runs Lambda handlers from the source tree in warm worker subprocesses
  (`devstack.lambda_pool`) instead of Docker, with each function's own environment;
- `lambda_async`: `Event` invocations (and S3 -> Lambda notifications) run in the
  background, with Lambda's retries, OnSuccess/OnFailure SQS destinations and the function's
  dead-letter queue;
- `lambda_config`: keeps a function's DeadLetterConfig and LoggingConfig (moto drops them);
- `lambda_create_replay`: a CreateFunction replayed with identical code and configuration
  (an interrupted apply, a lost answer) gets the original answer instead of 409;
- `kms_rotation_period`: keeps and reports a key's RotationPeriodInDays;
- `s3_eventbridge_readback`: reports a bucket's EventBridgeConfiguration;
- `stepfunctions_api`: the Step Functions calls Terraform's aws provider needs and moto lacks
  (`ValidateStateMachineDefinition`, `ListStateMachineVersions`);
- `stepfunctions_execution`: turns on moto's ASL interpreter, so state machines really execute;
- `events_targets`: EventBridge rules target Step Functions state machines and Lambda
  functions (named executions, Input/InputPath/InputTransformer, the target's dead-letter
  queue), S3 events get unique ids, ISO times and growing sequencers, and a schedule-only
  rule receives no events;
- `s3_bucket_policies`: does not enforce S3 bucket policies (moto denies under any
  conditional Deny statement);
- `s3_lifecycle_sizes`: keeps lifecycle filters' ObjectSizeGreaterThan/LessThan;
- `s3_ranged_get`: a ranged GetObject reads only the requested bytes;
- `s3_large_objects`: CompleteMultipartUpload joins the parts on disk and a full GetObject
  streams the object's file, so big objects never sit in the server's memory.

Not emulated: scheduled rules never fire (start those executions yourself), EventBridge
retry policies, Lambda concurrency limits and IAM authorisation.

`check_moto_internals()` (run at start-up and, per patch, by the canary test) names the moto
internal that changed when moto is upgraded.

The server always runs in its own process (`python -m devstack.emulator --port N`): the patches
and moto's global configuration never leak into the caller. `start_emulator()` starts one and
returns a handle.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import moto_patches
from devstack.lambda_pool import LambdaWorkerPool
from devstack.moto_patches import MOTO_VERSION

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_REGION",
    "MOTO_VERSION",
    "REPO_ROOT",
    "Emulator",
    "check_moto_internals",
    "free_port",
    "is_answering",
    "start_emulator",
    "wait_until_answering",
]

LOG = logging.getLogger("devstack.emulator")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CODE_PATHS = (REPO_ROOT / "functions",)
DEFAULT_REGION = "us-east-1"
DEFAULT_PORT = 4566


def check_moto_internals() -> list[str]:
    """One message per moto internal the patches or the server need that is missing or changed."""
    import moto

    problems = moto_patches.problems()
    try:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,  # noqa: F401
            MotoRequestHandler,  # noqa: F401
            create_backend_app,  # noqa: F401
        )
    except (ImportError, AttributeError) as exc:
        problems.append(f"moto {moto.__version__}: moto.moto_server.werkzeug_app changed: {exc}")
    return problems


# --------------------------------------------------------------------------------------------
# The server process.
# --------------------------------------------------------------------------------------------


def apply_patches(
    port: int, code_paths: Iterable[Path], host: str = "127.0.0.1"
) -> LambdaWorkerPool:
    """Patch moto in this process for a server on host:port. Call before the server starts."""
    problems = check_moto_internals()
    if problems:
        raise RuntimeError(
            "The pinned moto changed internals devstack.emulator patches:\n  "
            + "\n  ".join(problems)
        )
    pool = LambdaWorkerPool(list(code_paths), endpoint_url=f"http://{host}:{port}")
    moto_patches.apply_all(moto_patches.Runtime(port=port, pool=pool))
    return pool


def serve(host: str, port: int, code_paths: Iterable[Path], exit_with_parent: bool = False) -> None:
    """Run the patched moto server in this process until SIGTERM or SIGINT.

    `exit_with_parent`: also stop when the process that started this one goes away (a test
    run killed mid-way must not leave a server behind).
    """
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    pool = apply_patches(port, code_paths, host)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if exit_with_parent:
        parent = os.getppid()

        def watch_parent() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            LOG.warning("parent process %s is gone: stopping", parent)
            server.shutdown()

        threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    LOG.info("emulated AWS listening on http://%s:%s", host, port)
    try:
        server.serve_forever()
    finally:
        pool.close()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--code-path",
        action="append",
        type=Path,
        help="directory put on the handlers' sys.path (repeatable; default: functions/)",
    )
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the starting process exits"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    serve(args.host, args.port, args.code_path or list(DEFAULT_CODE_PATHS), args.exit_with_parent)
    return 0


# --------------------------------------------------------------------------------------------
# The caller's side: start an emulator process and talk to it.
# --------------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_answering(endpoint_url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint_url}/moto-api/config", timeout=timeout) as reply:  # noqa: S310 - our own loopback URL
            return bool(reply.status in (200, 201))
    except (urllib.error.URLError, OSError):
        return False


def wait_until_answering(
    endpoint_url: str, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the emulator exited with status {process.returncode}")
        if is_answering(endpoint_url):
            return
        time.sleep(0.1)
    raise TimeoutError(f"the emulator at {endpoint_url} did not answer within {timeout:.0f} s")


@dataclass
class Emulator:
    """A running emulator process."""

    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    region: str = DEFAULT_REGION
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for this emulator (region us-east-1, test credentials)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_url,
            region_name=kwargs.pop("region_name", self.region),
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106 - the emulator's fixed test credentials
            config=kwargs.pop(
                "config", Config(retries={"max_attempts": 2, "mode": "standard"}, read_timeout=900)
            ),
            **kwargs,
        )

    def reset(self) -> None:
        """Forget every resource (moto's /moto-api/reset); the patches and warm workers stay."""
        url = f"{self.endpoint_url}/moto-api/reset"
        request = urllib.request.Request(url, method="POST")  # noqa: S310 - loopback http
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310 - loopback
            reply.read()

    def logs(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_emulator(
    port: int | None = None,
    host: str = "127.0.0.1",
    code_paths: Iterable[Path] = DEFAULT_CODE_PATHS,
    log_path: Path | None = None,
    detach: bool = False,
    timeout: float = 30.0,
) -> Emulator:
    """Start `python -m devstack.emulator` and wait until it answers.

    `detach=True` starts it in its own session so it outlives the caller (`devstack up`).
    """
    port = port or free_port(host)
    command = [sys.executable, "-m", "devstack.emulator", "--host", host, "--port", str(port)]
    if not detach:
        command.append("--exit-with-parent")
    for path in code_paths:
        command += ["--code-path", str(path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    log_file = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=env,
            cwd=str(REPO_ROOT),
            start_new_session=detach,
        )
    finally:
        if log_path:
            with contextlib.suppress(Exception):
                log_file.close()  # type: ignore[union-attr]
    emulator = Emulator(host=host, port=port, process=process, log_path=log_path)
    try:
        wait_until_answering(emulator.endpoint_url, timeout, process)
    except (RuntimeError, TimeoutError):
        emulator.stop()
        raise RuntimeError(
            f"the emulator did not start on {emulator.endpoint_url}:\n{emulator.logs()[-4000:]}"
        ) from None
    return emulator


if __name__ == "__main__":
    sys.exit(main())
