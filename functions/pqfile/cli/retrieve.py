"""`pqfile retrieve DOCUMENT_ID --out FILE`: read a document through the retrieve function
(docs/OPERATIONS.md, "Retrieval").

It invokes the function with a fresh identity proof made from your AWS credentials (the
standard chain, or ``--profile``; see `pqfile auth proof`).

- With ``--identity ME.sec`` it asks for sealed delivery: the package re-wrapped to your
  registered key, decrypted and verified here (cli/retrieve_sealed.py); ``--keep-sealed
  OUT.pqf`` keeps that package as it is, with or instead of ``--out``. With ``--range``
  only the segments covering the range are fetched (one ranged GET), authenticated and
  decrypted here, and only the range's bytes written (not with ``--keep-sealed``).
- Without it, the deployment's plaintext delivery: inline, or a URL it follows (a progress
  bar on terminals), checking the answer's SHA-256 against the bytes written.

The file appears only once it is complete and checked, through the same atomic writer as
``pqfile decrypt`` (``envelope.write_atomically``): ``--out`` must be absent, or an
existing regular file with ``--force`` (a symlink, directory, device, FIFO or socket is
refused even then, and never followed), and the temporary file is removed on every
failure, SIGTERM and SIGHUP included (exit 128 + the signal number).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from pqfile.cli import _stack
from pqfile.cli._output import human_size, print_receipt, progress_bar
from pqfile.cli.files import _check_new, _file_errors
from pqfile.config import AwsSettings, CliSettings, ConfigurationError
from pqfile.crypto import envelope
from pqfile.errors import DecryptionError, PQFileError


class RetrieveRefusedError(PQFileError):
    """The retrieve function refused (its errorType and message)."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "retrieve",
        help="read a document through the retrieve function (with an identity proof)",
        description="Invoke the retrieve function as yourself and write the document to a "
        "file: with --identity sealed to your registered key and decrypted here (every "
        "segment verified), else the deployment's plaintext delivery (its SHA-256 checked).",
    )
    p.add_argument("document_id", nargs="?", metavar="DOCUMENT_ID")
    p.add_argument(
        "--source",
        metavar="S3_URL",
        help="instead of an id: where it was uploaded, s3://<uploads bucket>/uploads/TENANT/NAME"
        "[?versionId=V] (that version's document; without versionId the newest stored one)",
    )
    p.add_argument(
        "--range",
        metavar="bytes=A-B",
        help="only these bytes (RFC 9110: bytes=A-B, bytes=A- or bytes=-N): only the segments "
        "covering them are read and authenticated (with --identity: fetched and decrypted "
        "here; not with --keep-sealed)",
    )
    p.add_argument("--out", "-o", help="where to write the document")
    p.add_argument(
        "--identity",
        "-i",
        metavar="SEC",
        help="your secret key file (its public key registered with `pqfile access recipient "
        "add`): ask for sealed delivery and decrypt here",
    )
    p.add_argument(
        "--keep-sealed",
        metavar="OUT.pqf",
        help="also (or instead of --out) keep the package sealed to your key, undecrypted",
    )
    p.add_argument(
        "--delivery",
        choices=("sealed", "inline", "url"),
        help="force a delivery (default: sealed with --identity or --keep-sealed, else the "
        "function's choice)",
    )
    p.add_argument(
        "--function-name",
        help="the retrieve function (default: PQFILE_RETRIEVE_FUNCTION)",
    )
    p.add_argument("--audience", help="the deployment's audience (default: PQFILE_AUDIENCE)")
    p.add_argument("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION)")
    p.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="the STS endpoint the deployment verifies proofs with (default: "
        "PQFILE_STS_ENDPOINT_URL, else https://sts.<region>.amazonaws.com)",
    )
    p.add_argument("--profile", help="the AWS profile to sign and invoke with")
    _stack.add_arguments(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite --out (and --keep-sealed) if it is an existing regular file",
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=_retrieve)


#: The version suffix of --source, as the S3 console's object URLs write it.
_VERSION_SUFFIX = re.compile(r"\?versionId=([^?&=/]+)\Z")


