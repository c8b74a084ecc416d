"""`pqfile auth proof`: an identity proof for one retrieve request, for callers of
``aws lambda invoke`` (docs/OPERATIONS.md, "Proving who you are").

It prints a whole retrieve payload: the request's fields plus ``identity_proof``, signed
with the caller's AWS credentials (the standard chain, or ``--profile``). The proof is
valid for five minutes, for this request, this deployment (audience) and this STS endpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pqfile.cli import _stack
from pqfile.cli.db import command_group
from pqfile.config import AwsSettings, ConfigurationError, IdentitySettings


def register(subparsers: Any) -> None:
    sub = command_group(subparsers, "auth", "prove who you are to the retrieve function")
    proof = sub.add_parser(
        "proof",
        help="print a retrieve payload with an identity proof (valid 5 minutes)",
        description="Print a retrieve payload for `aws lambda invoke --payload`: the request "
        "and a SigV4-signed sts:GetCallerIdentity request made with your AWS credentials.",
    )
    proof.add_argument("--document-id", metavar="ID", help="the document to retrieve")
    proof.add_argument("--bucket", help="with --key: the package's bucket, instead of an id")
    proof.add_argument("--key", help="with --bucket: the package's key, encrypted/ID.pqf")
    proof.add_argument(
        "--source",
        metavar="S3_URL",
        help="instead of an id: where it was uploaded, s3://BUCKET/uploads/TENANT/NAME"
        "[?versionId=V] (the payload's source field)",
    )
    proof.add_argument("--audience", help="the deployment's audience (default: PQFILE_AUDIENCE)")
    proof.add_argument(
        "--region", help="the STS region (default: AWS_REGION, AWS_DEFAULT_REGION, us-east-1)"
    )
    proof.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="the STS endpoint the deployment sends proofs to (default: "
        "PQFILE_STS_ENDPOINT_URL, else https://sts.<region>.amazonaws.com)",
    )
    proof.add_argument(
        "--operation",
        choices=("status", "list"),
        help="a payload for the documents function instead of retrieve: status (of the "
        "document named) or list (of what you may read)",
    )
    proof.add_argument("--profile", help="the AWS profile to sign with (default: the chain)")
    _stack.add_arguments(proof)
    proof.add_argument(
        "--json", action="store_true", help="one compact line, and nothing on stderr"
    )
    proof.set_defaults(func=_proof)


def _request(args: argparse.Namespace) -> dict[str, Any]:
    operation = getattr(args, "operation", None)
    if operation == "list":
        return {"operation": "list"}
    if operation == "status":
        if args.bucket or args.key:
            raise ConfigurationError("a status request names --document-id or --source")
        return {"operation": "status", **_document(args)}
    return _document(args)


def _document(args: argparse.Namespace) -> dict[str, Any]:
    named = [bool(args.document_id), bool(args.bucket or args.key), bool(args.source)]
    if sum(named) == 1:
        if args.document_id:
            return {"document_id": args.document_id}
        if args.source:
            from pqfile.cli.retrieve import source_of

            return {"source": source_of(args.source)}
        if args.bucket and args.key:
            return {"bucket": args.bucket, "key": args.key}
    raise ConfigurationError(
        "name the document: --document-id ID, --bucket B --key K, or --source S3_URL"
    )


def _proof(args: argparse.Namespace) -> int:
    from pqfile.adapters.sts_proof import default_credentials, proof_payload
    from pqfile.auth import StsEndpoint

    request = _request(args)
    settings = IdentitySettings.from_env(region=args.region)
    # Flags and environment variables first, then the stack's (cli/_stack.py), as retrieve.
    stack = _stack.discover(args, required=False)
    audience = args.audience or settings.audience or stack.optional("audience")
    if not audience:
        raise ConfigurationError("no audience: --audience, PQFILE_AUDIENCE or a stack")
    region = args.region or stack.region or AwsSettings.from_env().region
    local_sts = stack.sts_endpoint_url if stack.kind == "local" else None
    sts_url = args.endpoint_url or (None if settings.sts_endpoint_configured else local_sts)
    try:
        endpoint = StsEndpoint.parse(
            sts_url or settings.sts_endpoint_url,
            default_region=region if sts_url else settings.sts_region,
            plain_http_host=settings.sts_plain_http_host,
        )
    except ValueError as exc:
        raise ConfigurationError(f"--endpoint-url: {exc}") from None
    credentials = default_credentials(profile=args.profile, region=region)
    try:
        payload = proof_payload(
            request, audience=audience, endpoint=endpoint, credentials=credentials
        )
    except ValueError as exc:  # an audience the service could never accept
        raise ConfigurationError(str(exc)) from None
    if args.json:
        print(json.dumps(payload, sort_keys=True, separators=(",", ":")))
        return 0
    print(json.dumps(payload, indent=2, sort_keys=True))
    print(
        f"identity proof for {request}, audience {audience!r}, STS {endpoint.url}, "
        f"signed with {credentials.access_key}: valid for 5 minutes",
        file=sys.stderr,
    )
    return 0
