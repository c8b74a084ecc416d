"""The retrieve Lambda on the local stack (a signature-checking local STS, real ASL, real
PostgreSQL): callers verified, deny by default, refusals audited, successes byte-identical."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.request

import pytest

from pqfile.config import StorageSettings
from tests.fixtures.postgres import OPERATOR
from tests.integration.pipeline_stack import AUDIENCE, PipelineStack, deploy_pipeline

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(aws_emulator, emulator_role_arn, migrated_db_url, local_sts) -> PipelineStack:
    return deploy_pipeline(aws_emulator, emulator_role_arn, migrated_db_url, sts=local_sts)


def _ingest(stack: PipelineStack, key: str, data: bytes) -> dict:
    up = stack.upload(key, data)
    execution = stack.wait_for_upload(key, up["version_id"])
    assert execution["status"] == "SUCCEEDED", stack.explain(execution["executionArn"])
    (doc,) = stack.documents_for(key)
    return doc


def _last_decrypt(stack: PipelineStack) -> dict:
    return [r for r in stack.audit_rows() if r["operation"] == "document.decrypt"][-1]


def _decrypts(stack: PipelineStack, document_id: str | None = None) -> list[dict]:
    return [r for r in stack.audit_rows(document_id) if r["operation"] == "document.decrypt"]


def _arn(stack: PipelineStack, user: str) -> str:
    assert stack.sts is not None
    return stack.sts.users[user].arn


def test_inline_by_id_and_by_object(stack: PipelineStack) -> None:
    data = os.urandom(70_000)
    doc = _ingest(stack, "uploads/a/r-inline.bin", data)
    for request in (
        {"document_id": doc["document_id"]},
        {"bucket": stack.encrypted, "key": doc["encrypted_key"]},
    ):
        body, error = stack.retrieve(request, requested_by="auditor@example.com")
        assert error is None, body
        assert base64.b64decode(body["content_base64"]) == data
        assert body["size"] == len(data) and body["sha256"] == hashlib.sha256(data).hexdigest()
        attempt, row = _decrypts(stack)[-2:]
        # the actor is the principal STS named; the declared name only a detail
        assert (attempt["outcome"], attempt["actor"]) == ("attempt", _arn(stack, "alice"))
        assert (row["outcome"], row["actor"], row["document_id"]) == (
            "success",
            _arn(stack, "alice"),
            doc["document_id"],
        )
        assert row["details"]["claimed_by"] == "auditor@example.com"
        assert row["details"]["sts_arn"] == _arn(stack, "alice")
        assert row["key_id"] == doc["key_id"] and row["request_id"]
        # the receipt names that outcome row (docs/KEYS.md, "Receipts")
        [[seq]] = stack.sql("SELECT max(seq) FROM access_logs WHERE operation = "
                            "'document.decrypt' AND outcome = 'success'")  # fmt: skip
        assert body["receipt"]["audit_seq"] == seq


def test_two_users_one_granted_the_other_gets_the_not_found_answer(stack: PipelineStack) -> None:
    data = os.urandom(10_000)
    doc = _ingest(stack, "uploads/a/r-two-users.bin", data)
    body, error = stack.retrieve({"document_id": doc["document_id"]}, "alice")
    assert error is None and base64.b64decode(body["content_base64"]) == data
    refused, error = stack.retrieve({"document_id": doc["document_id"]}, "bob",
                                    requested_by=_arn(stack, "alice"))  # fmt: skip
    missing, _ = stack.retrieve({"document_id": "0" * 32}, "bob")
    assert error is not None and "content_base64" not in refused
    # no existence oracle: the same answer for a document bob may not read and none at all
    assert (refused["errorType"], refused["errorMessage"]) == (
        missing["errorType"], missing["errorMessage"]) == ("DocumentNotFoundError",
                                                           "no such document")  # fmt: skip
    alice_rows, bob_row = _decrypts(stack, doc["document_id"])[-3:-1], _decrypts(stack)[-2]
    assert [(r["outcome"], r["actor"]) for r in alice_rows] == [
        ("attempt", _arn(stack, "alice")), ("success", _arn(stack, "alice"))]  # fmt: skip
    # bob's attempt is audited under bob's verified ARN, whatever he claimed
    assert (bob_row["outcome"], bob_row["actor"], bob_row["details"]["reason"]) == (
        "refused",
        _arn(stack, "bob"),
        "not_allowed",
    )
    assert bob_row["details"]["claimed_by"] == _arn(stack, "alice")
    last = _decrypts(stack)[-1]
    assert (last["actor"], last["details"]["reason"]) == (_arn(stack, "bob"), "not_found")


def test_by_the_uploads_name_with_and_without_version_and_the_cli_source(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from pqfile.cli import main

    first, second = os.urandom(20_000), os.urandom(21_000)
    key = "uploads/a/r-by-upload.bin"
    old = _ingest(stack, key, first)
    up = stack.upload(key, second)  # a second version of the same name
    execution = stack.wait_for_upload(key, up["version_id"])
    assert execution["status"] == "SUCCEEDED", stack.explain(execution["executionArn"])
    new = next(d for d in stack.documents_for(key) if d["source_version_id"] == up["version_id"])
    source = {"bucket": stack.uploads, "key": key}
    # without a version id: the newest stored document of that name
    body, error = stack.retrieve({"source": source}, "alice")
    assert error is None, body
    assert body["document_id"] == new["document_id"]
    assert base64.b64decode(body["content_base64"]) == second
    attempt, row = _decrypts(stack, new["document_id"])[-2:]
    assert (attempt["outcome"], attempt["actor"]) == ("attempt", _arn(stack, "alice"))
    assert attempt["details"]["requested"] == {"source": {**source, "version_id": None}}
    assert (row["outcome"], row["actor"]) == ("success", _arn(stack, "alice"))
    # with it: that version's document, byte-identical
    versioned = {**source, "version_id": old["source_version_id"]}
    body, error = stack.retrieve({"source": versioned}, "alice")
    assert error is None and body["document_id"] == old["document_id"]
    assert base64.b64decode(body["content_base64"]) == first
    # the top-level bucket/key name the package, never the upload
    wrong, error = stack.retrieve({"bucket": stack.uploads, "key": key}, "alice")
    assert error is not None and wrong["errorType"] == "DocumentNotFoundError"
    # bob: the same answer as for an upload that was never ingested
    refused, error = stack.retrieve({"source": source}, "bob")
    refused_v, _ = stack.retrieve({"source": versioned}, "bob")
    missing, _ = stack.retrieve(
        {"source": {"bucket": stack.uploads, "key": "uploads/a/none.bin"}}, "bob")  # fmt: skip
    assert error is not None and "content_base64" not in refused
    assert {(r["errorType"], r["errorMessage"]) for r in (refused, refused_v, missing)} == {
        ("DocumentNotFoundError", "no such document")}  # fmt: skip
    not_allowed, not_allowed_v, not_found = _decrypts(stack)[-3:]
    assert (not_allowed["actor"], not_allowed["details"]["reason"]) == (
        _arn(stack, "bob"), "not_allowed")  # fmt: skip
    assert not_allowed_v["details"]["reason"] == "not_allowed"
    assert (not_found["actor"], not_found["details"]["reason"]) == (
        _arn(stack, "bob"), "not_found")  # fmt: skip
    # a malformed source: a one-line InvalidEventError, audited as invalid_request
    bad, error = stack.retrieve({"source": {"bucket": stack.uploads}}, "alice")
    assert (bad["errorType"], bad["errorMessage"]) == (
        "InvalidEventError", "source.key must be a non-empty string")  # fmt: skip
    # pqfile retrieve --source names the upload, with or without ?versionId=
    _as_user(monkeypatch, stack, "alice")
    out = tmp_path / "got.bin"
    assert main(["retrieve", "--source", f"s3://{stack.uploads}/{key}", "--out", str(out)]) == 0
    assert out.read_bytes() == second
    url = f"s3://{stack.uploads}/{key}?versionId={old['source_version_id']}"
    assert main(["retrieve", "--source", url, "--out", str(out), "--force"]) == 0
    assert out.read_bytes() == first


def test_no_proof_is_refused_and_audited(stack: PipelineStack) -> None:
    doc = _ingest(stack, "uploads/a/r-no-proof.txt", b"x")
    body, error = stack.retrieve({"document_id": doc["document_id"]}, None,
                                 requested_by="auditor@example.com")  # fmt: skip
    assert error is not None and body["errorType"] == "IdentityProofError"
    assert "proof_missing" in body["errorMessage"]
    row = _decrypts(stack)[-1]
    assert (row["outcome"], row["actor"], row["details"]["reason"]) == (
        "refused",
        "pqfile_retrieve",
        "proof_missing",
    )
    assert row["details"]["claimed_by"] == "auditor@example.com"


def test_a_proof_for_another_document_is_refused(stack: PipelineStack) -> None:
    doc = _ingest(stack, "uploads/a/r-replay.txt", b"x")
    proof = stack.proof_payload({"document_id": "0" * 32})["identity_proof"]
    body, error = stack.invoke("retrieve", {"document_id": doc["document_id"],
                                            "identity_proof": proof})  # fmt: skip
    assert error is not None and "request_hash_mismatch" in body["errorMessage"]


def test_a_5_mb_payload_is_refused_with_a_bounded_audit_row(stack: PipelineStack) -> None:
    huge = "x" * (5 * 1024 * 1024)
    body, error = stack.invoke("retrieve", {"document_id": huge})
    assert error is not None and body["errorType"] == "InvalidEventError", body
    assert body["errorMessage"] == "document_id is longer than 128 characters"
    assert "x" * 1000 not in json.dumps(body)
    row = _decrypts(stack)[-1]
    assert row["outcome"] == "refused" and row["details"]["reason"] == "invalid_request"
    assert len(json.dumps(row["details"])) < 1024


def test_large_document_by_presigned_url(stack: PipelineStack) -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    doc = _ingest(stack, "uploads/a/r-large.bin", data)
    body, error = stack.retrieve({"document_id": doc["document_id"]})
    assert error is None, body
    assert body["delivery"] == "url" and "content_base64" not in body
    assert 0 < body["expires_in"] <= 900
    assert body["key"].startswith(f"retrievals/{doc['document_id']}/")
    head = stack.client("s3").head_object(Bucket=stack.encrypted, Key=body["key"])
    assert head.get("ServerSideEncryption") == "aws:kms"
    with urllib.request.urlopen(body["url"], timeout=60) as resp:
        assert resp.read() == data
    assert len(json.dumps(body)) < 4096  # the response stays small
    row = _last_decrypt(stack)
    assert row["actor"] == _arn(stack, "alice") and "claimed_by" not in row["details"]


def _refused(stack: PipelineStack, payload: dict, error_type: str, reason: str = "") -> dict:
    body, error = stack.retrieve(payload)
    assert error is not None, body
    assert body["errorType"] == error_type, body
    assert "content_base64" not in body
    row = _last_decrypt(stack)
    assert row["outcome"] == "refused" and row["details"]["reason"] == (reason or error_type)
    return row


def test_unknown_document_is_refused(stack: PipelineStack) -> None:
    body, _ = stack.retrieve({"document_id": "0" * 32}, requested_by="mallory")
    assert body["errorType"] == "DocumentNotFoundError"
    row = _last_decrypt(stack)
    assert (row["actor"], row["details"]["claimed_by"], row["details"]["reason"]) == (
        _arn(stack, "alice"),
        "mallory",
        "not_found",
    )
    _refused(stack, {"bucket": stack.encrypted, "key": "encrypted/nope.pqf"},
             "DocumentNotFoundError", "not_found")  # fmt: skip
    body, _ = stack.invoke("retrieve", {"hello": "world"})
    assert body["errorType"] in {"InvalidEventError", "IdentityProofError"}


def test_revoked_key_is_refused(stack: PipelineStack) -> None:
    doc = _ingest(stack, "uploads/a/r-revoked.txt", b"revoke me")
    _, error = stack.retrieve({"document_id": doc["document_id"]})
    assert error is None  # decryptable (and the secret now sits in the warm cache) ...
    stack.keystore(OPERATOR).revoke(doc["key_id"], "compromised in a test", actor="tests")
    row = _refused(stack, {"document_id": doc["document_id"]}, "KeyNotUsableError")
    assert row["key_id"] == doc["key_id"]  # ... and refused once revoked


def test_tampered_package_is_refused(stack: PipelineStack) -> None:
    data = b"tamper with me" * 1000
    doc = _ingest(stack, "uploads/a/r-tampered.txt", data)
    s3 = stack.client("s3")
    package = bytearray(
        s3.get_object(Bucket=stack.encrypted, Key=doc["encrypted_key"])["Body"].read()
    )
    package[-50] ^= 0x01
    # Overwriting creates a new version; the index pins the original, so nothing changes ...
    forged = s3.put_object(Bucket=stack.encrypted, Key=doc["encrypted_key"], Body=bytes(package))
    body, error = stack.retrieve({"document_id": doc["document_id"]})
    assert error is None and base64.b64decode(body["content_base64"]) == data
    # ... unless the index is pointed at the forged version too: then decryption refuses.
    stack.sql(
        "UPDATE documents SET encrypted_version_id = :v WHERE document_id = :d",
        v=forged["VersionId"],
        d=doc["document_id"],
    )
    _refused(stack, {"document_id": doc["document_id"]}, "DecryptionError")
    assert stack.versions(stack.encrypted, "retrievals/") == [] or all(
        not v["Key"].startswith(f"retrievals/{doc['document_id']}")
        for v in stack.versions(stack.encrypted, "retrievals/")
    )


def test_inline_limit_boundary_fits_the_response_cap(stack: PipelineStack) -> None:
    from pqfile.config import DEFAULT_INLINE_LIMIT, LAMBDA_RESPONSE_CAP

    data = os.urandom(DEFAULT_INLINE_LIMIT)
    doc = _ingest(stack, "uploads/a/r-boundary.bin", data)
    resp = stack.client("lambda").invoke(
        FunctionName=stack.functions["retrieve"],
        Payload=json.dumps(stack.proof_payload({"document_id": doc["document_id"]})).encode(),
    )
    raw = resp["Payload"].read()
    assert "FunctionError" not in resp
    assert len(raw) < LAMBDA_RESPONSE_CAP  # what Lambda would accept
    body = json.loads(raw)
    assert body["delivery"] == "inline" and base64.b64decode(body["content_base64"]) == data


def _as_user(monkeypatch: pytest.MonkeyPatch, stack: PipelineStack, user: str) -> None:
    """The CLI's standard credential chain: the user's keys in the environment; Lambda on
    the emulator."""
    assert stack.sts is not None
    creds = stack.sts.users[user]
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds.secret_access_key)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.emulator.endpoint_url)
    monkeypatch.setenv("PQFILE_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("PQFILE_STS_ENDPOINT_URL", stack.sts.endpoint_url)
    monkeypatch.setenv("PQFILE_RETRIEVE_FUNCTION", stack.functions["retrieve"])


@pytest.mark.parametrize("size", [3000, 5 * 1024 * 1024 + 1])
def test_the_cli_retrieves_inline_and_by_url_checking_the_sha256(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys, size: int
) -> None:
    from pqfile.cli import main

    data = os.urandom(size)
    doc = _ingest(stack, f"uploads/a/r-cli-{size}.bin", data)
    _as_user(monkeypatch, stack, "alice")
    out = tmp_path / "got.bin"
    assert main(["retrieve", doc["document_id"], "--out", str(out), "--json"]) == 0
    assert out.read_bytes() == data
    summary = json.loads(capsys.readouterr().out)
    assert summary["sha256"] == hashlib.sha256(data).hexdigest() and summary["size"] == size
    assert summary["receipt"]["audit_seq"] >= 1  # its outcome row (pqfile audit prove SEQ)
    source = f"s3://{stack.uploads}/{doc['source_key']}?versionId={doc['source_version_id']}"
    assert main(["retrieve", "--source", source, "--out", str(out), "--force"]) == 0
    assert out.read_bytes() == data


def test_the_cli_gives_one_line_errors_and_writes_nothing(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
) -> None:
    from pqfile.cli import main

    doc = _ingest(stack, "uploads/a/r-cli-refused.txt", b"not for bob")
    _as_user(monkeypatch, stack, "bob")
    out = tmp_path / "got.txt"
    assert main(["retrieve", doc["document_id"], "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "pqfile: error: DocumentNotFoundError: no such document"
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_access_commands_grant_list_revoke(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
) -> None:
    from pqfile.cli import main
    from tests.fixtures.postgres import role_url

    doc = _ingest(stack, "uploads/b/r-cli-access.txt", b"tenant b")
    db = ["--database-url", role_url(stack.db_url, OPERATOR)]
    bob = _arn(stack, "bob")
    assert main(["access", "grant", "--principal", bob, "--tenant", "b", *db]) == 0
    assert main(["access", "list", "--json", *db]) == 0
    capsys.readouterr()
    assert main(["access", "list", "--json", *db]) == 0
    rules = json.loads(capsys.readouterr().out)
    assert {"principal": bob, "tenant": "b", "operation": "retrieve"}.items() <= next(
        r for r in rules if r["principal"] == bob).items()  # fmt: skip
    _as_user(monkeypatch, stack, "bob")
    out = tmp_path / "b.txt"
    assert main(["retrieve", doc["document_id"], "--out", str(out)]) == 0
    assert out.read_bytes() == b"tenant b"
    assert main(["access", "revoke", "--principal", bob, "--tenant", "b", *db]) == 0
    assert main(["retrieve", doc["document_id"], "--out", str(out), "--force"]) == 1
    assert main(["access", "revoke", "--principal", bob, "--tenant", "b", *db]) == 1
    assert "no such rule" in capsys.readouterr().err
    rows = [r for r in stack.audit_rows() if r["operation"].startswith("access.")]
    assert [r["actor"] for r in rows[-2:]] == [OPERATOR, OPERATOR]


# -- pqfile upload, then retrieve, from a user's seat (cli/_stack.py finds the stack) -------


def _local_stack_state(stack: PipelineStack, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local stack state file naming this test stack, as `devstack deploy` writes it; the
    CLI finds everything there (no PQFILE_RETRIEVE_FUNCTION, AWS_ENDPOINT_URL, ...)."""
    assert stack.sts is not None
    base = tmp_path / "devstack"
    base.mkdir()
    state = {
        "status": "ready",
        "endpoint_url": stack.emulator.endpoint_url,
        "region": "us-east-1",
        "sts_endpoint_url": stack.sts.endpoint_url,
        "terraform_outputs": {
            "uploads_bucket_name": stack.uploads,
            "encrypted_bucket_name": stack.encrypted,
            "ingest_state_machine_arn": stack.state_machine_arn,
            "retrieve_function_name": stack.functions["retrieve"],
            "documents_function_name": stack.functions["documents"],
            "audience": AUDIENCE,
        },
    }
    (base / "state.json").write_text(json.dumps(state))
    for name in ("AWS_ENDPOINT_URL", "PQFILE_STS_ENDPOINT_URL", "PQFILE_AUDIENCE",
                 "PQFILE_RETRIEVE_FUNCTION", "PQFILE_STACK", "PQFILE_TENANT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PQFILE_DEVSTACK_DIR", str(base))


