"""`python -m devstack up|down|status|deploy|demo`: the local stack, without Docker.

up      start PostgreSQL and the emulated AWS (127.0.0.1:4566) under a detached supervisor,
        write .devstack/state.json, wait until both answer (the database stays empty)
down    stop everything and delete .devstack/ (the throwaway database and emulator state)
status  say what runs; exit status 0 when the stack is up
deploy  `terraform apply` the stack onto the emulator (devstack.terraform.deploy_local); the
        apply itself migrates the database and fills the key pool (terraform/invocations.tf)
demo    up + deploy when needed, then devstack.demo.run(state)

The supervisor (`python -m devstack supervise`, started by `up`) owns both servers: it stops
them when it gets SIGTERM from `down`, and stops PostgreSQL if the emulator dies.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from devstack.emulator import (
    DEFAULT_PORT,
    DEFAULT_REGION,
    REPO_ROOT,
    is_answering,
    start_emulator,
)
from devstack.state import (
    devstack_dir,
    load_state,
    process_alive,
    save_state,
    stop_process,
    update_state,
)

LOG = logging.getLogger("devstack")
UP_TIMEOUT_SECONDS = 120.0


# -- supervisor (runs detached) ---------------------------------------------------------------


def _postgres_base(base: Path) -> Path:
    """Where the cluster lives. As root the server runs as `postgres`, which must reach it:
    a private directory under the system's temporary directory, not one under the tree."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path(tempfile.mkdtemp(prefix="pqfile-devstack-pg-"))
    return base / "postgres"


