"""Operator commands on a deployed stack: invoke the admin function as yourself
(docs/OPERATIONS.md, "Operator commands on AWS").

``--stack DIR`` (or ``PQFILE_STACK``) names the Terraform root of the deployment; the
admin function's name and the audience come from its outputs (``admin_function_name``,
``audience``), unless ``PQFILE_ADMIN_FUNCTION`` / ``PQFILE_AUDIENCE`` name them. Without a
stack, or with ``--database-url``, the commands keep connecting to the database directly
(the local stack, and break-glass). A minimal private helper: the shared stack discovery
of the service commands (cli/_stack.py) is to replace its output reading.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pqfile.config import AwsSettings, CliSettings, ConfigurationError, IdentitySettings
from pqfile.errors import PQFileError


class AdminRefusedError(PQFileError):
    """The admin function refused (its errorType and message)."""


def add_stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack",
        metavar="DIR",
        help="a deployed stack's Terraform root: run through its admin function as yourself "
        "(default: PQFILE_STACK; --database-url connects directly instead)",
    )
    parser.add_argument("--profile", help="with --stack: the AWS profile to sign and invoke with")
    parser.add_argument("--region", help="with --stack: the AWS region")


def via_function(args: argparse.Namespace) -> bool:
    """True when this command goes through the admin function (a stack, no database URL)."""
    if getattr(args, "database_url", None):
        return False
    return bool(getattr(args, "stack", None) or CliSettings.from_env().stack)


def _outputs(stack: str) -> dict[str, Any]:
    """``terraform output -json`` of the stack (values only)."""
    root = Path(stack)
    if not root.is_dir():
        raise ConfigurationError(f"--stack {stack}: no such directory")
    terraform = shutil.which("terraform")
    if terraform is None:
        raise ConfigurationError("--stack needs terraform on PATH to read the stack's outputs")
    try:
        done = subprocess.run(  # noqa: S603 (a fixed argument list)
            [terraform, f"-chdir={root}", "output", "-json"],
            capture_output=True, check=False, timeout=120,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigurationError(f"terraform output failed: {type(exc).__name__}") from None
    if done.returncode != 0:
        first = (done.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[0]
        raise ConfigurationError(f"terraform output failed in {stack}: {first[:200]}")
    try:
        raw = json.loads(done.stdout or b"{}")
    except ValueError:
        raise ConfigurationError("terraform output -json is not JSON") from None
    return {k: v.get("value") for k, v in raw.items() if isinstance(v, dict)}


def _target(args: argparse.Namespace) -> tuple[str, str]:
    """The admin function and the audience: the environment first, else the outputs."""
    settings = CliSettings.from_env()
    function = settings.admin_function
    audience = IdentitySettings.from_env(region=args.region).audience
    if not function or not audience:
        outputs = _outputs(str(args.stack or settings.stack))
        function = function or outputs.get("admin_function_name")
        audience = audience or outputs.get("audience")
    if not isinstance(function, str) or not function:
        raise ConfigurationError(
            "the stack has no admin function (output admin_function_name): not deployed?"
        )
    if not isinstance(audience, str) or not audience:
        raise ConfigurationError("the stack has no audience (output audience)")
    return function, audience


def run_admin(args: argparse.Namespace, command: str, command_args: dict[str, Any]) -> Any:
    """Invoke the admin function with a fresh proof for (command, args); its ``result``."""
    from pqfile.adapters.lambda_retrieve import invoke_retrieve
    from pqfile.adapters.sts_proof import build_identity_proof, default_credentials
    from pqfile.auth import PROOF_FIELD, StsEndpoint
    from pqfile.usecases.admin import admin_request_sha256

    function, audience = _target(args)
    region = args.region or AwsSettings.from_env().region
    identity = IdentitySettings.from_env(region=region)
    endpoint = StsEndpoint.parse(identity.sts_endpoint_url, default_region=identity.sts_region)
    request = {"command": command, "args": {k: v for k, v in command_args.items()
                                            if v is not None}}  # fmt: skip
    proof = build_identity_proof(
        request,
        audience=audience,
        endpoint=endpoint,
        credentials=default_credentials(profile=args.profile, region=region),
        request_sha256=admin_request_sha256(request),
    )
    answer = invoke_retrieve(
        function, {**request, PROOF_FIELD: proof}, region=region, profile=args.profile,
        endpoint_url=AwsSettings.from_env().endpoint_url,
    )  # fmt: skip
    body = answer.payload
    if answer.function_error:
        kind = str(body.get("errorType", "Error"))[:100]
        message = str(body.get("errorMessage", "")).splitlines() or [""]
        raise AdminRefusedError(f"{kind}: {message[0][:300]}")
    return body.get("result")
