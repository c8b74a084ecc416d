"""Key rotation on the local stack: the rotate-keys state machine (real ASL on the emulator)
moves every document of a queued key onto a new key, body bytes unchanged, and expires it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.emulator import placeholder_zip
from tests.fixtures.postgres import FUNCTION_ROLES, MAINTAIN, REWRAP, role_url
from tests.integration.pipeline_stack import PipelineStack, deploy_pipeline

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "statemachines" / "rotate-keys.asl.json"
ROTATE_FUNCTIONS = ("maintain", "plan", "rewrap", "finish", "failure")
MIB = 1024 * 1024


def _deploy_rotation(stack: PipelineStack, role_arn: str, db_url: str) -> str:
    """The rotate Lambdas (pqfile_maintain for MaintainPool, pqfile_rewrap for the others)
    and the rotate-keys state machine."""
    suffix = uuid.uuid4().hex[:8]
    lam = stack.client("lambda")
    env = {
        **stack.environment,
        "PQFILE_POOL_TARGET": "2",
        "PQFILE_POOL_FLOOR": "2",
        "PQFILE_REWRAP_BATCH": "2",  # two batches: exercises the plan loop
        "PQFILE_REWRAP_CONCURRENCY": "2",
    }
    env.pop("PQFILE_UPLOADS_BUCKET", None)
    arns: dict[str, str] = {}
    for fn in ROTATE_FUNCTIONS:
        name = f"pqfile-rotate-{fn}-{suffix}"
        resp = lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role_arn,
            Handler=f"pqfile.handlers.rotate.{fn}_handler",
            Code={"ZipFile": placeholder_zip()},
            Timeout=300,
            MemorySize=512,
            Environment={
                "Variables": {
                    **env,
                    "PQFILE_DATABASE_URL": role_url(db_url, FUNCTION_ROLES[f"rotate_{fn}"]),
                }
            },
        )
        stack.functions[f"rotate_{fn}"] = name
        arns[fn] = resp["FunctionArn"]
    text = re.sub(
        r"\$\{(\w+)_function_arn\}", lambda m: arns[m.group(1)], ASL.read_text(encoding="utf-8")
    )
    return str(
        stack.client("stepfunctions").create_state_machine(
            name=f"pqfile-rotate-keys-{suffix}", definition=text, roleArn=role_arn
        )["stateMachineArn"]
    )


@pytest.fixture(scope="module")
def stack(
    aws_emulator: Any, emulator_role_arn: str, migrated_db_url: str, local_sts: Any
) -> PipelineStack:
    # One key: every document lands on it (key A).
    return deploy_pipeline(aws_emulator, emulator_role_arn, migrated_db_url, keys=1, sts=local_sts)


def _ingest(stack: PipelineStack, key: str, data: bytes) -> dict[str, Any]:
    up = stack.upload(key, data)
    execution = stack.wait_for_upload(key, up["version_id"])
    assert execution["status"] == "SUCCEEDED", stack.explain(execution["executionArn"])
    (doc,) = stack.documents_for(key)
    return doc


def _package(stack: PipelineStack, key: str, version_id: str) -> bytes:
    resp = stack.client("s3").get_object(Bucket=stack.encrypted, Key=key, VersionId=version_id)
    return bytes(resp["Body"].read())


def _retrieve(stack: PipelineStack, document_id: str) -> bytes:
    body, error = stack.retrieve({"document_id": document_id}, requested_by="t")
    assert error is None, body
    if body["delivery"] == "inline":
        return base64.b64decode(body["content_base64"])
    import urllib.request

    with urllib.request.urlopen(body["url"], timeout=30) as resp:
        return bytes(resp.read())


def test_rotate_keys_state_machine_rewraps_every_document(
    stack: PipelineStack, emulator_role_arn: str, migrated_db_url: str
) -> None:
    from pqfile.crypto import envelope
    from pqfile.format.header import header_size

    sizes = [0, 1_000, 70_000, 9 * MIB + 12_345]  # the last one takes the multipart path
    docs = []
    for i, size in enumerate(sizes):
        data = os.urandom(size)
        doc = _ingest(stack, f"uploads/a/rot-{i}.bin", data)
        docs.append((doc, data))
    key_a = docs[0][0]["key_id"]
    assert all(d["key_id"] == key_a for d, _ in docs)
    before = {
        d["document_id"]: _package(stack, d["encrypted_key"], d["encrypted_version_id"])
        for d, _ in docs
    }
    seq_before = stack.sql("SELECT coalesce(max(seq), 0) FROM access_logs")[0][0]
    # A is past its 30 days (as the owner: nothing else may move rotate_after)
    stack.sql(
        "UPDATE encryption_keys SET rotate_after = now() - interval '1 second' WHERE id = :k",
        k=key_a,
    )

    sm_arn = _deploy_rotation(stack, emulator_role_arn, migrated_db_url)
    sfn = stack.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=sm_arn, name=f"rot-{uuid.uuid4().hex}")[
        "executionArn"
    ]
    done = stack.wait(arn, timeout=120)
    assert done["status"] == "SUCCEEDED", stack.explain(arn)
    output = json.loads(done["output"])
    assert [q["key_id"] for q in output["maintain"]["queued"]] == [key_a]

    # A is expired; the documents spread over the pool's new keys, bodies byte-identical
    status = stack.sql("SELECT status FROM encryption_keys WHERE id = :k", k=key_a)[0][0]
    assert status == "expired"
    (run,) = stack.sql(
        "SELECT status, new_key_id, documents_rewrapped FROM key_rotations WHERE old_key_id = :k",
        k=key_a,
    )
    assert run[0] == "completed" and run[2] == len(docs)
    landed: dict[str, str] = {}
    for doc, data in docs:
        now = stack.document(doc["document_id"])
        assert now is not None and now["key_id"] != key_a
        key_b = landed[doc["document_id"]] = now["key_id"]
        assert now["encrypted_version_id"] != doc["encrypted_version_id"]
        new = _package(stack, now["encrypted_key"], now["encrypted_version_id"])
        old = before[doc["document_id"]]
        assert new[header_size(new[:88]) :] == old[header_size(old[:88]) :]
        assert envelope.read_header(io.BytesIO(new)).key_id == key_b
        got = _retrieve(stack, doc["document_id"])
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        decrypt = [r for r in stack.audit_rows(doc["document_id"])
                   if r["operation"] == "document.decrypt"][-1]  # fmt: skip
        assert (decrypt["outcome"], decrypt["key_id"]) == ("success", key_b)

    # one document.rewrap row per document, from the rewrap role; the chain verifies
    rows = [r for r in stack.audit_rows() if r["seq"] > seq_before]
    rewraps = [r for r in rows if r["operation"] == "document.rewrap"]
    assert sorted(r["document_id"] for r in rewraps) == sorted(d["document_id"] for d, _ in docs)
    assert all(r["outcome"] == "success" and r["key_id"] == landed[r["document_id"]]
               for r in rewraps)  # fmt: skip
    assert len(set(landed.values())) == 2  # two pool keys (PQFILE_POOL_TARGET), not one
    assert {r["actor"] for r in rewraps} == {REWRAP}
    assert {r["actor"] for r in rows if r["operation"] == "key.create"} == {MAINTAIN}
    assert all(r["details"]["from_key_id"] == key_a for r in rewraps)
    ops = [r["operation"] for r in rows]
    for op in ("key.rotation_queued", "key.create", "key.rotation_started", "key.expire"):
        assert op in ops, op
    from pqfile.adapters.postgres import PostgresAuditLog

    db = stack.db()
    try:
        report = PostgresAuditLog(db).verify_chain()
    finally:
        db.close()
    assert report.ok, report

    # a second scheduled run finds nothing to do and changes nothing
    again = sfn.start_execution(stateMachineArn=sm_arn, name=f"rot-{uuid.uuid4().hex}")
    done = stack.wait(again["executionArn"], timeout=60)
    assert done["status"] == "SUCCEEDED", stack.explain(again["executionArn"])
    output = json.loads(done["output"])
    assert output["maintain"]["queued"] == [] and output["rotations"] == []


def test_use_cases_resume_after_a_crash_and_detect_concurrent_writes(
    stack: PipelineStack, migrated_db_url: str
) -> None:
    """The same use cases in process, on real S3 (If-Match, UploadPartCopy) and PostgreSQL."""
    from pqfile.adapters.kms import KmsSeedProtector
    from pqfile.adapters.kms_mac import KmsKeyAttestor
    from pqfile.adapters.postgres import (
        Database,
        PostgresAuditLog,
        PostgresDocumentRepository,
        PostgresKeyStore,
    )
    from pqfile.adapters.s3_manifest import S3ManifestStore
    from pqfile.adapters.s3_rewrap import S3PackageStore
    from pqfile.errors import TransientError
    from pqfile.keys.policy import PoolPolicy
    from pqfile.usecases import rotation as rot

    data = os.urandom(6 * MIB + 777)  # multipart with a 5 MiB first part
    doc = _ingest(stack, "uploads/a/rot-crash.bin", data)
    key_old = doc["key_id"]
    stack.sql(
        "UPDATE encryption_keys SET rotate_after = now() - interval '1 second' WHERE id = :k",
        k=key_old,
    )

    class CrashingKeyStore(PostgresKeyStore):
        crashes = 1

        def record_rewrap(self, *args: Any, **kwargs: Any) -> bool:
            if self.crashes:
                self.crashes -= 1
                raise TransientError("injected: the Lambda died before the row update")
            return super().record_rewrap(*args, **kwargs)

    # MaintainPool as pqfile_maintain, the rest of the run as pqfile_rewrap
    db = Database.from_url(role_url(migrated_db_url, REWRAP))
    maintain_db = Database.from_url(role_url(migrated_db_url, MAINTAIN))
    try:
        kms = KmsSeedProtector(stack.client("kms"), stack.kms_key_id)
        attestor = KmsKeyAttestor(stack.client("kms"), stack.attestation_key_id)
        policy = PoolPolicy(target_active=2, floor_active=2)
        keys = CrashingKeyStore(db, kms, attestor=attestor, policy=policy)
        packages = S3PackageStore(stack.client("s3"), first_part=5 * MIB)
        r = rot.Rotation(
            keys=keys,
            documents=PostgresDocumentRepository(db),
            packages=packages,
            audit=PostgresAuditLog(db),
            encrypted_bucket=stack.encrypted,
            manifests=S3ManifestStore(stack.client("s3")),
        )
        maintainer = rot.Rotation(
            keys=PostgresKeyStore(maintain_db, kms, attestor=attestor, policy=policy),
            documents=PostgresDocumentRepository(maintain_db),
            packages=packages,
            audit=PostgresAuditLog(maintain_db),
            encrypted_bucket=stack.encrypted,
        )
        result = rot.maintain_pool(maintainer)
        (run,) = [x for x in result.rotations if x.old_key_id == key_old]
        rid = run.rotation_id
        plan = rot.plan_rewrap(r, rid)
        assert plan.manifest is not None
        items = json.loads(stack.client("s3").get_object(
            Bucket=plan.manifest.bucket, Key=plan.manifest.key)["Body"].read())  # fmt: skip
        assert doc["document_id"] in [d["document_id"] for d in items]

        # a stale ETag: the conditional write refuses, nothing changes
        committed = packages.stat(
            stack.encrypted, doc["encrypted_key"], doc["encrypted_version_id"]
        )
        with pytest.raises(TransientError):
            packages.replace_head(
                stack.encrypted,
                doc["encrypted_key"],
                source=committed,
                body_offset=100,
                new_head=b"x" * 100,
                if_match="0" * 32,
            )
        assert len(stack.versions(stack.encrypted, doc["encrypted_key"])) == 1

        # crash after the new version is written, before the row moves
        with pytest.raises(TransientError):
            rot.rewrap_document(r, rid, doc["document_id"])
        row = stack.document(doc["document_id"])
        assert row is not None and row["key_id"] == key_old
        assert row["encrypted_version_id"] == doc["encrypted_version_id"]
        assert len(stack.versions(stack.encrypted, doc["encrypted_key"])) == 2
        assert _retrieve(stack, doc["document_id"]) == data  # the old package still serves

        # the retry rewraps the committed version again and commits
        assert rot.rewrap_document(r, rid, doc["document_id"]).outcome == "rewrapped"
        row = stack.document(doc["document_id"])
        assert row is not None and row["key_id"] != key_old
        assert _retrieve(stack, doc["document_id"]) == data
        assert rot.rewrap_document(r, rid, doc["document_id"]).outcome == "already_rewrapped"
        _rewrap_rest(r, rid, stack.client("s3"))
        assert rot.finish_rotation(r, rid).run.status == "completed"
    finally:
        db.close()
        maintain_db.close()
    status = stack.sql("SELECT status FROM encryption_keys WHERE id = :k", k=key_old)[0][0]
    assert status == "expired"


def _rewrap_rest(r: Any, rid: int, s3: Any) -> None:
    """The workflow's loop in process: plan from the cursor, rewrap each manifest item."""
    from pqfile.usecases import rotation as rot

    after = None
    while True:
        plan = rot.plan_rewrap(r, rid, after=after)
        assert plan.manifest is not None
        body = s3.get_object(Bucket=plan.manifest.bucket, Key=plan.manifest.key)["Body"]
        for item in json.loads(body.read()):
            rot.rewrap_document(r, rid, item["document_id"], target_key_id=item["target_key_id"])
        if not plan.more:
            return
        after = plan.after


