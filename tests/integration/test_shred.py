"""Revocation and crypto-shredding from the operator's commands (docs/KEYS.md, "Revocation",
"Shredding"), on PostgreSQL and the local stack: `pqfile keys revoke`, `pqfile keys rotate`
(the real rotate-keys ASL, ShredKeys included) and `pqfile documents list`."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from pqfile.cli import main as cli_main
from tests.fixtures.postgres import AUDITOR, MAINTAIN, OPERATOR, SHRED, role_url
from tests.integration.pipeline_stack import PipelineStack, deploy_pipeline
from tests.integration.test_rotation import _deploy_rotation, _ingest, _retrieve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(
    aws_emulator: Any, emulator_role_arn: str, migrated_db_url: str, local_sts: Any
) -> PipelineStack:
    # One key: every document lands on it.
    return deploy_pipeline(aws_emulator, emulator_role_arn, migrated_db_url, keys=1, sts=local_sts)


@pytest.fixture(scope="module")
def rotation_sm(stack: PipelineStack, emulator_role_arn: str, migrated_db_url: str) -> str:
    """The rotate-keys state machine (real ASL, ShredKeys included) and its functions."""
    return _deploy_rotation(stack, emulator_role_arn, migrated_db_url)


@pytest.fixture
def cli_env(stack: PipelineStack, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The CLI as an operator would run it against the local stack."""
    from pqfile.adapters import aws

    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.emulator.endpoint_url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("PQFILE_ACTOR", "ops-test")
    monkeypatch.delenv("PQFILE_ROTATION_STATE_MACHINE", raising=False)
    monkeypatch.delenv("PQFILE_DATABASE_URL", raising=False)
    aws.reset_clients()
    yield
    aws.reset_clients()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _state(stack: PipelineStack, key_id: str) -> tuple[str, bool]:
    (row,) = stack.sql(
        "SELECT status, wrapped_seed IS NULL FROM encryption_keys WHERE id = :k", k=key_id
    )
    return str(row[0]), bool(row[1])


def _all_versions(stack: PipelineStack, key: str) -> list[dict[str, Any]]:
    resp = stack.client("s3").list_object_versions(Bucket=stack.encrypted, Prefix=key)
    return [v for v in (*resp.get("Versions", []), *resp.get("DeleteMarkers", []))
            if v["Key"] == key]  # fmt: skip


