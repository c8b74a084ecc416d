"""The `pqfile` command. Each sub-module registers its own sub-commands.

Exit codes: 0 success; 1 a refused operation (bad package, wrong key, ...); 2 usage error.
Errors print one line to stderr: ``pqfile: error: <reason>``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pqfile import __version__
from pqfile.errors import PQFileError

if TYPE_CHECKING:  # argparse is imported only when a parser is built
    import argparse

# Sub-command modules; each defines register(subparsers) -> None and sets
# `func` (args -> int exit code) on every parser it adds.
_COMMAND_MODULES = (
    "pqfile.cli.files",  # keygen, encrypt, decrypt, inspect
    "pqfile.cli.rewrap",  # rewrap, reencrypt
    "pqfile.cli.db",  # db migrate
    "pqfile.cli.keys",  # keys status/rotate/revoke/expire/request/refill/queue-rotation
    "pqfile.cli.documents",  # documents list
    "pqfile.cli.audit",  # audit verify/tail
    "pqfile.cli.auth",  # auth proof
    "pqfile.cli.access",  # access grant/revoke/list
    "pqfile.cli.retrieve",  # retrieve
    "pqfile.cli.upload",  # upload
)


# Commands whose module is known without importing the others: `pqfile encrypt` must not
# pay for boto3, pg8000 and the service modules (issue 15: startup near `python -c pass`).
_LOCAL_COMMANDS = {
    "keygen": "pqfile.cli.files",
    "encrypt": "pqfile.cli.files",
    "decrypt": "pqfile.cli.files",
    "inspect": "pqfile.cli.files",
}


def _modules_for(argv: Sequence[str] | None) -> Sequence[str]:
    """Only the module of a local file command when the first argument names one;
    every module otherwise (help, --version, service commands, usage errors)."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in _LOCAL_COMMANDS:
        return (_LOCAL_COMMANDS[args[0]],)
    return _COMMAND_MODULES


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    return _build_parser(_COMMAND_MODULES)


def _build_parser(modules: Sequence[str]) -> argparse.ArgumentParser:
    import argparse
    import importlib

    parser = argparse.ArgumentParser(
        prog="pqfile",
        description="Post-quantum document encryption (PQF v1).",
    )
    parser.add_argument("--version", action="version", version=f"pqfile {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args: Any = None
    given = list(sys.argv[1:] if argv is None else argv)
    fast = False
    if given[:1] in (["encrypt"], ["decrypt"]):
        import gc

        # The common one-file forms, without argparse. The crypto core loads meanwhile with
        # the cycle collector paused (some twenty collections of fresh module objects, none
        # of them garbage). As the process's own command (argv from sys.argv), what loaded
        # then lives until exit: gc.freeze() keeps every later collection, the full one at
        # interpreter exit included, from walking it again. Together ~6 ms of a ~50 ms
        # command (issue 15; BENCHMARKS.md "CLI latency and batch").
        collecting = gc.isenabled()
        gc.disable()
        try:
            from pqfile.cli import _fastargs

            args = _fastargs.parse(given)
            fast = args is not None
        finally:
            if argv is None:
                gc.freeze()
            if collecting:
                gc.enable()
    if args is None:
        modules = _modules_for(argv)
        parser = build_parser() if modules is _COMMAND_MODULES else _build_parser(modules)
        args = parser.parse_args(argv)
    func: Callable[[Any], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        rc = func(args)
    except PQFileError as exc:
        print(f"pqfile: error: {exc}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt as exc:  # SIGINT; SIGTERM/SIGHUP while writing a file
        print("pqfile: interrupted", file=sys.stderr)
        rc = 128 + getattr(exc, "signum", 2)
    if fast and argv is None:
        _exit_now(rc)
    return rc


def _exit_now(rc: int) -> None:
    """End the process's own one-file command without interpreter finalization.

    The command is over: its output is committed (or removed) and its files are closed.
    What finalization would still do is tear down the hundred modules the command loaded,
    pyca's among them, about 5 ms of a ~40 ms command (issue 15; BENCHMARKS.md "CLI
    latency and batch"). The standard streams are flushed first; if that fails (a closed
    pipe), a thread is still alive or an atexit handler is registered, the interpreter
    exits as usual (and reports a failed flush as it always does).
    """
    import atexit

    threading = sys.modules.get("threading")
    if atexit._ncallbacks() or (threading is not None and threading.active_count() > 1):
        return
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return
    import os

    os._exit(rc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