def test_upload_wait_prints_the_document_and_retrieve_finds_it_by_id_and_source(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
) -> None:
    from pqfile.cli import main

    data = os.urandom(9 * 1024 * 1024 + 5)  # two parts: the multipart path
    path = tmp_path / "report one.bin"
    path.write_bytes(data)
    _as_user(monkeypatch, stack, "alice")
    _local_stack_state(stack, tmp_path, monkeypatch)
    monkeypatch.setenv("PQFILE_TENANT", "a")
    assert main(["upload", str(path), "--wait", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    source = summary["source"]
    assert (source["bucket"], source["key"]) == (stack.uploads, "uploads/a/report one.bin")
    assert source["version_id"] and summary["size"] == len(data)
    assert summary["status"] == "stored" and summary["execution_arn"]
    doc = stack.document(summary["document_id"])
    assert doc is not None and doc["status"] == "stored"
    assert (doc["source_key"], doc["source_version_id"]) == (source["key"], source["version_id"])
    assert (summary["key_id"], summary["suite"]) == (doc["key_id"], doc["suite"]), summary

    out = tmp_path / "got.bin"
    assert main(["retrieve", summary["document_id"], "--out", str(out)]) == 0
    assert out.read_bytes() == data
    url = f"s3://{source['bucket']}/{source['key']}?versionId={source['version_id']}"
    assert main(["retrieve", "--source", url, "--out", str(out), "--force", "--json"]) == 0
    assert out.read_bytes() == data


def test_upload_without_wait_prints_the_source_and_the_ingest_still_runs(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
) -> None:
    from pqfile.cli import main

    path = tmp_path / "small.txt"
    path.write_bytes(b"small and plain\n")
    _as_user(monkeypatch, stack, "alice")
    _local_stack_state(stack, tmp_path, monkeypatch)
    assert main(["upload", str(path), "--tenant", "a", "--name", "in/folder.txt"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"uploaded s3://{stack.uploads}/uploads/a/in/folder.txt?versionId=")
    execution = stack.wait_for_upload("uploads/a/in/folder.txt")
    assert execution["status"] == "SUCCEEDED", stack.explain(execution["executionArn"])


def test_upload_wait_reports_a_failed_ingest_with_its_reason(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
) -> None:
    from pqfile.cli import main

    path = tmp_path / "too large.bin"
    path.write_bytes(b"z" * 2048)
    _as_user(monkeypatch, stack, "alice")
    _local_stack_state(stack, tmp_path, monkeypatch)
    stack.set_env("fetch", PQFILE_MAX_DOCUMENT_SIZE="1024")
    try:
        assert main(["upload", str(path), "--tenant", "a", "--wait", "--json"]) == 1
        summary = json.loads(capsys.readouterr().out)
        assert summary["status"] == "failed"
        assert summary["error"]["type"] == "DocumentTooLargeError"
        assert summary["error"]["step"] == "FetchDocument" and summary["error"]["message"]
        assert "document_id" not in summary

        path.write_bytes(b"y" * 2048)  # a new version, refused the same way, in words
        assert main(["upload", str(path), "--tenant", "a", "--wait"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(
            "pqfile: error: the ingest failed in FetchDocument: DocumentTooLargeError: "
        ), err
    finally:
        stack.set_env("fetch", PQFILE_MAX_DOCUMENT_SIZE=str(StorageSettings.max_document_size))


def test_upload_refusals_are_one_line(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
) -> None:
    from pqfile.cli import main

    path = tmp_path / "x.txt"
    path.write_bytes(b"x")
    _as_user(monkeypatch, stack, "alice")
    _local_stack_state(stack, tmp_path, monkeypatch)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({
        "uploads_bucket_name": {"value": "pqfile-no-such-bucket", "type": "string"},
        "ingest_state_machine_arn": {"value": stack.state_machine_arn, "type": "string"},
    }))  # fmt: skip
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.emulator.endpoint_url)
    cases = {
        ("--tenant", "a", "--stack", str(outputs)):
            "pqfile: error: upload refused: bucket pqfile-no-such-bucket does not exist",
        ("--tenant", "a", "--stack", str(tmp_path / "nowhere")):
            f"pqfile: error: --stack {tmp_path / 'nowhere'}: no such folder or file",
        ("--stack", str(outputs)): "pqfile: error: no tenant: --tenant T or PQFILE_TENANT",
    }  # fmt: skip
    for flags, expected in cases.items():
        assert main(["upload", str(path), *flags]) == 1
        assert capsys.readouterr().err.strip() == expected
    monkeypatch.setenv("PQFILE_DEVSTACK_DIR", str(tmp_path / "no-stack-here"))
    assert main(["upload", str(path), "--tenant", "a"]) == 1
    assert capsys.readouterr().err.strip().startswith("pqfile: error: not deployed: no local stack")


# -- the documents query function (sql/migrations/0017), through the CLI -------------------

STATUS_FIELDS = {"document_id", "status", "tenant", "key_id", "suite", "source", "size",
                 "error", "created_at", "stored_at"}  # fmt: skip


#: What the handlers' entry point adds to every answer (handlers/_runtime.py).
TIMINGS = {"compute_ms", "duration_ms"}


def _without_timings(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k not in TIMINGS}


def _status_rows(stack: PipelineStack, operation: str = "document.status") -> list[dict]:
    return [r for r in stack.audit_rows() if r["operation"] == operation]


def test_documents_status_by_id_and_by_source_shows_only_the_status_fields(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
) -> None:
    from pqfile.cli import main

    data = b"status me\n" * 100
    doc = _ingest(stack, "uploads/a/status-me.txt", data)
    _as_user(monkeypatch, stack, "alice")
    _local_stack_state(stack, tmp_path, monkeypatch)
    assert main(["documents", "status", doc["document_id"], "--json"]) == 0
    by_id = _without_timings(json.loads(capsys.readouterr().out))
    assert set(by_id) == STATUS_FIELDS
    assert (by_id["document_id"], by_id["status"], by_id["tenant"]) == (
        doc["document_id"], "stored", "a",
    )  # fmt: skip
    assert (by_id["key_id"], by_id["suite"], by_id["size"]) == (
        doc["key_id"], doc["suite"], len(data),
    )  # fmt: skip
    assert by_id["source"]["key"] == "uploads/a/status-me.txt" and by_id["stored_at"]
    url = f"s3://{stack.uploads}/uploads/a/status-me.txt?versionId={doc['source_version_id']}"
    assert main(["documents", "status", "--source", url, "--json"]) == 0
    assert _without_timings(json.loads(capsys.readouterr().out)) == by_id
    assert main(["documents", "status", "--source", url.split("?")[0]]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"document {doc['document_id']}: stored\n"), text

    row = _status_rows(stack)[-1]
    assert (row["outcome"], row["actor"], row["document_id"]) == (
        "success", _arn(stack, "alice"), doc["document_id"],
    )  # fmt: skip
    assert row["details"]["sts_arn"] == _arn(stack, "alice")


def test_documents_status_gives_a_caller_without_a_rule_the_same_not_found(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
) -> None:
    from pqfile.cli import main

    doc = _ingest(stack, "uploads/a/status-not-bob.txt", b"alice only")
    _as_user(monkeypatch, stack, "bob")
    _local_stack_state(stack, tmp_path, monkeypatch)
    answers = []
    for name in (doc["document_id"], "0" * 32):
        assert main(["documents", "status", name]) == 1
        answers.append(capsys.readouterr().err.strip())
    assert answers == ["pqfile: error: DocumentNotFoundError: no such document"] * 2
    refused = _status_rows(stack)[-2:]
    assert [r["outcome"] for r in refused] == ["refused", "refused"]
    assert [r["details"]["reason"] for r in refused] == ["not_allowed", "not_found"]
    assert {r["actor"] for r in refused} == {_arn(stack, "bob")}

    # and the list shows bob nothing, alice her tenant's documents
    assert main(["documents", "list", "--as-caller", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == []
    _as_user(monkeypatch, stack, "alice")
    assert main(["documents", "list", "--as-caller", "--tenant", "a", "--json",
                 "--status", "stored"]) == 0  # fmt: skip
    listed = json.loads(capsys.readouterr().out)
    ids = [d["document_id"] for d in listed["documents"]]
    assert doc["document_id"] in ids and all(set(d) == STATUS_FIELDS for d in listed["documents"])
    assert {d["tenant"] for d in listed["documents"]} == {"a"}
    row = _status_rows(stack, "document.list")[-1]
    assert (row["outcome"], row["actor"]) == ("success", _arn(stack, "alice"))
    assert row["details"]["returned"] == len(ids)


def test_a_failed_upload_has_a_status_with_its_reason(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
) -> None:
    from pqfile.cli import main

    key = "uploads/a/fails-at-encrypt.txt"
    stack.set_env("encrypt", PQFILE_ENCRYPTED_BUCKET="pqfile-no-such-bucket-for-encrypt")
    try:
        up = stack.upload(key, b"this one fails")
        execution = stack.wait_for_upload(key, up["version_id"])
    finally:
        stack.set_env("encrypt", PQFILE_ENCRYPTED_BUCKET=stack.encrypted)
    assert execution["status"] == "FAILED"
    _as_user(monkeypatch, stack, "alice")
    _local_stack_state(stack, tmp_path, monkeypatch)
    url = f"s3://{stack.uploads}/{key}?versionId={up['version_id']}"
    assert main(["documents", "status", "--source", url, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["status"] == "failed" and "StorageError" in answer["error"], answer
    assert answer["stored_at"] is None


def test_documents_status_while_the_ingest_runs_says_pending_then_stored(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
) -> None:
    """Status during an ingest: the test holds every active key's row lock, so SelectKey
    waits (its last attempt waits for a lock, up to the role's 10 s lock_timeout) with the
    document's row already open; `documents status` then reports it pending while the
    execution is RUNNING, and stored once the lock is released and the workflow ends."""
    import time

    from pqfile.adapters.postgres.connection import connect_url
    from pqfile.cli import main

    key = "uploads/a/status-while-running.txt"
    _as_user(monkeypatch, stack, "alice")
    _local_stack_state(stack, tmp_path, monkeypatch)
    holder = connect_url(stack.db_url)
    try:
        holder.run("BEGIN")
        held = holder.run("SELECT id FROM encryption_keys WHERE status = 'active' FOR UPDATE")
        assert held, "no active key to hold"
        up = stack.upload(key, b"still encrypting\n")
        url = f"s3://{stack.uploads}/{key}?versionId={up['version_id']}"
        deadline = time.monotonic() + 8  # inside SelectKey's 10 s lock_timeout
        while time.monotonic() < deadline and not stack.documents_for(key):
            time.sleep(0.1)
        assert stack.documents_for(key), "FetchDocument never opened the row"
        assert main(["documents", "status", "--source", url, "--json"]) == 0
        during = json.loads(capsys.readouterr().out)
        (execution,) = stack.executions_for(key, up["version_id"])
        still_running = execution["status"]
    finally:
        holder.run("COMMIT")
        holder.close()
    assert still_running == "RUNNING", "the status was not taken while the ingest ran"
    assert (during["status"], during["stored_at"], during["key_id"]) == ("pending", None, None)
    assert during["source"]["key"] == key and during["tenant"] == "a"

    finished = stack.wait_for_upload(key, up["version_id"])
    assert finished["status"] == "SUCCEEDED", stack.explain(finished["executionArn"])
    assert main(["documents", "status", during["document_id"]]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"document {during['document_id']}: stored\n"), text


def test_documents_status_one_line_errors(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
) -> None:
    from pqfile.cli import main

    _as_user(monkeypatch, stack, "alice")
    _local_stack_state(stack, tmp_path, monkeypatch)
    assert main(["documents", "status"]) == 1
    assert capsys.readouterr().err.strip().startswith("pqfile: error: name the document")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["documents", "status", "0" * 32]) == 1
    assert capsys.readouterr().err.strip().startswith("pqfile: error: no AWS credentials found")
    monkeypatch.setenv("PQFILE_DEVSTACK_DIR", str(tmp_path / "no-stack"))
    assert main(["documents", "status", "0" * 32]) == 1
    assert capsys.readouterr().err.strip().startswith("pqfile: error: not deployed")


# --- parallel ingest and ranged retrieval on the stack (issue 15 items 4-5) -----------------

MIB = 1024 * 1024
WIRE = MIB + 16  # a 1 MiB segment on the wire


def _with_workers(stack: PipelineStack, workers: str, key: str, data: bytes) -> dict:
    """Ingest with the encrypt function's PQFILE_INGEST_WORKERS set, then put it back."""
    lam = stack.client("lambda")
    name = stack.functions["encrypt"]
    before = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    stack.set_env("encrypt", PQFILE_INGEST_WORKERS=workers)
    try:
        return _ingest(stack, key, data)
    finally:
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": before})


@pytest.fixture(scope="module")
def parallel_doc(stack: PipelineStack) -> tuple[dict, bytes]:
    """24 MiB through the parallel path: three parts of eight 1 MiB segments."""
    data = os.urandom(24 * MIB)
    return _with_workers(stack, "2", "uploads/a/r-parallel.bin", data), data


def test_parallel_ingest_matches_the_sequential_structure_and_decrypts(
    stack: PipelineStack, parallel_doc: tuple[dict, bytes]
) -> None:
    doc, data = parallel_doc
    sequential = _with_workers(stack, "1", "uploads/a/r-sequential.bin", data)
    s3 = stack.client("s3")
    heads = [
        s3.head_object(Bucket=stack.encrypted, Key=d["encrypted_key"],
                       VersionId=d["encrypted_version_id"])
        for d in (doc, sequential)
    ]  # fmt: skip
    # the same package length; the parallel one in 3 parts of whole segments (the header
    # rides in part 1), the sequential one cut every 8 MiB into 4
    assert heads[0]["ContentLength"] == heads[1]["ContentLength"]
    assert (heads[0]["ETag"].strip('"')[-2:], heads[1]["ETag"].strip('"')[-2:]) == ("-3", "-4")
    for d in (doc, sequential):
        package = s3.get_object(Bucket=stack.encrypted, Key=d["encrypted_key"],
                                VersionId=d["encrypted_version_id"])["Body"].read()  # fmt: skip
        secret = stack.keystore().load_decryption_key(d["key_id"])
        assert envelope_decrypt(package, secret, d["document_id"]) == data


def envelope_decrypt(package: bytes, secret: object, document_id: str) -> bytes:
    from pqfile.crypto import envelope

    return envelope.decrypt_bytes(package, secret, expected_document_id=document_id)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "spec",
    ["bytes=0-0", f"bytes={MIB - 1}-{MIB}", f"bytes={MIB}-{2 * MIB - 1}", "bytes=-1",
     f"bytes={23 * MIB - 3}-", f"bytes={5 * MIB}-{5 * MIB + 3 * MIB // 2}"],
)  # fmt: skip
def test_ranged_reads_are_the_exact_slices(
    stack: PipelineStack, parallel_doc: tuple[dict, bytes], spec: str
) -> None:
    from pqfile.crypto.ranged import parse_byte_range

    doc, data = parallel_doc
    wanted = parse_byte_range(spec, len(data))
    body, error = stack.retrieve({"document_id": doc["document_id"], "range": spec})
    assert error is None, body
    got = (
        base64.b64decode(body["content_base64"])
        if body["delivery"] == "inline"
        else urllib.request.urlopen(body["url"], timeout=60).read()
    )
    assert got == data[wanted.first : wanted.last + 1]
    assert body["range"] == wanted.content_range and body["size"] == wanted.length
    row = _last_decrypt(stack)
    assert row["outcome"] == "success" and row["details"]["range"] == wanted.content_range


def test_the_whole_document_as_a_range_by_url(
    stack: PipelineStack, parallel_doc: tuple[dict, bytes]
) -> None:
    doc, data = parallel_doc
    body, error = stack.retrieve({"document_id": doc["document_id"], "range": "bytes=0-"})
    assert error is None and body["delivery"] == "url", body
    with urllib.request.urlopen(body["url"], timeout=60) as resp:
        assert resp.read() == data
    assert body["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_1_mib_range_moves_at_most_3_mib_from_s3(
    stack: PipelineStack, parallel_doc: tuple[dict, bytes]
) -> None:
    """Counted through the S3 adapter (a real S3BlobStore on the emulator)."""
    from pqfile.adapters.s3 import S3BlobStore
    from pqfile.config import Settings
    from pqfile.usecases.common import Pipeline
    from pqfile.usecases.retrieve_range import deliver_range

    doc, data = parallel_doc
    client = stack.emulator.client("s3")
    moved: list[int] = []
    real_get = client.get_object

    def counting_get(**kw: object) -> dict:
        resp = real_get(**kw)
        moved.append(int(resp["ContentLength"]))
        return resp

    client.get_object = counting_get
    p = Pipeline(
        settings=Settings.from_values(encrypted_bucket=stack.encrypted),
        blobs=S3BlobStore(client),
        documents=None, keys=None, audit=None, cipher=None,  # type: ignore[arg-type]
    )  # fmt: skip
    from pqfile.adapters.postgres.documents import PostgresDocumentRepository

    db = stack.db()
    try:
        record = PostgresDocumentRepository(db).get(doc["document_id"])
    finally:
        db.close()
    assert record is not None
    secret = stack.keystore().load_decryption_key(doc["key_id"])
    # 1 MiB that straddles a segment edge: the worst case, two segments
    answer = deliver_range(p, record, secret, f"bytes={MIB // 2}-{MIB // 2 + MIB - 1}")
    assert base64.b64decode(answer["content_base64"]) == data[MIB // 2 : MIB // 2 + MIB]
    assert len(moved) == 2 and sum(moved) <= 3 * MIB, moved
    assert moved[1] == 2 * WIRE  # exactly the two covering segments


def _forge(stack: PipelineStack, doc: dict, package: bytes) -> None:
    """A new package version, and the index pointed at it (as a tamperer with both would)."""
    forged = stack.client("s3").put_object(
        Bucket=stack.encrypted, Key=doc["encrypted_key"], Body=package
    )
    stack.sql(
        "UPDATE documents SET encrypted_version_id = :v, encrypted_size = :n "
        "WHERE document_id = :d",
        v=forged["VersionId"], n=len(package), d=doc["document_id"],
    )  # fmt: skip


def test_tampered_and_truncated_packages_are_refused_when_the_range_covers_the_damage(
    stack: PipelineStack,
) -> None:
    data = os.urandom(4 * MIB + 100)
    doc = _ingest(stack, "uploads/a/r-range-tamper.bin", data)
    s3 = stack.client("s3")
    package = s3.get_object(Bucket=stack.encrypted, Key=doc["encrypted_key"])["Body"].read()
    header_size = len(package) - (4 * WIRE + 100 + 16)
    tampered = bytearray(package)
    tampered[header_size + 2 * WIRE + 7] ^= 1  # inside segment 2
    _forge(stack, doc, bytes(tampered))
    payload = {"document_id": doc["document_id"]}
    _refused(stack, {**payload, "range": f"bytes={2 * MIB}-{2 * MIB + 9}"}, "DecryptionError")
    body, error = stack.retrieve({**payload, "range": "bytes=0-9"})
    assert error is None and base64.b64decode(body["content_base64"]) == data[:10]
    # cut at a segment boundary: the new last segment was sealed as not final
    _forge(stack, doc, package[: header_size + 4 * WIRE])
    _refused(stack, {**payload, "range": "bytes=-1"}, "DecryptionError")
    _refused(stack, {**payload, "range": f"bytes={3 * MIB}-"}, "DecryptionError")
    body, error = stack.retrieve({**payload, "range": "bytes=0-9"})
    assert error is None and base64.b64decode(body["content_base64"]) == data[:10]
    # an unsatisfiable range is refused in one line, audited
    _forge(stack, doc, package)
    body, error = stack.retrieve({**payload, "range": f"bytes={len(data)}-"})
    assert error and body["errorType"] == "RangeNotSatisfiableError", body
    assert "not satisfiable" in body["errorMessage"]


def test_the_cli_retrieves_a_range(
    stack: PipelineStack, parallel_doc: tuple[dict, bytes], monkeypatch: pytest.MonkeyPatch,
    tmp_path, capsys,
) -> None:  # fmt: skip
    from pqfile.cli import main

    doc, data = parallel_doc
    _as_user(monkeypatch, stack, "alice")
    out = tmp_path / "slice.bin"
    spec = f"bytes={MIB - 5}-{MIB + 5}"
    assert main(["retrieve", doc["document_id"], "--range", spec, "--out", str(out)]) == 0
    assert out.read_bytes() == data[MIB - 5 : MIB + 6]
    assert main(["retrieve", doc["document_id"], "--range", "5-1", "--out",
                 str(tmp_path / "x")]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "--range" in err and "Traceback" not in err


# -- pqfile retrieve --identity: sealed delivery through the real function (issue 18) -------


def test_the_cli_retrieves_sealed_with_identity_and_keeps_the_sealed_package(
    stack: PipelineStack, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
) -> None:
    """The tour's step: a reader key registered for alice, then `pqfile retrieve --identity`
    through the retrieve function (sealed answer, presigned body on the emulator's S3):
    byte-identical, nothing under retrievals/, the kept package opens with the reader's key
    only; without --identity, or with another key, one-line errors and no file."""
    from pqfile.cli import main
    from pqfile.crypto import envelope, kem, keyfiles

    data = os.urandom(3 * 1024 * 1024 + 17)  # several segments
    doc = _ingest(stack, "uploads/a/r-cli-sealed.bin", data)
    reader = kem.generate(kem.Suite.XWING)
    sec, other = tmp_path / "me.sec", tmp_path / "other.sec"
    keyfiles.write_secret_key(sec, reader)
    keyfiles.write_secret_key(other, kem.generate(kem.Suite.XWING))
    arn = _arn(stack, "alice")
    stack.sql("SELECT recipient_register(:p, 'xwing', :k, false, 'tests', NULL)",
              p=arn, k=reader.public_key().raw)  # fmt: skip
    try:
        _as_user(monkeypatch, stack, "alice")
        _local_stack_state(stack, tmp_path, monkeypatch)  # as in the tour: the stack found
        before = len(stack.versions(stack.encrypted, "retrievals/"))
        out, kept = tmp_path / "got.bin", tmp_path / "kept.pqf"
        source = f"s3://{stack.uploads}/{doc['source_key']}"
        assert main(["retrieve", "--source", source, "--identity", str(sec), "--out", str(out),
                     "--keep-sealed", str(kept), "--json"]) == 0  # fmt: skip
        summary = json.loads(capsys.readouterr().out)
        assert out.read_bytes() == data
        assert (summary["delivery"], summary["size"]) == ("sealed", len(data))
        assert summary["sha256"] == hashlib.sha256(data).hexdigest()
        assert summary["recipient"]["fingerprint"] == hashlib.sha256(
            reader.public_key().raw).hexdigest()  # fmt: skip
        assert summary["receipt"]["audit_seq"] == _decrypts(stack, doc["document_id"])[-1]["seq"]
        package = kept.read_bytes()
        assert envelope.decrypt_bytes(package, reader, expected_document_id=doc["document_id"]) \
            == data  # fmt: skip
        service = stack.keystore().load_decryption_key(doc["key_id"])
        with pytest.raises(Exception) as refused:
            envelope.decrypt_bytes(package, service)
        assert type(refused.value).__name__ == "WrongKeyError"
        assert len(stack.versions(stack.encrypted, "retrievals/")) == before
        # alice has a key now: without --identity the answer is sealed, and she is told how
        plain = tmp_path / "plain.bin"
        assert main(["retrieve", doc["document_id"], "--out", str(plain)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["pqfile: error: the function answered with sealed delivery (a recipient "
                       "key is registered for you): retrieve with --identity YOUR.sec, or "
                       "--keep-sealed OUT.pqf"], err  # fmt: skip
        assert main(["retrieve", doc["document_id"], "--identity", str(other),
                     "--out", str(plain)]) == 1  # fmt: skip
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("pqfile: error: the document was sealed to the key with ")
        assert not plain.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["devstack", "got.bin", "kept.pqf", "me.sec", "other.sec"])  # fmt: skip
    finally:  # the module's other tests read as alice without a key
        stack.sql("SELECT recipient_revoke(:p, 'tests', NULL)", p=arn)