def test_shred_end_to_end_on_the_local_stack(
    stack: PipelineStack,
    rotation_sm: str,
    migrated_db_url: str,
    cli_env: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docs = [_ingest(stack, f"uploads/a/shred-{i}.bin", os.urandom(n))
            for i, n in enumerate((0, 5_000, 70_000))]  # fmt: skip
    key_a = docs[0]["key_id"]
    assert {d["key_id"] for d in docs} == {key_a}
    for d in docs:  # readable before
        _retrieve(stack, d["document_id"])
    # an older version of one package on the key too (noncurrent versions must go as well)
    s3 = stack.client("s3")
    first = docs[1]
    body = s3.get_object(
        Bucket=stack.encrypted, Key=first["encrypted_key"], VersionId=first["encrypted_version_id"]
    )["Body"].read()
    s3.put_object(Bucket=stack.encrypted, Key=first["encrypted_key"], Body=body)
    s3.put_object(Bucket=stack.encrypted, Key=first["encrypted_key"], Body=body)
    assert len(_all_versions(stack, first["encrypted_key"])) == 3
    operator = ["--database-url", role_url(migrated_db_url, OPERATOR)]
    seq_before = stack.sql("SELECT coalesce(max(seq), 0) FROM access_logs")[0][0]

    # without the confirmation flag: refused, one line, nothing recorded
    code, out, err = _cli(capsys, "keys", "revoke", key_a, "--shred", "--reason", "gdpr",
                          *operator)  # fmt: skip
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--yes-destroy-documents" in err and "3 document(s)" in err
    assert _state(stack, key_a) == ("active", False)
    assert stack.sql("SELECT count(*) FROM key_requests WHERE key_id = :k", k=key_a)[0][0] == 0

    # confirmed: a pending shred, the key stops encrypting, the documents to lose listed
    code, out, err = _cli(capsys, "keys", "revoke", key_a, "--shred", "--yes-destroy-documents",
                          "--reason", "gdpr erasure", "--json", *operator)  # fmt: skip
    assert code == 0, err
    pending = json.loads(out)
    assert pending["status"] == "pending" and pending["key_id"] == key_a
    assert sorted(d["document_id"] for d in pending["documents_to_lose"]) == sorted(
        d["document_id"] for d in docs
    )
    assert pending["complete_at_earliest"]
    assert _state(stack, key_a) == ("rotation_queued", False)
    # no rotation run: what the operator asked to destroy is not rewrapped first
    assert stack.sql("SELECT count(*) FROM key_rotations WHERE old_key_id = :k", k=key_a) == [[0]]

    # the auditor lists the documents on the key
    code, out, _ = _cli(capsys, "documents", "list", "--key", key_a, "--json",
                        "--database-url", role_url(migrated_db_url, AUDITOR))  # fmt: skip
    assert code == 0
    assert {d["status"] for d in json.loads(out)["documents"]} == {"stored"}

    # keys rotate: without a state machine, a one-line error and nothing queued
    code, out, err = _cli(capsys, "keys", "rotate", *operator)
    assert code == 1 and "PQFILE_ROTATION_STATE_MACHINE" in err and err.count("\n") == 1

    # --dry-run shows the pending shred and changes nothing
    audit_rows = stack.sql("SELECT count(*) FROM access_logs")[0][0]
    code, out, _ = _cli(capsys, "keys", "rotate", "--dry-run", "--json", *operator)
    assert code == 0
    plan = json.loads(out)
    assert [s["key_id"] for s in plan["pending_shreds"]] == [key_a] and plan["dry_run"]
    assert stack.sql("SELECT count(*) FROM access_logs")[0][0] == audit_rows

    # the workflow: MaintainPool refills, the Map has no run for A, ShredKeys shreds it
    code, out, err = _cli(capsys, "keys", "rotate", "--json", "--state-machine-arn", rotation_sm,
                          "--poll-seconds", "0.5", "--timeout", "240", *operator)  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["execution"]["status"] == "SUCCEEDED"
    (shredded,) = report["shredded"]
    assert shredded["key_id"] == key_a
    lost = sorted(d["document_id"] for d in shredded["documents_lost"])
    assert lost == sorted(d["document_id"] for d in docs)
    assert shredded["versions_deleted"] == 5  # 3 packages, one with two older versions
    assert shredded["complete_at"] > shredded["shredded_at"]

    # the seed is gone, the key is shredded; every version of every package is gone
    assert _state(stack, key_a) == ("shredded", True)
    for d in docs:
        assert _all_versions(stack, d["encrypted_key"]) == []
        now = stack.document(d["document_id"])
        assert now is not None and now["status"] == "shredded"
        body_, error = stack.retrieve({"document_id": d["document_id"]}, requested_by="t")
        assert error is not None, body_  # refused
    # a tombstone and a document.shred row per document, key.shred once, by the shred role
    tombstones = stack.sql(
        "SELECT document_id, key_id, reason, shredded_by FROM document_tombstones "
        "WHERE key_id = :k ORDER BY document_id",
        k=key_a,
    )
    assert [t[0] for t in tombstones] == lost
    assert {(t[1], t[2], t[3]) for t in tombstones} == {(key_a, "gdpr erasure", SHRED)}
    rows = [r for r in stack.audit_rows() if r["seq"] > seq_before]
    shreds = [r for r in rows if r["operation"] == "document.shred"]
    assert sorted(r["document_id"] for r in shreds) == lost
    assert {(r["actor"], r["key_id"], r["outcome"]) for r in shreds} == {(SHRED, key_a, "success")}
    (key_row,) = [r for r in rows if r["operation"] == "key.shred"]
    assert key_row["actor"] == SHRED and key_row["details"]["documents_lost"] == 3
    (started,) = [r for r in rows if r["operation"] == "key.rotation_workflow_started"]
    assert (started["actor"], started["outcome"]) == (OPERATOR, "success")
    assert started["request_id"] == report["execution"]["arn"]
    (requested,) = [r for r in rows if r["operation"] == "key.shred_requested"]
    assert requested["actor"] == OPERATOR and requested["details"]["claimed_by"] == "ops-test"
    from pqfile.adapters.postgres import PostgresAuditLog

    db = stack.db()
    try:
        assert PostgresAuditLog(db).verify_chain().ok
    finally:
        db.close()

    # documents list shows them shredded, with the time
    code, out, _ = _cli(capsys, "documents", "list", "--status", "shredded", "--json", *operator)
    listed = json.loads(out)["documents"]
    assert sorted(d["document_id"] for d in listed) == lost
    assert all(d["shredded_at"] for d in listed)

    # a shredded key is final: no revocation, request or second shred
    for argv in (["--now"], [], ["--shred", "--yes-destroy-documents"]):
        code, _, err = _cli(capsys, "keys", "revoke", key_a, *argv, "--reason", "again",
                            *operator)  # fmt: skip
        assert code == 1 and "shredded" in err, argv


def test_revoke_is_pending_by_default_and_now_on_request(
    stack: PipelineStack, migrated_db_url: str, cli_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    store = stack.keystore(MAINTAIN)
    try:
        created = store.create_keys("xwing", 2)
    finally:
        store.storage._db.close()
    pending_key, now_key = created[0].key_id, created[1].key_id
    operator = ["--database-url", role_url(migrated_db_url, OPERATOR)]
    code, out, err = _cli(capsys, "keys", "revoke", pending_key, "--reason", "retire", "--json",
                          *operator)  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert (result["kind"], result["status"]) == ("revoke", "pending")
    # stops encrypting at once, keeps decrypting until rotate-keys completes the revocation
    assert _state(stack, pending_key) == ("rotation_queued", False)
    (run,) = stack.sql(
        "SELECT reason, status FROM key_rotations WHERE old_key_id = :k", k=pending_key
    )
    assert run == ["request:revoke", "queued"]
    code, out, err = _cli(capsys, "keys", "revoke", now_key, "--now", "--reason", "leaked",
                          *operator)  # fmt: skip
    assert code == 0, err
    assert f"revoked {now_key}" in out
    assert _state(stack, now_key) == ("revoked", False)
    # --yes-destroy-documents confirms --shred only
    code, _, err = _cli(capsys, "keys", "revoke", pending_key, "--yes-destroy-documents",
                        "--reason", "x", *operator)  # fmt: skip
    assert code == 1 and "--shred" in err
    # a revoked key can still be shredded
    code, out, err = _cli(capsys, "keys", "revoke", now_key, "--shred",
                          "--yes-destroy-documents", "--reason", "erase", *operator)  # fmt: skip
    assert code == 0, err
    assert "pending" in out


def test_rotate_queues_one_key_onto_a_target_suite(
    stack: PipelineStack, migrated_db_url: str, cli_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`keys rotate --key K --to-suite S` records S on K's run (rotation_queue); a dry run
    records nothing; the run is queued before the workflow starts (an unknown state machine
    fails after queueing: the next rotate or the schedule picks the run up). S is an upgrade
    (mlkem768 -> xwing): the later workflow tests run this queued run too, and a downgrade
    the run does not allow would fail them."""
    store = stack.keystore(MAINTAIN)
    try:
        (key,) = store.create_keys("mlkem768", 1)
    finally:
        store.storage._db.close()
    operator = ["--database-url", role_url(migrated_db_url, OPERATOR)]
    code, out, _ = _cli(capsys, "keys", "rotate", "--key", key.key_id, "--to-suite", "xwing",
                        "--dry-run", *operator)  # fmt: skip
    assert code == 0 and f"would queue {key.key_id} (mlkem768, operator) onto xwing" in out
    assert _state(stack, key.key_id) == ("active", False)
    missing = "arn:aws:states:us-east-1:123456789012:stateMachine:nope"
    code, out, err = _cli(capsys, "keys", "rotate", "--key", key.key_id, "--to-suite",
                          "xwing", "--state-machine-arn", missing, *operator)  # fmt: skip
    assert code == 1 and err.startswith("pqfile: error:") and err.count("\n") == 1
    (run,) = stack.sql(
        "SELECT reason, status, to_suite FROM key_rotations WHERE old_key_id = :k", k=key.key_id
    )
    assert run == ["operator", "queued", "xwing"]
    (audit,) = [r for r in stack.audit_rows() if r["operation"] == "key.rotation_queued"
                and r["key_id"] == key.key_id]  # fmt: skip
    assert audit["actor"] == OPERATOR and audit["details"]["to_suite"] == "xwing"
    # the refused start is audited too
    (start,) = [r for r in stack.audit_rows() if r["operation"] == "key.rotation_workflow_started"
                and r["outcome"] == "failure"]  # fmt: skip
    assert start["details"]["queued"] == [key.key_id] and start["actor"] == OPERATOR


def test_rotate_one_key_through_the_workflow(
    stack: PipelineStack,
    rotation_sm: str,
    migrated_db_url: str,
    cli_env: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`keys rotate --key K`: K is queued (due or not), the workflow moves its documents to
    another key and expires it, and the summary names the run; the documents still read."""
    data = os.urandom(3_000)
    doc = _ingest(stack, "uploads/a/rotate-me.bin", data)
    key = doc["key_id"]
    operator = ["--database-url", role_url(migrated_db_url, OPERATOR)]
    code, out, err = _cli(capsys, "keys", "rotate", "--key", key, "--state-machine-arn",
                          rotation_sm, "--poll-seconds", "0.5", "--timeout", "240",
                          *operator)  # fmt: skip
    assert code == 0, err
    assert f"queued {key} (" in out and "execution SUCCEEDED" in out
    (run,) = stack.sql(
        "SELECT id, status, new_key_id FROM key_rotations WHERE old_key_id = :k", k=key
    )
    assert run[1] == "completed"
    assert f"run {run[0]}: {key} -> {run[2]} completed" in out
    assert _state(stack, key) == ("expired", False)
    now = stack.document(doc["document_id"])
    assert now is not None and now["key_id"] == run[2]
    assert _retrieve(stack, doc["document_id"]) == data
