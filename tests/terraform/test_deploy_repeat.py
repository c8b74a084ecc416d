"""Deploying again onto the same emulator works, also after an apply that stopped hard.

The `make deploy-local` flake (one deploy in nine: an `aws_lambda_function` "creating" for
5 min 36 s, then 409 "Function already exist"): the function already existed in the
emulator while Terraform's state did not know it (an apply stopped hard right after the
create, or an answer that never reached the provider), and the provider retries 409 for five
minutes before failing. devstack.moto_patches.lambda_create_replay answers such an identical
create as the original did. Here, on one function and what it needs (a targeted apply, so
three deploys stay well under two minutes; they run in the background with the other
modules' deployments):

1. deploy;
2. forget the function in the state, as an apply killed right after the create leaves it,
   and deploy again: it must finish in seconds, not fail after five minutes;
3. deploy again: nothing to do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from devstack import terraform as tf

from tests.terraform.background import Deployments, Launch, deployment
from tests.terraform.conftest import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # it may wait for its deployment

DATABASE_URL = "postgresql://pqfile@127.0.0.1:5432/pqfile"
FUNCTION = 'aws_lambda_function.this["fetch"]'
# The flake took 5 min 36 s before failing (the provider retries a 409 for five minutes); a
# fixed redeploy takes seconds alone, but up to ~2 min beside four other applies on 2 busy cores.
REDEPLOY_SECONDS = 240


@dataclass(frozen=True)
class Redeploys:
    """What the emulator listed after each deploy, and how long the second one took."""

    first: list[dict[str, Any]]
    again: list[dict[str, Any]]
    redeploy_seconds: float
    plan: subprocess.CompletedProcess[str]


@deployment("deploy_repeat")
def deploys_in_a_row(launch: Launch) -> Redeploys:
    """The three deploys, in the background (tests/terraform/background.py) on an emulator
    of their own; the test checks what they saw."""
    emulator = launch.start_emulator()
    work = launch.workdir
    state = {"endpoint_url": emulator.endpoint_url, "database_url": DATABASE_URL}
    root = tf.working_copy(work, backend_path=work / "terraform.tfstate")
    (root / "outputs.tf").unlink()  # they name every function; a targeted apply has one
    env = tf.terraform_env(work, local=True)
    package = tf.build_source_zip(work / "lambda")
    tf.init(root, env)
    variables = tf.local_vars(state, package)
    apply = ["apply", "-input=false", "-no-color", "-auto-approve", f"-target={FUNCTION}"]
    lam = emulator.client("lambda")

    tf.run(root, [*apply, *variables], env, timeout=240)
    first = lam.list_functions()["Functions"]

    tf.run(root, ["state", "rm", "-no-color", FUNCTION], env)
    started = time.monotonic()
    tf.run(root, [*apply, *variables], env, timeout=REDEPLOY_SECONDS)
    redeploy_seconds = time.monotonic() - started
    again = lam.list_functions()["Functions"]

    plan = ["plan", "-input=false", "-no-color", "-detailed-exitcode", f"-target={FUNCTION}"]
    planned = tf.run(root, [*plan, *variables], env, timeout=REDEPLOY_SECONDS, check=False)
    return Redeploys(first, again, redeploy_seconds, planned)


def test_deploys_in_a_row_survive_an_apply_that_stopped_after_a_create(
    background_deployments: Deployments,
) -> None:
    require_tool("terraform")
    seen = background_deployments.result("deploy_repeat")
    assert isinstance(seen, Redeploys)
    (function,) = seen.first
    assert seen.redeploy_seconds < REDEPLOY_SECONDS
    (again,) = seen.again
    assert again["FunctionArn"] == function["FunctionArn"]
    assert again["CodeSha256"] == function["CodeSha256"]
    assert seen.plan.returncode == 0, seen.plan.stdout[-3000:]


def test_a_timed_out_terraform_is_interrupted_so_it_can_write_its_state(
    tmp_path: Path,
) -> None:
    # How an apply "stops hard": devstack.terraform.run used to SIGKILL terraform on timeout,
    # which loses the resources created in its last seconds. Now terraform gets SIGINT first.
    interrupted = tmp_path / "interrupted"
    fake = tmp_path / "bin" / "terraform"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\n"
        "import pathlib, signal, sys, time\n"
        "def stop(signum, frame):\n"
        f"    pathlib.Path({str(interrupted)!r}).write_text('state written')\n"
        "    sys.exit(1)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "print('applying', flush=True)\n"
        "time.sleep(60)\n"
    )
    fake.chmod(0o755)
    # The stand-in is on the PATH terraform runs with, not the process's: the background
    # deployments' threads run the real terraform meanwhile (tests/terraform/background.py).
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}

    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as raised:
        tf.run(tmp_path, ["apply"], env, timeout=2)
    assert time.monotonic() - started < 20
    assert interrupted.read_text() == "state written"
    assert "applying" in str(raised.value.stdout)