def supervise(base: Path, host: str, port: int) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        LOG.info("signal %s: stopping the local stack", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    save_state(
        {
            "status": "starting",
            "supervisor_pid": os.getpid(),
            "devstack_dir": str(base),
            "endpoint_url": f"http://{host}:{port}",
            "region": DEFAULT_REGION,
        },
        base,
    )
    postgres = emulator = sts = None
    try:
        from devstack.postgres import start_postgres

        postgres_base = _postgres_base(base)
        update_state(base, postgres={"base_dir": str(postgres_base), "started": False})
        postgres = start_postgres(postgres_base)
        update_state(
            base,
            database_url=postgres.url,
            postgres={
                "base_dir": str(postgres_base),
                "source": postgres.source,
                "started": postgres.started,
                "data_dir": str(postgres.data_dir) if postgres.data_dir else None,
                "port": postgres.port,
            },
        )
        LOG.info("PostgreSQL (%s) at %s", postgres.source, postgres.url)
        emulator = start_emulator(port=port, host=host, log_path=base / "emulator.log")
        from devstack.local_sts import start_local_sts

        # The retrieve function verifies callers against a signature-checking STS of its own
        # (the main emulator cannot check signatures without enforcing IAM everywhere).
        sts = start_local_sts(base / "local_sts.log")
        update_state(
            base,
            sts_endpoint_url=sts.endpoint_url,
            sts_pid=sts.process.pid,
            sts_users={
                name: {"arn": u.arn, "access_key_id": u.access_key_id,
                       "secret_access_key": u.secret_access_key}
                for name, u in sts.users.items()
            },
        )  # fmt: skip
        update_state(base, emulator_pid=emulator.pid, status="ready")
        LOG.info("emulated AWS at %s (pid %s)", emulator.endpoint_url, emulator.pid)
        LOG.info("local STS at %s (pid %s)", sts.endpoint_url, sts.process.pid)
        while not stop.wait(1.0):
            if emulator.process is not None and emulator.process.poll() is not None:
                LOG.error("the emulator exited with status %s", emulator.process.returncode)
                update_state(base, status="failed", error="the emulator exited")
                return 1
        return 0
    except Exception as exc:  # noqa: BLE001 - reported through state.json to `up`
        LOG.error("the local stack did not start:\n%s", traceback.format_exc())
        update_state(base, status="failed", error=str(exc))
        return 1
    finally:
        if sts is not None:
            from devstack.local_sts import stop_local_sts

            stop_local_sts(sts)
        if emulator is not None:
            emulator.stop()
        if postgres is not None:
            postgres.stop()
        LOG.info("stopped")


# -- commands -------------------------------------------------------------------------------


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _print_summary(state: dict[str, Any]) -> None:
    print(f"emulated AWS  {state.get('endpoint_url')}   (region {state.get('region')})")
    source = (state.get("postgres") or {}).get("source", "?")
    print(f"PostgreSQL    {state.get('database_url')}   ({source})")
    print(f"local STS     {state.get('sts_endpoint_url')}   (users alice, bob: see state.json)")
    print(f"state         {Path(state['devstack_dir']) / 'state.json'}")
    print("use it with:  export AWS_ENDPOINT_URL=" + str(state.get("endpoint_url")))
    print("              export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test")
    print(f"              export PQFILE_DATABASE_URL={state.get('database_url')}")


def _running_state(base: Path) -> dict[str, Any] | None:
    state = load_state(base)
    if state and state.get("status") == "ready" and process_alive(state.get("supervisor_pid")):
        return state
    return None


def cmd_up(args: argparse.Namespace) -> int:
    base: Path = args.dir
    running = _running_state(base)
    if running:
        print("the local stack is already up")
        _print_summary(running)
        return 0
    if load_state(base):
        _tear_down(base)  # a stale or half-started stack
    if _port_in_use(args.host, args.port):
        print(
            f"error: {args.host}:{args.port} is in use (LocalStack? an old emulator?); "
            "stop it, or run `python -m devstack down`",
            file=sys.stderr,
        )
        return 1
    from devstack.postgres import NOT_FOUND, discover_binaries

    if not os.environ.get("PQFILE_DATABASE_URL") and not discover_binaries():
        print(f"error: {NOT_FOUND}", file=sys.stderr)
        return 1
    base.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PQFILE_DEVSTACK_DIR"] = str(base)
    with open(base / "supervisor.log", "ab") as log:
        supervisor = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "devstack",
                "supervise",
                "--host",
                args.host,
                "--port",
                str(args.port),
                "--dir",
                str(base),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=str(REPO_ROOT),
            env=env,
            start_new_session=True,  # survives this command and the terminal
        )
    print(f"starting the local stack (supervisor pid {supervisor.pid}) ...")
    deadline = time.monotonic() + UP_TIMEOUT_SECONDS
    state: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        state = load_state(base)
        if state and state.get("status") in ("ready", "failed"):
            break
        if supervisor.poll() is not None:
            break
        time.sleep(0.2)
    if not state or state.get("status") != "ready":
        if state and state.get("error"):
            # One line: PostgresUnavailable and the emulator's errors say why.
            print(f"error: the local stack did not start: {state['error']}", file=sys.stderr)
        else:
            log_tail = (base / "supervisor.log").read_text(errors="replace")[-4000:]
            print(f"error: the local stack did not start:\n{log_tail}", file=sys.stderr)
        _tear_down(base)
        return 1
    from devstack.postgres import wait_ready

    wait_ready(state["database_url"])
    if not is_answering(state["endpoint_url"]):
        print("error: the emulator does not answer", file=sys.stderr)
        return 1
    _print_summary(state)
    # As on AWS, the deploy migrates: terraform/invocations.tf invokes the migrate function,
    # then MaintainPool, so the local stack exercises the hands-off first deploy.
    print("the database is empty until `make deploy-local` (it migrates and fills the key pool)")
    return 0


def _stop_postgres_cluster(data_dir: str) -> None:
    """Fallback when the supervisor died without stopping its PostgreSQL."""
    from devstack.postgres import stop_cluster

    stop_cluster(data_dir)


def _tear_down(base: Path) -> bool:
    state = load_state(base)
    if state is None:
        shutil.rmtree(base, ignore_errors=True)
        return False
    stop_process(state.get("supervisor_pid"), "devstack", timeout=30)
    stop_process(state.get("emulator_pid"), "devstack.emulator", timeout=10)
    stop_process(state.get("sts_pid"), "devstack.local_sts", timeout=10)
    postgres = state.get("postgres") or {}
    if postgres.get("started") and postgres.get("data_dir"):
        _stop_postgres_cluster(postgres["data_dir"])
    if postgres.get("base_dir"):
        shutil.rmtree(postgres["base_dir"], ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)
    return True


