"""Terraform for the local stack, and the helpers the Terraform checks share.

`deploy_local(state)` applies `terraform/` with `envs/local.tfvars` against the emulator in
`state["endpoint_url"]`, with the database in `state["database_url"]`, and returns the
outputs. `destroy_local(state)` removes it again.

Terraform never runs in the repository tree: `working_copy()` copies the root (and the
state machines it templates) under `.devstack/terraform/`, adds a local-backend override
and keeps `.terraform/`, the lock file and the state there. `terraform_env()` points
Terraform at the offline provider mirror when the machine has one (`find_provider_mirror`)
and at the public registry otherwise.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TERRAFORM_ROOT = REPO_ROOT / "terraform"
STATEMACHINES = REPO_ROOT / "statemachines"
MIGRATIONS = REPO_ROOT / "sql" / "migrations"
DEVSTACK_DIR = REPO_ROOT / ".devstack"
LOCAL_TFVARS = "envs/local.tfvars"
SOURCE_ZIP = REPO_ROOT / "build" / "lambda" / "pqfile-function.zip"

#: Where machine images put provider mirrors; searched before a full-disk walk.
MIRROR_CANDIDATES = (
    "/opt/tf-plugins",
    "/usr/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
)
PROVIDER_GLOB = "registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws_*"

STOP_GRACE_SECONDS = 30.0  # for terraform to stop cleanly after an interrupt

# The emulator's dummy credentials; never used against AWS.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_SESSION_TOKEN": "",
    "AWS_PROFILE": "",
}


class TerraformError(RuntimeError):
    """A terraform command failed; the message carries its output."""


@functools.cache
def find_provider_mirror() -> Path | None:
    """The folder holding `registry.terraform.io/hashicorp/aws/...`, or None.

    `PQFILE_TF_PLUGIN_DIR` wins; then the usual places; then a walk of the root filesystem
    (what ENVIRONMENT.md describes), skipping /proc and /sys.
    """
    explicit = os.environ.get("PQFILE_TF_PLUGIN_DIR")
    if explicit:
        return Path(explicit) if Path(explicit).is_dir() else None
    for candidate in MIRROR_CANDIDATES:
        root = Path(candidate).expanduser()
        if root.is_dir() and any(root.glob(PROVIDER_GLOB)):
            return root
    return _walk_for_mirror()


def _walk_for_mirror(max_depth: int = 4) -> Path | None:
    """A bounded walk of / for a `registry.terraform.io` folder holding the aws provider.

    Bounded in depth (mirrors live at /opt/x, /usr/share/x/y, ...) so a machine without a
    mirror pays milliseconds, not a scan of the whole disk.
    """
    skip_names = {
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "node_modules",
        ".git",
        ".terraform",
        "__pycache__",
        "site-packages",
        "dist-packages",
        "lib",
        "lib64",
        "bin",
        "sbin",
        "include",
        "src",
        "share",
    }
    allowed_share = {"/usr/share", "/usr/local/share"}
    for dirpath, dirnames, _ in os.walk("/", topdown=True):
        depth = 0 if dirpath == "/" else dirpath.count(os.sep)
        if "registry.terraform.io" in dirnames:
            root = Path(dirpath)
            if any(root.glob(PROVIDER_GLOB)):
                return root
        if depth >= max_depth:
            dirnames[:] = []
            continue
        dirnames[:] = sorted(
            d for d in dirnames if d not in skip_names or os.path.join(dirpath, d) in allowed_share
        )
    return None


def terraform_env(
    workdir: Path, extra: Mapping[str, str] | None = None, local: bool = False
) -> dict[str, str]:
    """Environment for terraform: a CLI config using the mirror (if any), no prompts."""
    env = dict(os.environ)
    env["TF_IN_AUTOMATION"] = "1"
    env["TF_INPUT"] = "0"
    env["CHECKPOINT_DISABLE"] = "1"
    env.pop("TF_WORKSPACE", None)
    mirror = find_provider_mirror()
    config = workdir / "terraform.rc"
    if mirror is not None:
        config.write_text(
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
            '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
            '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n'
            "}\n"
        )
    else:
        config.write_text("# no offline mirror on this machine: the public registry\n")
    env["TF_CLI_CONFIG_FILE"] = str(config)
    if local:
        for key, value in LOCAL_CREDENTIALS.items():
            if value:
                env[key] = value
            else:
                env.pop(key, None)
        env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    if extra:
        env.update(extra)
    return env


def working_copy(workdir: Path, backend_path: Path | None = None) -> Path:
    """Copy `terraform/` (its modules, `statemachines/` and `sql/migrations/`) to `workdir`;
    return the root.

    Keeps `.terraform/` and the lock file from an earlier copy so init stays fast. With
    `backend_path`, an override file swaps the S3 backend for a local state file there.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "terraform"
    root.mkdir(exist_ok=True)
    for old in root.glob("*.tf"):
        old.unlink()
    for source in TERRAFORM_ROOT.glob("*.tf"):
        shutil.copy2(source, root / source.name)
    shutil.rmtree(root / "modules", ignore_errors=True)
    shutil.copytree(TERRAFORM_ROOT / "modules", root / "modules")
    shutil.rmtree(root / "envs", ignore_errors=True)
    shutil.copytree(TERRAFORM_ROOT / "envs", root / "envs")
    shutil.rmtree(workdir / "statemachines", ignore_errors=True)
    shutil.copytree(STATEMACHINES, workdir / "statemachines")
    # terraform/invocations.tf keys the migrate invocation on a checksum of these files.
    shutil.rmtree(workdir / "sql", ignore_errors=True)
    shutil.copytree(MIGRATIONS, workdir / "sql" / "migrations")
    if backend_path is not None:
        (root / "backend_override.tf").write_text(
            'terraform {\n  backend "local" {\n'
            f"    path = {json.dumps(str(backend_path))}\n  }}\n}}\n"
        )
    return root


