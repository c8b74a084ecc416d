"""`pqfile documents status ID | --source s3://BUCKET/KEY[?versionId=V]` and the caller's
`pqfile documents list --as-caller`: through the documents function with an identity
proof (docs/OPERATIONS.md, "From a user's seat"). The function answers what the caller's
access rules allow; anything else is `no such document`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pqfile.cli import _stack
from pqfile.config import ConfigurationError
from pqfile.errors import PQFileError


class QueryRefusedError(PQFileError):
    """The documents function refused (its errorType and message)."""


def register(sub: Any) -> None:
    status = sub.add_parser(
        "status",
        help="a document's status as yourself (the documents function, an identity proof)",
        description="Ask the documents function for one document's status: by id or by "
        "the name it was uploaded under.",
    )
    status.add_argument("document_id", nargs="?", metavar="DOCUMENT_ID")
    status.add_argument(
        "--source", metavar="S3_URL",
        help="instead of an id: s3://<uploads bucket>/uploads/TENANT/NAME[?versionId=V]",
    )  # fmt: skip
    _stack.add_arguments(status)
    status.add_argument("--profile", help="the AWS profile to sign and invoke with")
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")
    status.set_defaults(func=_status)


def add_caller_options(listing: argparse.ArgumentParser) -> None:
    listing.add_argument(
        "--as-caller", action="store_true",
        help="through the documents function as yourself (what your access rules allow); "
        "without it the database is read directly (operators, the local stack)",
    )  # fmt: skip
    _stack.add_arguments(listing)
    listing.add_argument("--profile", help="with --as-caller: the AWS profile to sign with")


def _invoke(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any]:
    from pqfile.adapters.lambda_proof_invoke import invoke_with_proof
    from pqfile.auth import StsEndpoint

    target = _stack.proof_target(_stack.discover(args), "documents_function_name")
    try:
        sts = StsEndpoint.parse(
            target.sts_endpoint_url or "",
            default_region=target.region,
            plain_http_host=target.plain_http_host,
        )
    except ValueError as exc:
        raise ConfigurationError(f"STS endpoint: {exc}") from None
    answer = invoke_with_proof(
        target.function, request, audience=target.audience, sts_endpoint=sts,
        region=target.region, profile=args.profile, endpoint_url=target.endpoint_url,
    )  # fmt: skip
    body = answer.payload
    if answer.function_error:
        kind = str(body.get("errorType", "Error"))[:100]
        message = str(body.get("errorMessage", "")).splitlines()[0][:300] if body else ""
        raise QueryRefusedError(f"{kind}: {message}")
    return body


def _status(args: argparse.Namespace) -> int:
    from pqfile.cli.retrieve import source_of

    if bool(args.document_id) == bool(args.source):
        raise ConfigurationError(
            "name the document: DOCUMENT_ID or --source s3://BUCKET/KEY[?versionId=VERSION]"
        )
    request: dict[str, Any] = {"operation": "status"}
    if args.document_id:
        request["document_id"] = args.document_id
    else:
        request["source"] = source_of(args.source)
    body = _invoke(args, request)
    if args.json:
        print(json.dumps(body, sort_keys=True))
        return 0
    source = body.get("source") or {}
    print(f"document {body.get('document_id')}: {body.get('status')}")
    print(f"  source   s3://{source.get('bucket')}/{source.get('key')}"
          + (f"?versionId={source['version_id']}" if source.get("version_id") else ""))  # fmt: skip
    for label, name in (("tenant", "tenant"), ("key", "key_id"), ("suite", "suite"),
                        ("size", "size"), ("created", "created_at"), ("stored", "stored_at"),
                        ("error", "error")):  # fmt: skip
        if body.get(name) is not None:
            print(f"  {label:<8} {body[name]}")
    return 0


def list_as_caller(args: argparse.Namespace) -> int:
    if args.key:
        raise ConfigurationError("--key is an operator filter (without --as-caller)")
    request: dict[str, Any] = {"operation": "list", "limit": min(args.limit, 1000)}
    if args.tenant:
        request["tenant"] = args.tenant
    if args.status:
        request["status"] = args.status
    body = _invoke(args, request)
    if args.json:
        print(json.dumps(body, sort_keys=True))
        return 0
    print(f"{'document':<34} {'tenant':<16} {'status':<9} {'size':>12}  source")
    for d in body.get("documents", []):
        size = "-" if d.get("size") is None else str(d["size"])
        src = d.get("source") or {}
        where = f"s3://{src.get('bucket')}/{src.get('key')}"
        print(f"{d.get('document_id', ''):<34} {d.get('tenant') or '-':<16} "
              f"{d.get('status', ''):<9} {size:>12}  {where}")  # fmt: skip
    print(f"{body.get('count', 0)} document(s)", file=sys.stderr)
    return 0
