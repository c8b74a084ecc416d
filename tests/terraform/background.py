"""The slow emulator deployments of the Terraform checks, started together in the background.

An apply against the emulator mostly waits (the provider's polls and propagation checks:
terraform, its provider and the emulator use a few per cent of a core each), so deployments
that run one after another waste most of the wall time. A deploying module registers its
deployment here with `@deployment(name)`; the first test under tests/terraform/ starts every
registered deployment whose module has a selected test, each in a thread of its own with
an emulator (and whatever else it starts) of its own; a module fixture then waits for its
own with `Deployments.result(name)`. A new deployment needs only its decorated function:
nothing here lists them.

A deployment's function gets a `Launch` (a fresh work folder, the function zip, and
`start_emulator`, `start_postgres` for servers of its own, stopped at the end of the
session) and returns what its tests read. Its exception is raised again in the tests
that wait for it, so a failed deployment fails them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from devstack.emulator import Emulator, start_emulator
from devstack.postgres import PostgresHandle, start_postgres

#: How long a test waits for its deployment before failing (the deployments' own timeouts
#: are shorter: each terraform run is interrupted after at most 900 s).
WAIT_SECONDS = 1800.0
#: How long one emulator may take to answer. They start one at a time (importing moto is
#: the CPU-heavy part of a deployment's start), each within this.
EMULATOR_START_SECONDS = 120.0

_STARTING = threading.Lock()


class Stoppable(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=Stoppable)


@dataclass
class Launch:
    """What one deployment gets to work with."""

    name: str
    workdir: Path
    function_zip: Path
    #: A loopback port no other deployment of this session uses, for its emulator.
    port: int
    _keep: Callable[[Stoppable], None]

    def keep(self, resource: S) -> S:
        """Stop `resource` (an emulator, a PostgreSQL) when the test session ends."""
        self._keep(resource)
        return resource

    def start_emulator(self) -> Emulator:
        """An emulator of this deployment's own on its port, stopped when the session ends.

        One starts at a time: five started together on a busy 2-core machine missed their
        start timeout (each imports moto and its patches)."""
        with _STARTING:
            emulator = start_emulator(
                port=self.port,
                log_path=self.workdir / "emulator.log",
                timeout=EMULATOR_START_SECONDS,
            )
        return self.keep(emulator)

    def start_postgres(self) -> PostgresHandle:
        """A PostgreSQL server of this deployment's own, stopped when the session ends."""
        base = Path(tempfile.mkdtemp(prefix=f"pqfile-tfpg-{os.getpid()}-", dir="/tmp"))
        with _STARTING:
            handle = start_postgres(base)
        return self.keep(handle)


Deploy = Callable[[Launch], Any]


@dataclass(frozen=True)
class _Registered:
    module: str
    deploy: Deploy


_REGISTRY: dict[str, _Registered] = {}


def deployment(name: str) -> Callable[[Deploy], Deploy]:
    """Register `deploy` as the background deployment `name` of the calling test module."""

    def register(deploy: Deploy) -> Deploy:
        if name in _REGISTRY and _REGISTRY[name].deploy.__qualname__ != deploy.__qualname__:
            raise ValueError(f"two background deployments named {name!r}")
        _REGISTRY[name] = _Registered(module=deploy.__module__, deploy=deploy)
        return deploy

    return register


@dataclass
class _Job:
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


def _distinct_free_ports(count: int) -> list[int]:
    # Held open together, the sockets cannot be given the same port twice.
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class Deployments:
    """The session's background deployments: start them, wait for one, stop what they kept."""

    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._kept: list[Stoppable] = []
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def registered_for(modules: Iterable[str] | None) -> list[str]:
        """The registered deployments of these test modules (by module name; None: all)."""
        wanted = None if modules is None else set(modules)
        return sorted(n for n, e in _REGISTRY.items() if wanted is None or e.module in wanted)

    @staticmethod
    def module_of(name: str) -> str:
        """The test module that registered the deployment `name`."""
        return _REGISTRY[name].module

    def start(self, names: list[str], make_workdir: Callable[[str], Path], zip_path: Path) -> None:
        ports = _distinct_free_ports(len(names))
        for name, port in zip(names, ports, strict=True):
            launch = Launch(name, make_workdir(name), zip_path, port, self._keep)
            job = self._jobs[name] = _Job()
            # A daemon thread: a session that ends early (-x) does not wait for an apply.
            thread = threading.Thread(
                target=self._run, args=(_REGISTRY[name].deploy, launch, job),
                name=f"deploy-{name}", daemon=True,
            )  # fmt: skip
            thread.start()

    def result(self, name: str, timeout: float = WAIT_SECONDS) -> Any:
        """Wait for the deployment `name`; its value, or its exception raised again."""
        job = self._jobs.get(name)
        if job is None:
            raise LookupError(
                f"background deployment {name!r} was not started (its module has no selected"
                " test, or the tests/terraform/ conftest did not run)"
            )
        if not job.done.wait(timeout):
            raise TimeoutError(f"background deployment {name!r} still running after {timeout} s")
        if job.error is not None:
            raise RuntimeError(f"background deployment {name!r} failed") from job.error
        return job.value

    def close(self) -> None:
        """Stop everything the deployments kept (a deployment still running fails then)."""
        with self._lock:
            self._closed = True
            kept, self._kept = self._kept, []
        for resource in reversed(kept):
            with contextlib.suppress(Exception):
                resource.stop()

    def _keep(self, resource: Stoppable) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                self._kept.append(resource)
        if closed:  # the session is over: nobody will read this deployment
            resource.stop()
            raise RuntimeError("the test session ended before this deployment finished")

    @staticmethod
    def _run(deploy: Deploy, launch: Launch, job: _Job) -> None:
        try:
            job.value = deploy(launch)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting test
            job.error = exc
        finally:
            job.done.set()