def run(
    root: Path,
    args: Sequence[str],
    env: Mapping[str, str],
    timeout: float = 600,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`terraform -chdir=root ARGS`; raise TerraformError with the output on failure.

    After `timeout` seconds terraform is interrupted (SIGINT: it finishes the calls in flight
    and writes its state) and killed only if it has not stopped `STOP_GRACE_SECONDS` later;
    then `subprocess.TimeoutExpired` is raised. A kill right away would leave resources it
    had just created out of the state, and the next apply would try to create them again.
    """
    # Found on the PATH of ``env`` (the one terraform runs with), never the process's own:
    # a test may run a stand-in terraform while other threads run the real one.
    terraform = shutil.which("terraform", path=env.get("PATH", os.defpath))
    if terraform is None:
        raise TerraformError("terraform is not on PATH")
    command = [terraform, f"-chdir={root}", *args]
    with subprocess.Popen(  # noqa: S603 - terraform from PATH, our own arguments
        command,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                stdout, stderr = proc.communicate(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            raise subprocess.TimeoutExpired(command, timeout, stdout, stderr) from None
    completed = subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
    if check and completed.returncode != 0:
        raise TerraformError(
            f"terraform {' '.join(args[:1])} failed ({completed.returncode}):\n"
            f"{stdout[-6000:]}\n{stderr[-6000:]}"
        )
    return completed


def init(root: Path, env: Mapping[str, str], backend: bool = True) -> None:
    args = ["init", "-input=false", "-no-color"]
    if not backend:
        args.append("-backend=false")
    run(root, args, env)


def build_source_zip(output_dir: Path = SOURCE_ZIP.parent) -> Path:
    """Build the function zip (no layer) into `output_dir`; return its path.

    The local stack deploys only this: the emulator runs the handlers from the tree."""
    subprocess.run(  # noqa: S603 - our interpreter and script
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "build_lambda"),
            "--source-only",
            "--output-dir",
            str(output_dir),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return output_dir / SOURCE_ZIP.name


def local_vars(state: Mapping[str, Any], package: Path) -> list[str]:
    """`-var` arguments for envs/local.tfvars from the devstack state."""
    endpoint = str(state["endpoint_url"]).rstrip("/")
    args = [
        f"-var-file={LOCAL_TFVARS}",
        f"-var=local_endpoint={endpoint}",
        f"-var=lambda_package_path={package}",
    ]
    if state.get("database_url"):
        args.append(f"-var=database_url={state['database_url']}")
    if state.get("sts_endpoint_url"):
        args.append(f"-var=sts_endpoint_url={state['sts_endpoint_url']}")
    return args


def _state_dir(state: Mapping[str, Any]) -> Path:
    base = Path(state.get("devstack_dir") or DEVSTACK_DIR)
    return base / "terraform"


def deploy_local(
    state: Mapping[str, Any], progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Apply `envs/local.tfvars` against the emulator; return `{output: value}`.

    `state` needs `endpoint_url` and `database_url`; `devstack_dir` (default `.devstack/`)
    says where the working copy and the state file live.
    """
    workdir = _state_dir(state)
    _forget_state_of_a_previous_emulator(workdir / "terraform.tfstate", state)
    root = working_copy(workdir, backend_path=workdir / "terraform.tfstate")
    env = terraform_env(workdir, local=True)
    # A zip of our own: a shared build/ file rebuilt mid-apply changes its hash under us.
    package = build_source_zip(workdir / "lambda")
    init(root, env)
    apply_args = ["apply", "-input=false", "-no-color", "-auto-approve"]
    apply_args += local_vars(state, package)
    if progress is None:
        run(root, apply_args, env, timeout=900)
    else:
        _apply_with_progress(root, apply_args, env, progress)
    return outputs(root, env)


def _apply_with_progress(
    root: Path, args: Sequence[str], env: Mapping[str, str], progress: Callable[[int], None]
) -> None:
    """`terraform apply`, calling ``progress(resources done)`` as resources complete."""
    terraform = shutil.which("terraform", path=env.get("PATH", os.defpath))
    if terraform is None:
        raise TerraformError("terraform is not on PATH")
    done = 0
    lines: list[str] = []
    with subprocess.Popen(  # noqa: S603 - terraform from PATH, our own arguments
        [terraform, f"-chdir={root}", *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if ": Creation complete" in line or ": Modifications complete" in line:
                done += 1
                progress(done)
        returncode = proc.wait(timeout=900)
    if returncode != 0:
        raise TerraformError(f"terraform apply failed ({returncode}):\n{''.join(lines)[-12000:]}")


def _forget_state_of_a_previous_emulator(state_file: Path, state: Mapping[str, Any]) -> None:
    """The emulator keeps nothing across restarts: a state file describing resources it no
    longer has would only make Terraform refresh them away one by one."""
    if not state_file.exists():
        return
    try:
        recorded = json.loads(state_file.read_text())
        bucket = recorded["outputs"]["uploads_bucket_name"]["value"]
    except (ValueError, KeyError, TypeError):
        return
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client(
        "s3",
        endpoint_url=str(state["endpoint_url"]),
        region_name="us-east-1",
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        state_file.rename(state_file.with_suffix(".tfstate.stale"))
    except BotoCoreError:
        return


def outputs(root: Path, env: Mapping[str, str]) -> dict[str, Any]:
    proc = run(root, ["output", "-json", "-no-color"], env)
    raw: dict[str, dict[str, Any]] = json.loads(proc.stdout or "{}")
    return {name: item.get("value") for name, item in raw.items()}


def destroy_local(state: Mapping[str, Any]) -> None:
    """Destroy what `deploy_local` created (a no-op when nothing was deployed)."""
    workdir = _state_dir(state)
    if not (workdir / "terraform.tfstate").exists():
        return
    root = working_copy(workdir, backend_path=workdir / "terraform.tfstate")
    env = terraform_env(workdir, local=True)
    package = workdir / "lambda" / "pqfile-function.zip"
    if not package.exists():
        package = build_source_zip(package.parent)
    init(root, env)
    run(
        root,
        ["destroy", "-input=false", "-no-color", "-auto-approve", *local_vars(state, package)],
        env,
        timeout=900,
    )


# `destroy` is the name devstack/__main__.py may call.
destroy = destroy_local