def source_of(url: str) -> dict[str, str]:
    """``s3://BUCKET/KEY[?versionId=V]`` as the retrieve payload's ``source`` object."""
    bucket, sep, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not sep or not key:
        raise ConfigurationError("--source must be s3://BUCKET/KEY[?versionId=VERSION]")
    source = {"bucket": bucket, "key": key}
    match = _VERSION_SUFFIX.search(key)
    if match is not None:
        source["key"] = key[: match.start()]
        source["version_id"] = match.group(1)
        if not source["key"]:
            raise ConfigurationError("--source must be s3://BUCKET/KEY[?versionId=VERSION]")
    return source


def delivery_of(args: argparse.Namespace) -> str | None:
    """The ``delivery`` to ask for (None: the function chooses), refusing combinations that
    cannot work before anything is invoked."""
    identity = getattr(args, "identity", None)
    keep = getattr(args, "keep_sealed", None)
    wanted = getattr(args, "delivery", None)
    out = getattr(args, "out", None)
    if out is None and keep is None:
        raise ConfigurationError("name where to write: --out FILE and/or --keep-sealed OUT.pqf")
    if (identity or keep) and wanted in ("inline", "url"):
        raise ConfigurationError(
            f"--delivery {wanted} is plaintext: --identity and --keep-sealed are for sealed"
        )
    if identity or keep or wanted == "sealed":
        if out is not None and not identity:
            raise ConfigurationError(
                "sealed delivery is decrypted with your secret key: --identity ME.sec "
                "(or only --keep-sealed OUT.pqf to keep it encrypted)"
            )
        if keep is not None and getattr(args, "range", None) is not None:
            raise ConfigurationError(
                "--keep-sealed keeps a whole package, and a range of one is not a package: "
                "use --range with --identity ME.sec --out FILE"
            )
        if keep is not None and out is not None and os.path.abspath(keep) == os.path.abspath(out):
            raise ConfigurationError("--out and --keep-sealed must be different files")
        return "sealed"
    return wanted


def _request(args: argparse.Namespace) -> dict[str, Any]:
    ranged: dict[str, Any] = {}
    delivery = delivery_of(args)
    if delivery is not None:
        ranged["delivery"] = delivery
    if getattr(args, "range", None) is not None:
        from pqfile.crypto.ranged import check_range_text

        try:
            ranged["range"] = check_range_text(args.range)
        except PQFileError as exc:
            raise ConfigurationError(f"--range: {exc}") from None
    if args.document_id and not args.source:
        return {"document_id": args.document_id, **ranged}
    if args.source and not args.document_id:
        return {"source": source_of(args.source), **ranged}
    raise ConfigurationError(
        "name the document: DOCUMENT_ID or --source s3://BUCKET/KEY[?versionId=VERSION]"
    )


