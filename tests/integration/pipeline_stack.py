"""The ingest pipeline deployed on the emulator for integration tests (and the bench).

What Terraform deploys, reproduced with boto3 so the tests do not depend on a Terraform
run: two versioned buckets (uploads with EventBridge notifications), a KMS key for seeds
and an HMAC key that attests pool keys, the seven Lambda functions (handlers and
environment variables as docs/CONTRACTS.md lists), each connecting to the database as its
own role (tests/fixtures/postgres.py FUNCTION_ROLES), the ingest state machine rendered from
statemachines/ingest.asl.json, and an EventBridge rule that starts it for "Object Created"
under uploads/. PostgreSQL is a fresh migrated database with a small, attested key pool.
With a local STS (tests/fixtures/local_sts.py), the retrieve function verifies callers
against it (PQFILE_STS_ENDPOINT_URL, PQFILE_AUDIENCE) and alice is granted tenant ``a``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fixtures.emulator import placeholder_zip
from tests.fixtures.local_sts import LocalSts
from tests.fixtures.postgres import ADMIN_FUNCTION, AUDITOR, FUNCTION_ROLES, OPERATOR, role_url

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "statemachines" / "ingest.asl.json"
FUNCTIONS = (
    "fetch", "select_key", "encrypt", "store", "audit", "record_failure", "retrieve", "documents",
)  # fmt: skip
#: The functions that verify identity proofs against the local STS.
PROOF_FUNCTIONS = ("retrieve", "documents")
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
#: The retrieve function's PQFILE_AUDIENCE on the test stack.
AUDIENCE = "pqfile-it"


@dataclass
class PipelineStack:
    emulator: Any
    db_url: str
    uploads: str
    encrypted: str
    kms_key_id: str
    functions: dict[str, str]  # name -> function name
    state_machine_arn: str
    environment: dict[str, str]
    #: The HMAC key that attests pool keys (PQFILE_ATTESTATION_KEY_ID).
    attestation_key_id: str = ""
    #: The database URL each function connects with (its own role).
    function_db_urls: dict[str, str] = field(default_factory=dict)
    #: The local STS the retrieve function verifies callers against (None: not deployed).
    sts: LocalSts | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.emulator.client(service)
        return self._clients[service]

    # -- database --------------------------------------------------------------------------

    def db(self) -> Any:
        from pqfile.adapters.postgres import Database

        return Database.from_url(self.db_url)

    def sql(self, query: str, **params: Any) -> list[list[Any]]:
        db = self.db()
        try:
            return db.run(query, **params)
        finally:
            db.close()

    def keystore(self, role: str | None = None, **kwargs: Any) -> Any:
        """The key pool as the owner (who may do everything), or as ``role``."""
        from pqfile.adapters.kms import KmsSeedProtector
        from pqfile.adapters.kms_mac import KmsKeyAttestor
        from pqfile.adapters.postgres import Database, PostgresKeyStore

        db = Database.from_url(role_url(self.db_url, role)) if role else self.db()
        return PostgresKeyStore(
            db,
            KmsSeedProtector(self.client("kms"), self.kms_key_id),
            attestor=KmsKeyAttestor(self.client("kms"), self.attestation_key_id),
            **kwargs,
        )

    def audit_rows(self, document_id: str | None = None) -> list[dict[str, Any]]:
        rows = self.sql(
            "SELECT seq, operation, outcome, actor, document_id, key_id, request_id, details "
            "FROM access_logs WHERE (CAST(:d AS text) IS NULL OR document_id = CAST(:d AS text)) "
            "ORDER BY seq",
            d=document_id,
        )
        cols = ["seq", "operation", "outcome", "actor", "document_id", "key_id", "request_id"]
        out = []
        for r in rows:
            row = dict(zip(cols, r[:7], strict=True))
            row["details"] = json.loads(r[7]) if r[7] else {}
            out.append(row)
        return out

    def document(self, document_id: str) -> dict[str, Any] | None:
        rows = self.sql(
            "SELECT document_id, status, key_id, encrypted_key, encrypted_version_id, "
            "plaintext_size, source_key, plaintext_deleted_at, suite, source_version_id, "
            "source_content_type, tenant FROM documents WHERE document_id = :d",
            d=document_id,
        )
        if not rows:
            return None
        cols = ["document_id", "status", "key_id", "encrypted_key", "encrypted_version_id",
                "plaintext_size", "source_key", "plaintext_deleted_at", "suite",
                "source_version_id", "source_content_type", "tenant"]  # fmt: skip
        return dict(zip(cols, rows[0], strict=True))

    def documents_for(self, key: str) -> list[dict[str, Any]]:
        rows = self.sql("SELECT document_id FROM documents WHERE source_key = :k", k=key)
        return [d for r in rows if (d := self.document(r[0])) is not None]

    # -- S3 ----------------------------------------------------------------------------------

    def upload(self, key: str, data: bytes | Path) -> dict[str, Any]:
        s3 = self.client("s3")
        if isinstance(data, Path):
            with data.open("rb") as f:
                s3.upload_fileobj(f, self.uploads, key)
            head = s3.head_object(Bucket=self.uploads, Key=key)
        else:
            head = s3.put_object(Bucket=self.uploads, Key=key, Body=data)
        return {"key": key, "version_id": head.get("VersionId"), "etag": head["ETag"].strip('"')}

    def versions(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        resp = self.client("s3").list_object_versions(Bucket=bucket, Prefix=prefix)
        return [v for v in resp.get("Versions", []) if v["Key"].startswith(prefix)]

    def event_for(self, key: str, version_id: str | None, etag: str, size: int) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": "2026-11-28T12:00:00Z",
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{self.uploads}"],
            "detail": {
                "version": "0",
                "bucket": {"name": self.uploads},
                "object": {"key": key, "size": size, "etag": etag, "version-id": version_id},
                "reason": "PutObject",
            },
        }

    # -- Step Functions -------------------------------------------------------------------------

    def start(self, event: dict[str, Any], name: str | None = None) -> str:
        resp = self.client("stepfunctions").start_execution(
            stateMachineArn=self.state_machine_arn,
            name=name or f"t-{uuid.uuid4().hex}",
            input=json.dumps(event),
        )
        return str(resp["executionArn"])

    def wait(self, execution_arn: str, timeout: float = 120.0) -> dict[str, Any]:
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            desc = sfn.describe_execution(executionArn=execution_arn)
            if desc["status"] in TERMINAL:
                return dict(desc)
            if time.monotonic() > deadline:
                raise AssertionError(f"execution {execution_arn} still {desc['status']}")
            time.sleep(0.1)

    def executions_for(self, key: str, version_id: str | None = None) -> list[dict[str, Any]]:
        sfn = self.client("stepfunctions")
        found = []
        for e in sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"]:
            desc = sfn.describe_execution(executionArn=e["executionArn"])
            obj = json.loads(desc.get("input") or "{}").get("detail", {}).get("object", {})
            same_version = version_id is None or obj.get("version-id") == version_id
            if obj.get("key") == key and same_version:
                found.append(dict(desc))
        return found

    def wait_for_upload(
        self, key: str, version_id: str | None = None, timeout: float = 120.0
    ) -> dict[str, Any]:
        """The execution EventBridge started for this upload, once it finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.executions_for(key, version_id)
            if found:
                return self.wait(found[0]["executionArn"], max(1.0, deadline - time.monotonic()))
            time.sleep(0.2)
        raise AssertionError(f"no execution started for {key!r}")

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        sfn = self.client("stepfunctions")
        return list(sfn.get_execution_history(executionArn=execution_arn)["events"])

    def explain(self, execution_arn: str) -> str:
        """The states entered and the failure events, for assertion messages."""
        lines = [" -> ".join(self.entered_states(execution_arn))]
        for e in self.history(execution_arn):
            for k, v in e.items():
                if k.endswith("FailedEventDetails") or k == "executionFailedEventDetails":
                    lines.append(f"{e['type']}: {v}")
        return "\n".join(lines)

    def entered_states(self, execution_arn: str) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.history(execution_arn)
            if "stateEnteredEventDetails" in e
        ]

    # -- Lambda ------------------------------------------------------------------------------

    def invoke(self, function: str, payload: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        resp = self.client("lambda").invoke(
            FunctionName=self.functions[function], Payload=json.dumps(payload).encode()
        )
        body = json.loads(resp["Payload"].read() or b"null")
        return body, resp.get("FunctionError")

    def proof_payload(self, request: dict[str, Any], user: str = "alice") -> dict[str, Any]:
        """``request`` with an identity proof signed by ``user`` of the local STS."""
        from pqfile.adapters.sts_proof import proof_payload

        assert self.sts is not None, "deployed without a local STS"
        return proof_payload(
            request,
            audience=AUDIENCE,
            endpoint=self.sts.endpoint(),
            credentials=self.sts.users[user].credentials(),
        )

    def retrieve(
        self, request: dict[str, Any], user: str | None = "alice", **extra: Any
    ) -> tuple[dict[str, Any], str | None]:
        """Invoke retrieve as ``user`` (a fresh proof for ``request``; None: no proof);
        ``extra`` fields (``requested_by``) are added outside the proof."""
        payload = self.proof_payload(request, user) if user else dict(request)
        return self.invoke("retrieve", {**payload, **extra})

    def grant(
        self,
        principal: str,
        *,
        tenant: str | None = None,
        document_id: str | None = None,
        operation: str = "retrieve",
    ) -> int:
        """An access rule, made as pqfile_operator (as ``pqfile access grant`` does)."""
        from pqfile.adapters.postgres import Database, PostgresAccessRules
        from pqfile.ports import AccessOperation

        db = Database.from_url(role_url(self.db_url, OPERATOR))
        try:
            return PostgresAccessRules(db).grant(
                principal, tenant=tenant, document_id=document_id,
                operation=AccessOperation(operation), actor="tests")  # fmt: skip
        finally:
            db.close()

    def set_env(self, function: str, **changes: str) -> None:
        """Change one function's environment (a new warm worker picks it up)."""
        lam = self.client("lambda")
        name = self.functions[function]
        env = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
        env.update(changes)
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": env})


def render_asl(arns: dict[str, str], *, fast_retries: bool = True) -> str:
    """The ASL with the function ARNs; ``fast_retries`` shortens the empty-pool retrier
    (30 s doubling, 5 attempts in production) to one 1-second retry so tests do not wait."""
    text = ASL.read_text(encoding="utf-8")
    text = re.sub(r"\$\{(\w+)_function_arn\}", lambda m: arns[m.group(1)], text)
    if not fast_retries:
        return text
    asl = json.loads(text)
    for state in asl["States"].values():
        for retrier in state.get("Retry", []):
            if "NoActiveKeyError" in retrier["ErrorEquals"]:
                retrier.update(IntervalSeconds=1, BackoffRate=1.0, MaxAttempts=1)
                retrier.pop("MaxDelaySeconds", None)
    return json.dumps(asl)


def function_urls(db_url: str, functions: tuple[str, ...] = FUNCTIONS) -> dict[str, str]:
    """Each function's database URL: the same database, as the function's own role."""
    return {fn: role_url(db_url, FUNCTION_ROLES[fn]) for fn in functions}


def deploy_pipeline(
    emulator: Any,
    role_arn: str,
    db_url: str,
    *,
    keys: int = 3,
    suite: str = "xwing",
    suite_by_prefix: dict[str, str] | None = None,
    function_db_urls: dict[str, str] | None = None,
    sts: LocalSts | None = None,
) -> PipelineStack:
    """Deploy on the emulator. Each function connects as its own role (``function_db_urls``
    overrides single functions' URLs); ``db_url`` is the owner's, used by the tests.
    ``suite_by_prefix`` is PQFILE_SUITE_BY_PREFIX (Terraform's ``suite_by_prefix``): each of
    its suites gets ``keys`` keys too."""
    suffix = uuid.uuid4().hex[:8]
    s3 = emulator.client("s3")
    uploads, encrypted = f"pqfile-uploads-{suffix}", f"pqfile-encrypted-{suffix}"
    for bucket in (uploads, encrypted):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    kms = emulator.client("kms")
    kms_key_id = kms.create_key(Description=f"pqfile seeds {suffix}")["KeyMetadata"]["KeyId"]
    attestation_key_id = kms.create_key(
        Description=f"pqfile key attestation {suffix}",
        KeySpec="HMAC_256",
        KeyUsage="GENERATE_VERIFY_MAC",
    )["KeyMetadata"]["KeyId"]
    urls = {**function_urls(db_url), **(function_db_urls or {})}

    environment = {
        "PQFILE_KMS_KEY_ID": kms_key_id,
        "PQFILE_ATTESTATION_KEY_ID": attestation_key_id,
        "PQFILE_UPLOADS_BUCKET": uploads,
        "PQFILE_ENCRYPTED_BUCKET": encrypted,
        "PQFILE_DEFAULT_SUITE": suite,
        "PQFILE_SUITE_BY_PREFIX": json.dumps(suite_by_prefix or {}),
        "POWERTOOLS_SERVICE_NAME": "pqfile",
        "POWERTOOLS_METRICS_NAMESPACE": "PQFile",
        # As envs/local.tfvars (retrieve_plaintext_delivery): readers without a key get
        # plaintext; tests of sealed delivery switch it off with set_env.
        "PQFILE_PLAINTEXT_DELIVERY": "true",
    }
    lam = emulator.client("lambda")
    functions: dict[str, str] = {}
    arns: dict[str, str] = {}
    for fn in FUNCTIONS:
        name = f"pqfile-{fn.replace('_', '-')}-{suffix}"
        resp = lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role_arn,
            Handler=f"pqfile.handlers.{fn}.handler",
            Code={"ZipFile": placeholder_zip()},
            Timeout=900 if fn in ("encrypt", "retrieve") else 60,
            MemorySize=512,
            Environment={
                "Variables": {
                    **environment,
                    **_identity_env(fn, sts),
                    "PQFILE_DATABASE_URL": urls[fn],
                }
            },
        )
        functions[fn] = name
        arns[fn] = resp["FunctionArn"]

    sfn = emulator.client("stepfunctions")
    sm_arn = sfn.create_state_machine(
        name=f"pqfile-ingest-{suffix}", definition=render_asl(arns), roleArn=role_arn
    )["stateMachineArn"]

    events = emulator.client("events")
    rule = f"pqfile-ingest-{suffix}"
    events.put_rule(
        Name=rule,
        EventPattern=json.dumps(
            {
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": {"name": [uploads]},
                    "object": {"key": [{"prefix": "uploads/"}]},
                },
            }
        ),
    )
    events.put_targets(Rule=rule, Targets=[{"Id": "ingest", "Arn": sm_arn, "RoleArn": role_arn}])
    s3.put_bucket_notification_configuration(
        Bucket=uploads, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )

    stack = PipelineStack(
        emulator=emulator,
        db_url=db_url,
        uploads=uploads,
        encrypted=encrypted,
        kms_key_id=kms_key_id,
        functions=functions,
        state_machine_arn=sm_arn,
        environment=environment,
        attestation_key_id=attestation_key_id,
        function_db_urls=urls,
        sts=sts,
    )
    if keys:
        for pool_suite in dict.fromkeys([suite, *(suite_by_prefix or {}).values()]):
            stack.keystore().create_keys(pool_suite, keys, actor="tests")
    if sts is not None:
        stack.grant(sts.users["alice"].arn, tenant="a")
    return stack