def test_a_failing_document_fails_the_run_which_the_next_execution_resumes(
    stack: PipelineStack, emulator_role_arn: str, migrated_db_url: str
) -> None:
    """The Catch path of the real ASL: the failure is audited, the old key keeps decrypting,
    and once the cause is fixed the next execution finishes the same run."""
    from pqfile.format.header import header_size

    data = os.urandom(5_000)
    doc = _ingest(stack, "uploads/a/rot-tampered.bin", data)
    key_old = doc["key_id"]
    s3 = stack.client("s3")
    package = bytearray(_package(stack, doc["encrypted_key"], doc["encrypted_version_id"]))
    package[header_size(bytes(package[:88])) - 1] ^= 1  # the header MAC
    bad = s3.put_object(Bucket=stack.encrypted, Key=doc["encrypted_key"], Body=bytes(package))
    stack.sql(
        "UPDATE documents SET encrypted_version_id = :v WHERE document_id = :d",
        v=bad["VersionId"],
        d=doc["document_id"],
    )
    stack.sql(
        "UPDATE encryption_keys SET rotate_after = now() - interval '1 second' WHERE id = :k",
        k=key_old,
    )
    sm_arn = _deploy_rotation(stack, emulator_role_arn, migrated_db_url)
    sfn = stack.client("stepfunctions")
    first = sfn.start_execution(stateMachineArn=sm_arn, name=f"rot-{uuid.uuid4().hex}")
    done = stack.wait(first["executionArn"], timeout=120)
    assert done["status"] == "FAILED", stack.explain(first["executionArn"])
    states = stack.entered_states(first["executionArn"])
    assert "RecordRotationFailure" in states and "RecordFailure" not in states
    failures = [r for r in stack.audit_rows() if r["operation"] == "key.rotation_failed"]
    assert failures and failures[-1]["details"]["rotation_id"] is not None
    refused = [r for r in stack.audit_rows(doc["document_id"])
               if r["operation"] == "document.rewrap"]  # fmt: skip
    assert refused[-1]["outcome"] == "failure"
    assert refused[-1]["details"]["reason"] == "DecryptionError"
    status = stack.sql("SELECT status FROM encryption_keys WHERE id = :k", k=key_old)[0][0]
    assert status == "rotation_queued"

    # an operator restores the good version; the next scheduled run resumes the open run
    stack.sql(
        "UPDATE documents SET encrypted_version_id = :v WHERE document_id = :d",
        v=doc["encrypted_version_id"],
        d=doc["document_id"],
    )
    second = sfn.start_execution(stateMachineArn=sm_arn, name=f"rot-{uuid.uuid4().hex}")
    done = stack.wait(second["executionArn"], timeout=120)
    assert done["status"] == "SUCCEEDED", stack.explain(second["executionArn"])
    assert json.loads(done["output"])["maintain"]["queued"] == []  # resumed, not re-queued
    status = stack.sql("SELECT status FROM encryption_keys WHERE id = :k", k=key_old)[0][0]
    assert status == "expired"
    assert _retrieve(stack, doc["document_id"]) == data
