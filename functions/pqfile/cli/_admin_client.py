"""Operator commands on a deployed stack: invoke the admin function as yourself
(docs/OPERATIONS.md, "Operator commands on AWS").

``--stack DIR`` (or ``PQFILE_STACK``) names the deployment; its admin function, audience
and STS endpoint come from the one stack lookup of the service commands (cli/_stack.py:
``admin_function_name``, ``audience``), unless ``PQFILE_ADMIN_FUNCTION`` and
``PQFILE_AUDIENCE`` both name them (then nothing is read). Without a stack, or with
``--database-url``, the commands keep connecting to the database directly (the local
stack, and break-glass).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from pqfile.cli import _stack
from pqfile.config import AwsSettings, CliSettings, ConfigurationError, IdentitySettings
from pqfile.errors import PQFileError


class AdminRefusedError(PQFileError):
    """The admin function refused (its errorType and message)."""


def add_stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack",
        metavar="DIR",
        help="a deployed stack's Terraform root (or a file of `terraform output -json`): run "
        "through its admin function as yourself (default: PQFILE_STACK; --database-url "
        "connects directly instead)",
    )
    parser.add_argument("--profile", help="with --stack: the AWS profile to sign and invoke with")
    parser.add_argument("--region", help="with --stack: the AWS region")


def via_function(args: argparse.Namespace) -> bool:
    """True when this command goes through the admin function (a stack, no database URL)."""
    if getattr(args, "database_url", None):
        return False
    return bool(getattr(args, "stack", None) or CliSettings.from_env().stack)


def _target(args: argparse.Namespace) -> _stack.ProofTarget:
    """The admin function, the audience, STS and the endpoint: the environment when it
    names both the function and the audience, else the stack's outputs."""
    settings = CliSettings.from_env()
    region = getattr(args, "region", None)
    identity = IdentitySettings.from_env(region=region)
    if settings.admin_function and identity.audience:
        aws = AwsSettings.from_env()
        return _stack.ProofTarget(settings.admin_function, identity.audience,
                                  identity.sts_endpoint_url, region or aws.region,
                                  aws.endpoint_url)  # fmt: skip
    target = _stack.proof_target(_stack.discover(args), "admin_function_name", region=region)
    if settings.admin_function:
        target = dataclasses.replace(target, function=settings.admin_function)
    return target


def invoke_admin(
    args: argparse.Namespace, command: str, command_args: dict[str, Any]
) -> dict[str, Any]:
    """Invoke the admin function with a fresh proof for (command, args); its whole answer
    (``result``, and ``events_not_delivered`` where an event was due)."""
    from pqfile.adapters.lambda_retrieve import invoke_retrieve
    from pqfile.adapters.sts_proof import build_identity_proof, default_credentials
    from pqfile.auth import PROOF_FIELD, StsEndpoint
    from pqfile.usecases.admin import admin_request_sha256

    target = _target(args)
    try:
        endpoint = StsEndpoint.parse(
            target.sts_endpoint_url or "",
            default_region=target.region,
            plain_http_host=target.plain_http_host,
        )
    except ValueError as exc:
        raise ConfigurationError(f"STS endpoint: {exc}") from None
    request = {"command": command, "args": {k: v for k, v in command_args.items()
                                            if v is not None}}  # fmt: skip
    proof = build_identity_proof(
        request,
        audience=target.audience,
        endpoint=endpoint,
        credentials=default_credentials(profile=args.profile, region=target.region),
        request_sha256=admin_request_sha256(request),
    )
    answer = invoke_retrieve(
        target.function, {**request, PROOF_FIELD: proof}, region=target.region,
        profile=args.profile, endpoint_url=target.endpoint_url,
    )  # fmt: skip
    body = answer.payload
    if answer.function_error:
        kind = str(body.get("errorType", "Error"))[:100]
        message = str(body.get("errorMessage", "")).splitlines() or [""]
        raise AdminRefusedError(f"{kind}: {message[0][:300]}")
    return dict(body)


def run_admin(args: argparse.Namespace, command: str, command_args: dict[str, Any]) -> Any:
    """Invoke the admin function; its ``result``."""
    return invoke_admin(args, command, command_args).get("result")