def deploy_admin(
    emulator: Any, role_arn: str, db_url: str, sts: LocalSts,
    extra_env: dict[str, str] | None = None,
) -> str:  # fmt: skip
    """The admin function alone (what Terraform's ``admin`` function is), created the way
    deploy_pipeline creates retrieve: it verifies proofs against the local STS and connects
    as pqfile_admin_function (PQFILE_DATABASE_URL) and pqfile_auditor
    (PQFILE_AUDITOR_DATABASE_URL).
    One function, no buckets or workflow: the operator commands need only the database."""
    name = f"pqfile-admin-{uuid.uuid4().hex[:8]}"
    emulator.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role_arn,
        Handler="pqfile.handlers.admin.handler",
        Code={"ZipFile": placeholder_zip()},
        Timeout=60,
        MemorySize=512,
        Environment={
            "Variables": {
                "POWERTOOLS_SERVICE_NAME": "pqfile",
                "POWERTOOLS_METRICS_NAMESPACE": "PQFile",
                "PQFILE_STS_ENDPOINT_URL": sts.endpoint_url,
                "PQFILE_AUDIENCE": AUDIENCE,
                "PQFILE_DATABASE_URL": role_url(db_url, ADMIN_FUNCTION),
                "PQFILE_AUDITOR_DATABASE_URL": role_url(db_url, AUDITOR),
                **(extra_env or {}),
            }
        },
    )
    return name


def _identity_env(function: str, sts: LocalSts | None) -> dict[str, str]:
    """The retrieve function verifies callers against the local STS (docs/CONTRACTS.md)."""
    if function not in PROOF_FUNCTIONS or sts is None:
        return {}
    return {"PQFILE_STS_ENDPOINT_URL": sts.endpoint_url, "PQFILE_AUDIENCE": AUDIENCE}


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)