def _retrieve(args: argparse.Namespace) -> int:
    from pqfile.adapters.lambda_retrieve import invoke_retrieve
    from pqfile.adapters.sts_proof import default_credentials, proof_payload
    from pqfile.auth import StsEndpoint
    from pqfile.config import IdentitySettings

    request = _request(args)
    identity = None
    with _file_errors():  # the rules of `pqfile decrypt --out`, checked before any call
        for path in (args.out, args.keep_sealed):
            if path is not None:
                _check_new(path, args.force)
        if args.identity is not None:
            from pqfile.crypto import keyfiles

            identity = keyfiles.load_secret_key(args.identity)
    # Flags and environment variables first, then the stack's outputs (cli/_stack.py).
    cli = CliSettings.from_env()
    stack = _stack.discover(args, required=False)
    if getattr(args, "stack", None):  # --stack names the stack: its function
        function = args.function_name or stack.output("retrieve_function_name")
    else:
        function = args.function_name or cli.retrieve_function
        if not function and stack.kind == "none":
            raise ConfigurationError(
                "no function: --function-name, PQFILE_RETRIEVE_FUNCTION, or a stack "
                f"({stack.reason})"
            )
        function = function or stack.output("retrieve_function_name")
    settings = IdentitySettings.from_env(region=args.region)
    audience = args.audience or settings.audience or stack.optional("audience")
    if not audience:
        raise ConfigurationError("no audience: --audience or PQFILE_AUDIENCE")
    aws = AwsSettings.from_env()
    region = args.region or stack.region or aws.region
    endpoint_url = aws.endpoint_url or (stack.endpoint_url if stack.kind == "local" else None)
    sts_url = args.endpoint_url or (
        stack.sts_endpoint_url
        if stack.kind == "local" and not settings.sts_endpoint_configured
        else None
    )
    try:
        endpoint = StsEndpoint.parse(
            sts_url or settings.sts_endpoint_url,
            default_region=region if sts_url else settings.sts_region,
            plain_http_host=settings.sts_plain_http_host,
        )
    except ValueError as exc:
        raise ConfigurationError(f"--endpoint-url: {exc}") from None
    credentials = default_credentials(profile=args.profile, region=region)
    payload = proof_payload(request, audience=audience, endpoint=endpoint, credentials=credentials)
    answer = invoke_retrieve(
        function, payload, region=region, profile=args.profile, endpoint_url=endpoint_url,
    )  # fmt: skip
    body = answer.payload
    if answer.function_error:
        kind = str(body.get("errorType", "Error"))[:100]
        message = str(body.get("errorMessage", "")).splitlines()[0][:300] if body else ""
        raise RetrieveRefusedError(f"{kind}: {message}")
    if body.get("delivery") == "sealed" or request.get("delivery") == "sealed":
        from pqfile.cli.retrieve_sealed import write_sealed

        return write_sealed(args, body, identity)
    if args.out is None:
        raise RetrieveRefusedError(f"the function answered delivery {body.get('delivery')!r}, "
                                   "not sealed: nothing kept")  # fmt: skip
    with _file_errors():
        written = _write(args.out, body, overwrite=args.force)
    summary = {
        "document_id": body.get("document_id"),
        "delivery": body.get("delivery"),
        "size": written,
        "sha256": body.get("sha256"),
        "content_type": body.get("content_type"),
        "out": str(args.out),
        "receipt": body.get("receipt"),  # the outcome audit row (pqfile audit prove SEQ)
    }
    if args.json:
        import json

        print(json.dumps(summary, sort_keys=True))
    else:
        print(f"wrote {args.out}: {human_size(written)}, sha256 {body.get('sha256')} (checked)",
              file=sys.stderr)  # fmt: skip
        print_receipt(body)
    return 0


def _write(out: str | Path, body: dict[str, Any], *, overwrite: bool = False) -> int:
    """Write the answer's document to a temporary file beside ``out``, check its size and
    SHA-256, then rename it into place (``envelope.write_atomically``)."""
    from pqfile.adapters.lambda_retrieve import download

    expected = body.get("sha256")
    size = body.get("size")
    if not isinstance(expected, str) or not isinstance(size, int):
        raise RetrieveRefusedError("the answer carries no sha256 and size")
    digest = hashlib.sha256()
    with envelope.write_atomically(out, overwrite=overwrite) as raw:
        sink = _Hashing(raw, digest)
        if body.get("delivery") == "inline":
            try:
                data = base64.b64decode(str(body.get("content_base64", "")), validate=True)
            except (binascii.Error, ValueError):
                raise DecryptionError() from None
            sink.write(data)
        elif body.get("delivery") == "url":
            with progress_bar(size, "downloading") as advance:
                download(str(body.get("url", "")), sink, advance)
        else:
            raise RetrieveRefusedError("the answer names no delivery")
        if sink.count != size or digest.hexdigest() != expected:
            raise RetrieveRefusedError(
                "the document does not match the answer's sha256 and size: nothing written"
            )
    return sink.count


class _Hashing:
    def __init__(self, inner: Any, digest: Any) -> None:
        self._inner = inner
        self._digest = digest
        self.count = 0

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        self.count += len(data)
        return int(self._inner.write(memoryview(data)))
