"""Which stack the service commands talk to (docs/OPERATIONS.md, "From a user's seat").

``--stack DIR`` or ``PQFILE_STACK`` names a deployed stack: DIR is a Terraform root whose
``terraform output -json`` is read (or a file holding that output). Without either, the
local stack: ``state.json`` in ``PQFILE_DEVSTACK_DIR`` (default ``.devstack`` in the
repository), written by ``python -m devstack up`` and ``deploy``. AWS credentials come from
the standard chain (or ``--profile``) either way.

Every service command (``upload``, ``documents status``, ``retrieve``) resolves its names
here, so the errors read the same: not deployed, unknown output, no credentials.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pqfile.config import AwsSettings, CliSettings, ConfigurationError

#: The repository root when running from a checkout (functions/pqfile/cli/_stack.py).
_REPO_ROOT = Path(__file__).resolve().parents[3]
_STATE_FILE = "state.json"
#: Seconds `terraform output -json` may take.
_TERRAFORM_TIMEOUT = 120


@dataclass(frozen=True)
class Stack:
    """The names a service command needs, wherever they came from."""

    #: "local" (the devstack state file), "deployed" (Terraform outputs) or "none".
    kind: str
    #: Where the names were read: a state file, a Terraform root, an outputs file.
    origin: str
    outputs: dict[str, Any] = field(default_factory=dict)
    #: The emulator's endpoint on the local stack; None on AWS.
    endpoint_url: str | None = None
    region: str | None = None
    #: The STS endpoint the deployment verifies proofs with (the local STS locally).
    sts_endpoint_url: str | None = None
    #: Why there is no stack ("none" only).
    reason: str = (
        "not deployed: no local stack (python -m devstack up, then deploy) "
        "and no --stack DIR or PQFILE_STACK"
    )

    def output(self, name: str) -> str:
        """A string output, or a one-line error naming what is missing."""
        if self.kind == "none":
            raise ConfigurationError(self.reason)
        value = self.outputs.get(name)
        if value is None or value == "":
            raise ConfigurationError(
                f"the stack ({self.origin}) has no output {name!r}: deployed from an older "
                "version? (terraform apply)"
            )
        if not isinstance(value, str):
            raise ConfigurationError(f"the stack's output {name!r} is not a string")
        return value

    def optional(self, name: str) -> str | None:
        value = self.outputs.get(name)
        return value if isinstance(value, str) and value else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--stack``, shared by every service command."""
    parser.add_argument(
        "--stack",
        metavar="DIR",
        help="a deployed stack: its Terraform root, or a file of `terraform output -json` "
        "(default: PQFILE_STACK, else the local stack)",
    )


def discover(args: argparse.Namespace, *, required: bool = True) -> Stack:
    """The stack named by ``--stack``/``PQFILE_STACK``, else the local stack.

    With ``required=False`` a missing local stack yields a ``none`` stack (its
    :meth:`Stack.output` then says "not deployed"), so flags and environment variables
    alone still work."""
    settings = CliSettings.from_env()
    named = getattr(args, "stack", None) or settings.stack
    if named:
        return _deployed(Path(named).expanduser())
    try:
        local = _local(settings.devstack_dir)
    except ConfigurationError as exc:
        if required:
            raise
        return Stack("none", "nowhere", reason=str(exc))
    if local is not None:
        return local
    none = Stack("none", "nowhere")
    if required:
        none.output("")  # raises "not deployed"
    return none


def _state_candidates(devstack_dir: str | None) -> list[Path]:
    if devstack_dir:
        return [Path(devstack_dir).expanduser() / _STATE_FILE]
    return [_REPO_ROOT / ".devstack" / _STATE_FILE, Path.cwd() / ".devstack" / _STATE_FILE]


