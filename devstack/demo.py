"""`make demo`: the whole job on the local stack, step by step.

Shows the key pool the deploy filled (terraform/invocations.tf invokes the rotate-keys
MaintainPool function after the migrations; the ingest pipeline never creates keys),
uploads a sample document to the uploads bucket, follows the ingest execution that
EventBridge starts, shows the package with `pqfile inspect`, grants the demo user (alice
of the local STS) the tenant ``demo`` and registers her own key pair (`pqfile keygen`,
`pqfile access recipient add`), retrieves it as alice with `pqfile retrieve --identity`
(an identity proof, then the retrieve Lambda answers sealed to her key; decrypted and
verified on her side, SHA-256 compared with the upload), shows that bob gets the
not-found answer, and prints the audit trail (`pqfile audit tail`, `pqfile audit verify`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
REQUIRED_OUTPUTS = (
    "uploads_bucket_name",
    "encrypted_bucket_name",
    "retrieve_function_name",
    "ingest_state_machine_arn",
    "function_names",
)


def _say(step: str, text: str = "") -> None:
    print(f"\n== {step}" + (f": {text}" if text else ""), flush=True)


def _client(state: Mapping[str, Any], service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=state["endpoint_url"],
        region_name=state.get("region") or "us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 - the emulator accepts any credentials
    )


def _sample_document() -> bytes:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = (
        f"PQFile demo document, uploaded {now}.\n"
        "Quarterly figures, board minutes, anything that must stay confidential against\n"
        "'harvest now, decrypt later'. Encrypted with X-Wing (ML-KEM-768 + X25519) and\n"
        "AES-256-GCM in 1 MiB segments.\n\n"
    )
    return text.encode() + os.urandom(256 * 1024)


def _find_execution(sfn: Any, arn: str, key: str, version_id: str | None) -> str | None:
    for e in sfn.list_executions(stateMachineArn=arn)["executions"]:
        desc = sfn.describe_execution(executionArn=e["executionArn"])
        obj = json.loads(desc.get("input") or "{}").get("detail", {}).get("object", {})
        if obj.get("key") == key and (version_id is None or obj.get("version-id") == version_id):
            return str(e["executionArn"])
    return None


def _follow(sfn: Any, execution_arn: str, timeout: float) -> dict[str, Any]:
    seen: set[str] = set()
    started = time.monotonic()
    while True:
        events = sfn.get_execution_history(executionArn=execution_arn)["events"]
        for ev in events:
            entered = ev.get("stateEnteredEventDetails")
            if entered and entered["name"] not in seen:
                seen.add(entered["name"])
                print(f"   {time.monotonic() - started:6.2f}s  {entered['name']}", flush=True)
        desc = sfn.describe_execution(executionArn=execution_arn)
        if desc["status"] in TERMINAL:
            return dict(desc)
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"execution still {desc['status']} after {timeout:.0f}s")
        time.sleep(0.2)


def _pqfile(
    args: list[str], database_url: str | None = None, env: Mapping[str, str] | None = None
) -> int:
    env = {**os.environ, **(env or {})}
    if database_url:
        env["PQFILE_DATABASE_URL"] = database_url
    print(f"   $ pqfile {' '.join(args)}", flush=True)
    proc = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "pqfile", *args],
        env=env,
        check=False,
        text=True,
        capture_output=True,
    )
    for line in (proc.stdout + proc.stderr).splitlines():
        print(f"   {line}")
    return proc.returncode


def run(state: Mapping[str, Any], *, timeout: float = 180.0) -> int:
    outputs = state.get("terraform_outputs") or {}
    missing = [name for name in REQUIRED_OUTPUTS if not outputs.get(name)]
    if missing:
        print(f"error: the deploy did not output {', '.join(missing)}", file=sys.stderr)
        return 1
    uploads = outputs["uploads_bucket_name"]
    encrypted = outputs["encrypted_bucket_name"]
    s3, sfn = (_client(state, s) for s in ("s3", "stepfunctions"))

    # The deploy filled the pool (terraform/invocations.tf: migrate, then MaintainPool).
    _say("0. key pool", "filled by the deploy itself (terraform: aws_lambda_invocation.pool_fill)")
    _pqfile(["keys", "status"], state.get("database_url"))

    data = _sample_document()
    digest = hashlib.sha256(data).hexdigest()
    key = f"uploads/demo/{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S} board minutes.txt"
    _say("1. upload", f"s3://{uploads}/{key} ({len(data):,} bytes, sha256 {digest[:16]}...)")
    put = s3.put_object(Bucket=uploads, Key=key, Body=data, ContentType="text/plain")
    version_id = put.get("VersionId")

    _say("2. ingest", "S3 -> EventBridge -> Step Functions")
    deadline = time.monotonic() + timeout
    execution_arn = None
    while execution_arn is None:
        execution_arn = _find_execution(sfn, outputs["ingest_state_machine_arn"], key, version_id)
        if execution_arn is None:
            if time.monotonic() > deadline:
                print("error: no execution started for the upload", file=sys.stderr)
                return 1
            time.sleep(0.2)
    print(f"   execution {execution_arn.rsplit(':', 1)[-1]}")
    desc = _follow(sfn, execution_arn, timeout)
    if desc["status"] != "SUCCEEDED":
        print(f"error: the execution {desc['status']}", file=sys.stderr)
        return 1
    output = json.loads(desc.get("output") or "{}")
    document_id = output["document"]["document_id"]
    package_key = output["encrypted"]["encrypted"]["key"]
    left = s3.list_object_versions(Bucket=uploads, Prefix=key).get("Versions", [])
    print(f"   document {document_id} -> s3://{encrypted}/{package_key}")
    print(f"   plaintext versions left under uploads/: {len(left)}")

    _say("3. the package", "pqfile inspect (no key needed)")
    with tempfile.TemporaryDirectory(prefix="pqfile-demo-") as tmp:
        path = Path(tmp) / "document.pqf"
        s3.download_file(encrypted, package_key, str(path))
        _pqfile(["inspect", str(path)])

    db = state.get("database_url")
    users = state.get("sts_users") or {}
    if not users.get("alice") or not state.get("sts_endpoint_url"):
        print("error: the local stack runs no local STS (restart it: devstack down, up)",
              file=sys.stderr)  # fmt: skip
        return 1
    alice, bob = users["alice"], users.get("bob")
    with tempfile.TemporaryDirectory(prefix="pqfile-demo-") as tmp:
        same = _access_and_retrieve(state, outputs, document_id, digest, alice, Path(tmp))
    if same is None:
        return 1
    if bob:
        _say("6. not allowed", "bob asks for the same document: the not-found answer")
        env = _caller_env(state, outputs, bob)
        with tempfile.TemporaryDirectory(prefix="pqfile-demo-") as tmp:
            _pqfile(["retrieve", document_id, "--out", str(Path(tmp) / "x")], env=env)

    _say("7. audit trail", "every attempt under the verified caller's ARN")
    _pqfile(["audit", "tail", "-n", "8"], db)
    _pqfile(["audit", "verify"], db)
    return 0 if same else 1


def _caller_env(
    state: Mapping[str, Any], outputs: Mapping[str, Any], user: Mapping[str, Any]
) -> dict[str, str]:
    """`pqfile retrieve` as ``user`` of the local STS, against the local stack."""
    return {
        "AWS_ACCESS_KEY_ID": user["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": user["secret_access_key"],
        "AWS_ENDPOINT_URL": str(state["endpoint_url"]),
        "AWS_REGION": str(state.get("region") or "us-east-1"),
        "PQFILE_STS_ENDPOINT_URL": str(state["sts_endpoint_url"]),
        "PQFILE_AUDIENCE": str(outputs.get("audience") or "pqfile-local"),
        "PQFILE_RETRIEVE_FUNCTION": outputs["retrieve_function_name"],
    }


def _access_and_retrieve(
    state: Mapping[str, Any],
    outputs: Mapping[str, Any],
    document_id: str,
    digest: str,
    alice: Mapping[str, Any],
    tmp: Path,
) -> bool | None:
    """Steps 4 and 5: alice's rule and key, then the sealed retrieve. True when the
    document came back byte-identical; None when a step failed outright."""
    db = state.get("database_url")
    public, secret = tmp / "alice.pub", tmp / "alice.sec"
    _say("4. access", "deny by default: an operator grants alice the tenant `demo`, and "
         "registers the public key alice made for herself")  # fmt: skip
    _pqfile(["keygen", "--public", str(public), "--secret", str(secret)])
    _pqfile(["access", "grant", "--principal", alice["arn"], "--tenant", "demo"], db)
    if _pqfile(["access", "recipient", "add", "--principal", alice["arn"], str(public)], db):
        print("error: registering alice's key failed", file=sys.stderr)
        return None
    _pqfile(["access", "list"], db)

    _say("5. retrieve", "pqfile retrieve as alice: an identity proof, then lambda invoke; the "
         "document comes back sealed to her key and is decrypted on her side")  # fmt: skip
    env = _caller_env(state, outputs, alice)
    out, kept = tmp / "board minutes.txt", tmp / "board minutes.pqf"
    status = _pqfile(["retrieve", document_id, "--identity", str(secret), "--out", str(out),
                      "--keep-sealed", str(kept), "--json"], env=env)  # fmt: skip
    if status != 0:
        print("error: retrieve refused", file=sys.stderr)
        return None
    _pqfile(["inspect", str(kept)])  # the kept package names alice's key id, not the pool's
    same = hashlib.sha256(out.read_bytes()).hexdigest() == digest
    print(f"   byte-identical to the upload: {'yes' if same else 'NO'}")
    return same
