"""Deploy the project's Terraform to LocalStack with ``tflocal``: the one deploy both local
LocalStack paths use (``make deploy-localstack`` against LocalStack in Docker on :4566,
``make test-localstack`` against LocalStack on the host).

1. ``build_packages``: the function zip and a dependencies layer of wheels for the machine's
   architecture (LocalStack runs the functions on it), no RDS CA bundle (the database is
   local): ``scripts/build_lambda --local --architecture ARCH``.
2. ``working_copy``: ``terraform/`` copied under ``.devstack/localstack/`` (never run in the
   tree), with ``zz_local_backend_override.tf``: a local state file. tflocal writes its own
   ``localstack_providers_override.tf`` (endpoints, and an S3 backend with a DynamoDB lock
   table); Terraform reads override files in name order, so ours, later, wins.
3. ``tflocal init`` + ``tflocal apply -var-file=envs/localstack.tfvars`` with the offline
   provider mirror (``TF_CLI_CONFIG_FILE``, devstack/terraform.py), ``AWS_ENDPOINT_URL`` =
   LocalStack and ``S3_HOSTNAME`` = its host (tflocal's default name does not resolve
   offline).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devstack import terraform as tf
from devstack.localstack import REPO_ROOT, ensure_venv

WORKDIR = REPO_ROOT / ".devstack" / "localstack"
TFVARS = "envs/localstack.tfvars"
BACKEND_OVERRIDE = "zz_local_backend_override.tf"
APPLY_TIMEOUT_SECONDS = 900.0
STOP_GRACE_SECONDS = 30.0
#: Terraform's default is 10; LocalStack answers each call quickly, the functions' zips
#: take their time: more at once halves the apply here.
PARALLELISM = 30
#: Docker's LocalStack (docker-compose.yml) and the database its functions reach.
DEFAULT_ENDPOINT = "http://127.0.0.1:4566"


class DeployError(RuntimeError):
    """A build or tflocal step failed; the message carries its output."""


def host_architecture() -> str:
    """Lambda's name for this machine's instruction set (what LocalStack runs)."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "x86_64"
    if machine in ("aarch64", "arm64"):
        return "arm64"
    raise DeployError(f"LocalStack cannot run Lambda functions on a {machine} machine")


