"""The demo's journey against LocalStack itself, on the host (issue 17; `make test-localstack`).

LocalStack 2026.3 from its own pinned virtualenv (devstack/localstack), the Lambda executor
plugin of devstack/localstack/executor running the real handlers in host processes, a
throwaway PostgreSQL, and the deploy users run (devstack/localstack/deploy.py: tflocal
init + apply of terraform/ with envs/localstack.tfvars). Then: an upload under
uploads/<tenant>/ -> EventBridge -> Step Functions -> the handlers -> PostgreSQL; the
plaintext gone from the upload bucket; an operator grants an IAM user of LocalStack the
tenant and registers the public key of a pair the user made (`pqfile keygen`); `pqfile
retrieve --identity` as that user (an identity proof, then the retrieve function, the
answer sealed to the user's key) gives the upload back byte for byte; `pqfile audit
verify` is OK; `tflocal destroy` leaves none of the stack's buckets. Every process
started here is stopped, however the module ends (LocalStack with a kill timeout,
devstack/localstack.LocalStackServer.stop).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import devstack.localstack as ls
import pytest
from devstack.localstack import deploy as ls_deploy
from localstack_client.session import Session

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REGION = "us-east-1"
TENANT = "acme"
EXECUTION_TIMEOUT_SECONDS = 180.0
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def _say(text: str) -> None:
    print(f"[localstack] {text}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def localstack() -> Iterator[ls.LocalStackServer]:
    started = time.monotonic()
    server = ls.start()
    _say(f"LocalStack {server.endpoint_url} ready in {time.monotonic() - started:.1f} s")
    try:
        yield server
    finally:
        server.stop()


class Deployment:
    def __init__(self, server: ls.LocalStackServer, database_url: str, workdir: Path) -> None:
        self.server = server
        self.database_url = database_url
        self.workdir = workdir
        self.outputs: dict[str, Any] = {}
        self.destroyed = False
        host = server.endpoint_url.removeprefix("http://")
        # localstack-client: boto3 clients addressed at this LocalStack.
        self.session = Session(localstack_host=host, region_name=REGION)

    def client(self, service: str) -> Any:
        return self.session.client(service)

    def destroy(self) -> None:
        if not self.destroyed:
            self.destroyed = True
            ls_deploy.destroy(self.server.endpoint_url, self.database_url, self.workdir)


@pytest.fixture(scope="module")
def deployment(
    localstack: ls.LocalStackServer,
    make_database: Callable[[], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    deployed = Deployment(localstack, make_database(), tmp_path_factory.mktemp("localstack"))
    started = time.monotonic()
    try:
        deployed.outputs = ls_deploy.deploy(
            localstack.endpoint_url,
            deployed.database_url,
            deployed.workdir,
            # The identity proofs of this journey are made for and checked at LocalStack's STS.
            extra_vars=[f"-var=sts_endpoint_url={localstack.endpoint_url}"],
        )
        _say(f"tflocal apply: {time.monotonic() - started:.0f} s")
        yield deployed
    finally:
        try:
            deployed.destroy()
        finally:
            localstack.stop()


def _pqfile(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pqfile", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _execution_for(sfn: Any, machine_arn: str, key: str, deadline: float) -> str:
    while time.monotonic() < deadline:
        for execution in sfn.list_executions(stateMachineArn=machine_arn)["executions"]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            detail = json.loads(described.get("input") or "{}").get("detail", {})
            if detail.get("object", {}).get("key") == key:
                return str(execution["executionArn"])
        time.sleep(0.5)
    raise AssertionError(f"no ingest execution started for s3 key {key!r}: "
                         "the S3 -> EventBridge -> Step Functions rule did not fire")


def _wait(sfn: Any, execution_arn: str, deadline: float) -> dict[str, Any]:
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] in TERMINAL:
            return dict(described)
        if time.monotonic() > deadline:
            raise AssertionError(f"the ingest execution is still {described['status']}")
        time.sleep(0.5)


def _failure(sfn: Any, execution_arn: str) -> str:
    events = sfn.get_execution_history(executionArn=execution_arn, reverseOrder=True)["events"]
    for event in events:
        for key, value in event.items():
            if key.endswith("EventDetails") and ("error" in value or "cause" in value):
                return f"{event['type']}: {value.get('error')}: {str(value.get('cause'))[:1500]}"
    return "(no failure event)"


def test_upload_is_ingested_and_retrieved_byte_identical(deployment: Deployment) -> None:
    outputs = deployment.outputs
    s3, sfn, iam = (deployment.client(s) for s in ("s3", "stepfunctions", "iam"))
    uploads, encrypted = outputs["uploads_bucket_name"], outputs["encrypted_bucket_name"]

    data = b"LocalStack journey " + os.urandom(300 * 1024)
    key = f"uploads/{TENANT}/{uuid.uuid4().hex}/report.bin"
    s3.put_object(Bucket=uploads, Key=key, Body=data)

    deadline = time.monotonic() + EXECUTION_TIMEOUT_SECONDS
    execution_arn = _execution_for(sfn, outputs["ingest_state_machine_arn"], key, deadline)
    described = _wait(sfn, execution_arn, deadline)
    assert described["status"] == "SUCCEEDED", _failure(sfn, execution_arn)
    result = json.loads(described["output"])
    document_id = result["document"]["document_id"]
    package_key = result["encrypted"]["encrypted"]["key"]
    assert s3.head_object(Bucket=encrypted, Key=package_key)["ContentLength"] > len(data)

    left = s3.list_object_versions(Bucket=uploads, Prefix=key)
    assert not left.get("Versions") and not left.get("DeleteMarkers"), (
        "the plaintext is still in the upload bucket"
    )

    # An IAM user of LocalStack: its access key is who STS says the caller is.
    user = iam.create_user(UserName=f"reader-{uuid.uuid4().hex[:8]}")["User"]
    access = iam.create_access_key(UserName=user["UserName"])["AccessKey"]
    db = {"PQFILE_DATABASE_URL": deployment.database_url}
    granted = _pqfile(["access", "grant", "--principal", user["Arn"], "--tenant", TENANT], db)
    assert granted.returncode == 0, granted.stdout + granted.stderr
    # Sealed delivery: the reader's own key pair, its public key registered by an operator.
    public, secret = deployment.workdir / "reader.pub", deployment.workdir / "reader.sec"
    made = _pqfile(["keygen", "--public", str(public), "--secret", str(secret)], {})
    assert made.returncode == 0, made.stdout + made.stderr
    added = _pqfile(["access", "recipient", "add", "--principal", user["Arn"], str(public)], db)
    assert added.returncode == 0, added.stdout + added.stderr

    out = deployment.workdir / "retrieved.bin"
    caller = {
        "AWS_ACCESS_KEY_ID": access["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": access["SecretAccessKey"],
        "AWS_ENDPOINT_URL": deployment.server.endpoint_url,
        "AWS_REGION": REGION,
        "PQFILE_STS_ENDPOINT_URL": deployment.server.endpoint_url,
        "PQFILE_AUDIENCE": str(outputs["audience"]),
        "PQFILE_RETRIEVE_FUNCTION": str(outputs["retrieve_function_name"]),
    }
    retrieved = _pqfile(
        ["retrieve", document_id, "--identity", str(secret), "--out", str(out), "--json"], caller
    )
    assert retrieved.returncode == 0, retrieved.stdout + retrieved.stderr
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest(), (
        "the retrieved document differs from the upload"
    )

    verified = _pqfile(["audit", "verify", "--json"], db)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_functions_use_the_endpoint_localstack_injects(deployment: Deployment) -> None:
    """terraform/lambda.tf gives no AWS_ENDPOINT_URL with local_emulator = "localstack" (a
    hard-coded 127.0.0.1 would point a Lambda container at itself); the functions declare
    the machine's architecture, whose wheels the layer holds."""
    lam = deployment.client("lambda")
    name = deployment.outputs["retrieve_function_name"]
    config = lam.get_function_configuration(FunctionName=name)
    variables = config.get("Environment", {}).get("Variables", {})
    assert "AWS_ENDPOINT_URL" not in variables, variables.get("AWS_ENDPOINT_URL")
    assert variables.get("AWS_XRAY_SDK_ENABLED") == "false"
    assert config["Architectures"] == [ls_deploy.host_architecture()]
    assert len(config.get("Layers", [])) == 1, "the dependencies layer is missing"


def test_tflocal_destroy_removes_the_stack(deployment: Deployment) -> None:
    names = {deployment.outputs["uploads_bucket_name"], deployment.outputs["encrypted_bucket_name"],
             deployment.outputs["audit_digest_bucket_name"]}
    started = time.monotonic()
    deployment.destroy()
    _say(f"tflocal destroy: {time.monotonic() - started:.0f} s")
    left = {b["Name"] for b in deployment.client("s3").list_buckets().get("Buckets", [])}
    assert not names & left, f"buckets left after tflocal destroy: {sorted(names & left)}"
