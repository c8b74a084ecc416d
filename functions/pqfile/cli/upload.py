"""`pqfile upload FILE [--tenant T] [--wait]`: put a file under ``uploads/<tenant>/`` of the
stack's uploads bucket (docs/OPERATIONS.md, "From a user's seat").

The stack comes from ``--stack``/``PQFILE_STACK`` or the local stack (cli/_stack.py); the
credentials from the standard chain or ``--profile``. With ``--wait`` it follows the ingest
execution EventBridge starts for this object version (Step Functions: the execution names
the upload exactly and carries the failing step's error type; IAM: ``states:ListExecutions``
on the ingest state machine, ``states:DescribeExecution`` and ``states:GetExecutionHistory``
on its executions) and prints the document id, key id and suite, or the failure and its
reason.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import mimetypes
import sys
import time
from pathlib import Path
from typing import Any

from pqfile.cli import _stack
from pqfile.cli._output import human_size, progress_bar
from pqfile.config import UPLOADS_PREFIX, AwsSettings, CliSettings, ConfigurationError
from pqfile.errors import PQFileError
from pqfile.usecases.events import tenant_of


class IngestFailedError(PQFileError):
    """The ingest workflow ended without storing the document."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "upload",
        help="upload a file to be encrypted (uploads/<tenant>/<name>), optionally waiting",
        description="Put FILE under uploads/<tenant>/ of the stack's uploads bucket; "
        "--wait follows the ingest until the document is stored or failed.",
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--tenant", help="the tenant folder (default: PQFILE_TENANT)")
    p.add_argument("--name", help="the object name under the tenant (default: FILE's name)")
    p.add_argument("--wait", action="store_true", help="follow the ingest to its end")
    p.add_argument(
        "--timeout", type=float, default=900.0, metavar="SECONDS",
        help="how long --wait waits (default 900)",
    )  # fmt: skip
    _stack.add_arguments(p)
    p.add_argument("--profile", help="the AWS profile to upload with")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=_upload)


def upload_key(tenant: str | None, name: str) -> str:
    """``uploads/<tenant>/<name>``, refusing what the pipeline would not file under a tenant."""
    if not tenant:
        raise ConfigurationError("no tenant: --tenant T or PQFILE_TENANT")
    if not name or name.startswith("/") or "\\" in name or any(
        part in ("", ".", "..") for part in name.split("/")
    ):
        raise ConfigurationError(f"--name {name!r}: a relative object name without . or ..")
    key = f"{UPLOADS_PREFIX}{tenant}/{name}"
    if tenant_of(key) != tenant:
        raise ConfigurationError(
            f"tenant {tenant!r}: letters, digits, '.', '_', '-' (up to 63, starting "
            "with a letter or digit)"
        )
    return key


def _upload(args: argparse.Namespace) -> int:
    from pqfile.adapters.upload_client import IngestFollower, session, upload_file

    path: Path = args.file
    if not path.is_file():
        raise ConfigurationError(f"{path}: no such file")
    key = upload_key(args.tenant or CliSettings.from_env().tenant, args.name or path.name)
    stack = _stack.discover(args)
    bucket = stack.output("uploads_bucket_name")
    machine = stack.output("ingest_state_machine_arn") if args.wait else None
    region = stack.region or AwsSettings.from_env().region
    endpoint = stack.endpoint_url
    s = session(args.profile, region)
    content_type = mimetypes.guess_type(path.name)[0]
    since = dt.datetime.now(dt.UTC)
    size = path.stat().st_size
    with progress_bar(size, "uploading") as advance:
        uploaded = upload_file(
            path, bucket, key, session=s, endpoint_url=endpoint, advance=advance,
            content_type=content_type,
        )  # fmt: skip
    summary: dict[str, Any] = {
        "source": {
            "bucket": uploaded.bucket,
            "key": uploaded.key,
            "version_id": uploaded.version_id,
        },
        "size": uploaded.size,
    }
    if not args.json:
        version = f"?versionId={uploaded.version_id}" if uploaded.version_id else ""
        print(f"uploaded s3://{bucket}/{key}{version}: {human_size(size)}", file=sys.stderr)
    if machine is None:
        _emit(args, summary)
        return 0
    follower = IngestFollower(s, machine, endpoint)
    deadline = time.monotonic() + args.timeout
    arn = _find(follower, uploaded, since, deadline, frozenset())
    if arn is None:
        raise IngestFailedError(
            f"no ingest started for s3://{bucket}/{key} within {args.timeout:.0f} s "
            "(is the uploads bucket's EventBridge rule deployed?)"
        )
    if not args.json:
        print(f"ingest {arn.rsplit(':', 1)[-1]} ...", file=sys.stderr)
    result = follower.wait(arn, max(1.0, deadline - time.monotonic()))
    followed = {arn}
    # A replayed event (S3 delivers at least once) runs a second execution that finds the
    # document stored and skips to the audit: follow the one that stored it, if it shows.
    while result is not None and _duplicate(result.output):
        other = _find(follower, uploaded, since, min(deadline, time.monotonic() + 10),
                      frozenset(followed))  # fmt: skip
        if other is None:
            break
        followed.add(other)
        again = follower.wait(other, max(1.0, deadline - time.monotonic()))
        if again is None:
            break
        arn, result = other, again
    if result is None:
        raise IngestFailedError(f"the ingest still runs after {args.timeout:.0f} s: {arn}")
    summary["execution_arn"] = arn
    summary["status"] = "stored" if result.status == "SUCCEEDED" else "failed"
    if result.status != "SUCCEEDED":
        summary["error"] = {"type": result.error, "message": result.cause,
                            "step": result.failed_step}  # fmt: skip
        if args.json:
            _emit(args, summary)
            return 1
        step = f" in {result.failed_step}" if result.failed_step else ""
        reason = f"{result.error or result.status}: {result.cause or ''}".rstrip(": ")
        raise IngestFailedError(f"the ingest failed{step}: {reason}")
    summary.update(_document_of(result.output))
    _emit(args, summary)
    return 0


def _find(
    follower: Any, uploaded: Any, since: dt.datetime, deadline: float, exclude: frozenset[str]
) -> str | None:
    while True:
        arn: str | None = follower.find(uploaded, since, exclude)
        if arn is not None or time.monotonic() > deadline:
            return arn
        time.sleep(0.5)


def _duplicate(output: dict[str, Any]) -> bool:
    stored = output.get("stored")
    return isinstance(stored, dict) and stored.get("outcome") == "duplicate"


def _document_of(output: dict[str, Any]) -> dict[str, Any]:
    """The document id, key id and suite from the ingest's output."""
    doc = output.get("document") if isinstance(output.get("document"), dict) else {}
    key = output.get("key") if isinstance(output.get("key"), dict) else {}
    found = {
        "document_id": _first(doc, "document_id") or _first(output, "document_id"),
        "key_id": _first(key, "key_id") or _first(output, "key_id"),
        "suite": _first(key, "suite") or _first(output, "suite"),
        "duplicate": _duplicate(output),
    }
    return found


def _first(tree: Any, name: str) -> Any:
    """The first value under ``name`` in nested dicts (breadth first)."""
    queue = [tree]
    while queue:
        node = queue.pop(0)
        if isinstance(node, dict):
            if node.get(name) not in (None, ""):
                return node[name]
            queue.extend(v for v in node.values() if isinstance(v, dict))
    return None


def _emit(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(summary, sort_keys=True))
        return
    if "document_id" in summary:
        print(f"document {summary['document_id']}  key {summary['key_id']}  "
              f"suite {summary['suite']}")  # fmt: skip