def build_packages(output_dir: Path, architecture: str) -> tuple[Path, Path]:
    """The function zip and the layer (``scripts/build_lambda --local``); their paths."""
    proc = subprocess.run(  # noqa: S603 - our interpreter and script
        [sys.executable, str(REPO_ROOT / "scripts" / "build_lambda"), "--local",
         "--architecture", architecture, "--output-dir", str(output_dir)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise DeployError(
            f"scripts/build_lambda failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return output_dir / "pqfile-function.zip", output_dir / "pqfile-deps-layer.zip"


def working_copy(workdir: Path) -> Path:
    root = tf.working_copy(workdir)
    (root / BACKEND_OVERRIDE).write_text(
        "# After tflocal's localstack_providers_override.tf: a local state file.\n"
        'terraform {\n  backend "local" {\n'
        f"    path = {json.dumps(str(workdir / 'terraform.tfstate'))}\n  }}\n}}\n"
    )
    return root


def tflocal_env(workdir: Path, endpoint: str) -> dict[str, str]:
    env = tf.terraform_env(workdir, local=True)
    env["AWS_ENDPOINT_URL"] = endpoint
    env["S3_HOSTNAME"] = urlsplit(endpoint).hostname or "127.0.0.1"
    env["AWS_DEFAULT_REGION"] = env["AWS_REGION"] = "us-east-1"
    return env


def tflocal(
    root: Path,
    args: Sequence[str],
    env: Mapping[str, str],
    timeout: float = APPLY_TIMEOUT_SECONDS,
    echo: Callable[[str], None] | None = None,
) -> str:
    """``tflocal ARGS`` in ``root``; its output. Interrupted (SIGINT, so it writes its state)
    after ``timeout`` seconds and killed ``STOP_GRACE_SECONDS`` later."""
    command = [str(ensure_venv(server=False, say=echo is not None) / "bin" / "tflocal"), *args]
    lines: list[str] = []
    with subprocess.Popen(  # noqa: S603 - tflocal from our venv, our arguments
        command, cwd=root, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    ) as proc:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        try:
            for line in proc.stdout:
                lines.append(line)
                if echo is not None:
                    echo(line.rstrip("\n"))
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(command, timeout)
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            # Timeout or Ctrl-C: let terraform write its state, then make sure it is gone.
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            raise
    output = "".join(lines)
    # The whole output beside the state file: what took long, what failed.
    (root.parent / f"tflocal-{args[0]}.log").write_text(output)
    if proc.returncode != 0:
        raise DeployError(f"tflocal {args[0]} failed ({proc.returncode}):\n{output[-8000:]}")
    return output


def _vars(
    endpoint: str, database_url: str | None, package: Path, layer: Path, arch: str,
    var_files: Sequence[str],
) -> list[str]:
    """envs/localstack.tfvars, what this deploy decides, then ``var_files`` (later wins)."""
    args = [
        f"-var-file={TFVARS}",
        f"-var=local_endpoint={endpoint.rstrip('/')}",
        f"-var=lambda_package_path={package}",
        f"-var=lambda_layer_path={layer}",
        f"-var=lambda_architecture={arch}",
    ]
    if database_url:
        args.append(f"-var=database_url={database_url}")
    return args + [f"-var-file={path}" for path in var_files]


def deploy(
    endpoint: str,
    database_url: str | None,
    workdir: Path = WORKDIR,
    echo: Callable[[str], None] | None = None,
    extra_vars: Sequence[str] = (),
    var_files: Sequence[str] = (),
) -> dict[str, Any]:
    """Build, ``tflocal init`` and ``tflocal apply``; return ``{output: value}``.

    ``database_url`` as the functions reach the database (None: a var file gives it);
    ``var_files`` (relative to terraform/) after envs/localstack.tfvars, e.g. the Docker
    path's envs/docker.tfvars; ``extra_vars`` are further ``-var=...`` arguments."""
    arch = host_architecture()
    package, layer = build_packages(workdir / "lambda", arch)
    root = working_copy(workdir)
    env = tflocal_env(workdir, endpoint)
    tflocal(root, ["init", "-input=false", "-no-color", "-reconfigure"], env, echo=echo)
    tflocal(
        root,
        ["apply", f"-parallelism={PARALLELISM}", "-input=false", "-no-color", "-auto-approve",
         *_vars(endpoint, database_url, package, layer, arch, var_files), *extra_vars],
        env, echo=echo,
    )
    raw = tflocal(root, ["output", "-json", "-no-color"], env)
    start = raw.find("{")
    values: dict[str, dict[str, Any]] = json.loads(raw[start:] if start >= 0 else "{}")
    return {name: item.get("value") for name, item in values.items()}


def destroy(
    endpoint: str,
    database_url: str | None,
    workdir: Path = WORKDIR,
    echo: Callable[[str], None] | None = None,
    extra_vars: Sequence[str] = (),
    var_files: Sequence[str] = (),
) -> None:
    """``tflocal destroy`` of what ``deploy`` created (nothing to do without a state file)."""
    if not (workdir / "terraform.tfstate").exists():
        return
    arch = host_architecture()
    package = workdir / "lambda" / "pqfile-function.zip"
    layer = workdir / "lambda" / "pqfile-deps-layer.zip"
    if not package.exists() or not layer.exists():
        package, layer = build_packages(workdir / "lambda", arch)
    root = working_copy(workdir)
    env = tflocal_env(workdir, endpoint)
    tflocal(
        root,
        ["destroy", f"-parallelism={PARALLELISM}", "-input=false", "-no-color", "-auto-approve",
         *_vars(endpoint, database_url, package, layer, arch, var_files), *extra_vars],
        env, echo=echo,
    )