def cmd_down(args: argparse.Namespace) -> int:
    if _tear_down(args.dir):
        print("the local stack is stopped and its data deleted")
    else:
        print("the local stack was not running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = load_state(args.dir)
    if state is None:
        print("down")
        return 1
    supervisor = process_alive(state.get("supervisor_pid"))
    emulator = bool(state.get("endpoint_url")) and is_answering(state["endpoint_url"])
    database = False
    if state.get("database_url"):
        try:
            from pqfile.adapters.postgres import connect_url

            connect_url(state["database_url"]).close()
            database = True
        except Exception:  # noqa: BLE001 - any failure means "not answering"
            database = False
    print(f"status        {state.get('status')}")
    print(f"supervisor    pid {state.get('supervisor_pid')} {'running' if supervisor else 'gone'}")
    print(f"emulated AWS  {state.get('endpoint_url')} {'answers' if emulator else 'DOWN'}")
    print(f"PostgreSQL    {state.get('database_url')} {'answers' if database else 'DOWN'}")
    if state.get("terraform_outputs"):
        print("deployed      yes (terraform outputs in state.json)")
    return 0 if supervisor and emulator and database else 1


def _optional_module(name: str, who: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        print(f"error: {name} is not written yet ({who})", file=sys.stderr)
        return None


def _deploy(base: Path, state: dict[str, Any]) -> dict[str, Any] | None:
    terraform = _optional_module("devstack.terraform", "the Terraform deploy")
    if terraform is None:
        return None
    print(
        "deploying terraform/ (envs/local.tfvars) to the emulator: "
        "about 2 minutes the first time ...",
        flush=True,
    )
    started = time.monotonic()
    tty = sys.stdout.isatty()

    def progress(done: int) -> None:
        if tty:
            print(f"\r  {done} resources created", end="", flush=True)
        elif done % 25 == 0:
            print(f"  {done} resources created", flush=True)

    outputs = terraform.deploy_local(state, progress=progress)
    if tty:
        print()
    print(f"deployed in {time.monotonic() - started:.0f} s", flush=True)
    return update_state(base, terraform_outputs=outputs)


def cmd_deploy(args: argparse.Namespace) -> int:
    state = _running_state(args.dir)
    if state is None:
        print("error: the local stack is not up: run `python -m devstack up`", file=sys.stderr)
        return 1
    deployed = _deploy(args.dir, state)
    if deployed is None:
        return 1
    for name, value in sorted((deployed.get("terraform_outputs") or {}).items()):
        print(f"{name:32} {value}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    state = _running_state(args.dir)
    if state is None:
        status = cmd_up(args)
        if status != 0:
            return status
        state = _running_state(args.dir)
        assert state is not None
    if not state.get("terraform_outputs"):
        state = _deploy(args.dir, state)
        if state is None:
            return 1
    demo = _optional_module("devstack.demo", "the pipeline demo")
    if demo is None:
        return 1
    result = demo.run(state)
    return int(result) if isinstance(result, int) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dir", type=Path, default=None, help="state directory (.devstack/)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, function in (
        ("up", cmd_up),
        ("down", cmd_down),
        ("status", cmd_status),
        ("deploy", cmd_deploy),
        ("demo", cmd_demo),
    ):
        command = commands.add_parser(name, help=(function.__doc__ or "").strip() or None)
        command.set_defaults(func=function)
    supervisor = commands.add_parser("supervise", help=argparse.SUPPRESS)
    supervisor.add_argument("--dir", type=Path, dest="dir", default=None)
    supervisor.add_argument("--host", default="127.0.0.1")
    supervisor.add_argument("--port", type=int, default=DEFAULT_PORT)
    supervisor.set_defaults(func=None)
    args = parser.parse_args(argv)
    args.dir = (args.dir or devstack_dir()).resolve()
    if args.command == "supervise":
        return supervise(args.dir, args.host, args.port)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
