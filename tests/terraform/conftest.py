"""Fixtures of the Terraform checks: a working copy of terraform/ initialised once per
session (offline provider mirror when the machine has one), the function zip, an emulator
of its own per test module that deploys the stack, and the slow deployments of every
selected module started together in the background (tests/terraform/background.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from devstack import terraform as tf
from devstack.emulator import Emulator, start_emulator

from tests.terraform.background import Deployments

REPO_ROOT = tf.REPO_ROOT


def require_tool(name: str) -> str:
    """The tool's path; a missing tool fails under CI and skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not on PATH (required in CI)")
        pytest.skip(f"{name} is not on PATH")
    return path


@dataclass(frozen=True)
class Workspace:
    root: Path
    env: dict[str, str]

    def run(
        self,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        return tf.run(self.root, list(args), env or self.env, timeout=timeout, check=check)


@pytest.fixture(scope="session")
def tf_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    require_tool("terraform")
    workdir = tmp_path_factory.mktemp("terraform")
    root = tf.working_copy(workdir, backend_path=workdir / "terraform.tfstate")
    env = tf.terraform_env(workdir)
    tf.init(root, env)
    return Workspace(root=root, env=env)


@pytest.fixture(scope="session")
def function_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lambda")
    subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "build_lambda"),
            "--source-only",
            "--output-dir",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out / "pqfile-function.zip"


@pytest.fixture(scope="module")
def own_emulator() -> Iterator[Emulator]:
    # Its own emulator: the stack's fixed names must not meet other tests' resources.
    log_dir = Path(tempfile.mkdtemp(prefix="pqfile-tf-emulator-"))
    emulator = start_emulator(log_path=log_dir / "emulator.log")
    try:
        yield emulator
    finally:
        emulator.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Within tests/terraform/, the modules that wait for a background deployment run last,
    so the others (builds, plans, static checks) run while the deployments go on."""
    here = Path(__file__).resolve().parent
    deploying = {Deployments.module_of(name) for name in Deployments.registered_for(None)}
    positions = [i for i, item in enumerate(items) if here in item.path.resolve().parents]
    block = [items[i] for i in positions]
    waits = [getattr(getattr(item, "module", None), "__name__", "") in deploying for item in block]
    ordered = [it for it, w in zip(block, waits, strict=True) if not w] + [
        it for it, w in zip(block, waits, strict=True) if w
    ]
    for i, item in zip(positions, ordered, strict=True):
        items[i] = item


@pytest.fixture(scope="session", autouse=True)
def background_deployments(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployments]:
    """Every selected module's registered deployment, started at the first test here."""
    deployments = Deployments()
    modules = {getattr(item.module, "__name__", "") for item in request.session.items
               if getattr(item, "module", None)}  # fmt: skip
    names = Deployments.registered_for(modules)
    if names:
        require_tool("terraform")
        zip_path: Path = request.getfixturevalue("function_zip")
        deployments.start(names, lambda name: tmp_path_factory.mktemp(f"bg-{name}"), zip_path)
    try:
        yield deployments
    finally:
        deployments.close()