def _local(devstack_dir: str | None) -> Stack | None:
    for path in _state_candidates(devstack_dir):
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{path}: unreadable ({type(exc).__name__})") from None
        if not isinstance(state, dict):
            raise ConfigurationError(f"{path}: not a local stack state file")
        if state.get("status") != "ready":
            raise ConfigurationError(
                f"the local stack is not running ({path}: status {state.get('status')!r}; "
                "python -m devstack up)"
            )
        outputs = state.get("terraform_outputs") or {}
        if not outputs:
            raise ConfigurationError(
                "not deployed: the local stack runs but nothing is deployed on it "
                "(python -m devstack deploy)"
            )
        return Stack(
            kind="local",
            origin=str(path),
            outputs=dict(outputs),
            endpoint_url=state.get("endpoint_url") or None,
            region=state.get("region") or None,
            sts_endpoint_url=state.get("sts_endpoint_url") or None,
        )
    return None


def _deployed(path: Path) -> Stack:
    if path.is_file():
        raw_text = _read(path)
    elif path.is_dir():
        raw_text = _terraform_output(path)
    else:
        raise ConfigurationError(f"--stack {path}: no such folder or file")
    try:
        raw = json.loads(raw_text or "{}")
    except ValueError:
        raise ConfigurationError(f"--stack {path}: not the JSON of terraform output") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"--stack {path}: not the JSON of terraform output")
    outputs = {
        name: item.get("value") if isinstance(item, dict) and "value" in item else item
        for name, item in raw.items()
    }
    if not outputs:
        raise ConfigurationError(f"not deployed: {path} has no Terraform outputs (terraform apply)")
    return Stack(
        kind="deployed",
        origin=str(path),
        outputs=outputs,
        endpoint_url=AwsSettings.from_env().endpoint_url,
        region=_region_of(outputs),
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"--stack {path}: unreadable ({type(exc).__name__})") from None


def _terraform_output(root: Path) -> str:
    terraform = shutil.which("terraform")
    if terraform is None:
        raise ConfigurationError(
            "terraform is not on PATH: install it, or give --stack a file of "
            "`terraform output -json`"
        )
    try:
        proc = subprocess.run(  # noqa: S603 - fixed arguments, the user's own Terraform
            [terraform, f"-chdir={root}", "output", "-json", "-no-color"],
            capture_output=True,
            text=True,
            timeout=_TERRAFORM_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigurationError(f"terraform output in {root} took over 2 minutes") from None
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if ln.strip()), "failed")
        raise ConfigurationError(f"terraform output in {root}: {first.strip()[:200]}")
    return proc.stdout


def _region_of(outputs: dict[str, Any]) -> str | None:
    """The region an output ARN names (arn:aws:states:REGION:...), if any."""
    for name in ("ingest_state_machine_arn", "rotation_state_machine_arn", "seeds_kms_key_arn"):
        value = outputs.get(name)
        if isinstance(value, str) and value.startswith("arn:"):
            parts = value.split(":")
            if len(parts) > 3 and parts[3]:
                return parts[3]
    return None


@dataclass(frozen=True)
class ProofTarget:
    """Where a proof-carrying invoke goes: the function, the audience, STS, the endpoint."""

    function: str
    audience: str
    sts_endpoint_url: str | None
    region: str
    endpoint_url: str | None
    #: PQFILE_STS_PLAIN_HTTP_HOST: a non-loopback host STS may be reached on over http.
    plain_http_host: str | None = None


def proof_target(stack: Stack, output: str, *, region: str | None = None) -> ProofTarget:
    """The function named by the stack's ``output``, and what its proofs must name (the
    environment's PQFILE_AUDIENCE / PQFILE_STS_ENDPOINT_URL / AWS_ENDPOINT_URL win)."""
    from pqfile.config import IdentitySettings

    function = stack.output(output)
    aws = AwsSettings.from_env()
    region = region or stack.region or aws.region
    identity = IdentitySettings.from_env(region=region)
    audience = identity.audience or stack.optional("audience")
    if not audience:
        raise ConfigurationError(
            f"the stack ({stack.origin}) has no output 'audience' and PQFILE_AUDIENCE is unset"
        )
    sts = None if identity.sts_endpoint_configured else (
        stack.sts_endpoint_url if stack.kind == "local" else None
    )  # fmt: skip
    endpoint = aws.endpoint_url or (stack.endpoint_url if stack.kind == "local" else None)
    return ProofTarget(
        function, audience, sts or identity.sts_endpoint_url, region, endpoint,
        identity.sts_plain_http_host,
    )  # fmt: skip
