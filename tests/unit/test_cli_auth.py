"""`pqfile auth proof`: the payload it prints is one the service's checks accept, for the
request named, signed with the credentials of the standard chain."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pqfile.auth import (
    IdentityProofError,
    ProofPolicy,
    StsEndpoint,
    retrieve_request_sha256,
    validate_proof,
)
from pqfile.cli import main

KEY_ID = "AKIACLITESTCLITEST00"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Credentials from the environment only: no profile files, no instance metadata."""
    for name in ["AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "PQFILE_AUDIENCE", "PQFILE_STS_ENDPOINT_URL"]:  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cli-secret")
    monkeypatch.delenv("PQFILE_STACK", raising=False)
    monkeypatch.setenv("PQFILE_DEVSTACK_DIR", str(tmp_path / "no-local-stack"))
    return monkeypatch


def accepted(payload: dict[str, object], endpoint: str, region: str, audience: str) -> None:
    policy = ProofPolicy(StsEndpoint.parse(endpoint, default_region=region), audience)
    request = validate_proof(
        payload["identity_proof"],
        policy,
        request_sha256=retrieve_request_sha256(payload),
        now=dt.datetime.now(dt.UTC),
    )
    assert request.access_key_id == KEY_ID


def test_proof_for_a_document(aws_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                              ) -> None:  # fmt: skip
    rc = main(["auth", "proof", "--document-id", "3f2a9c", "--audience", "pqfile-dev",
               "--region", "eu-west-1"])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    payload = json.loads(out)
    assert payload["document_id"] == "3f2a9c" and set(payload) == {"document_id",
                                                                    "identity_proof"}  # fmt: skip
    assert payload["identity_proof"]["url"] == "https://sts.eu-west-1.amazonaws.com/"
    accepted(payload, "https://sts.eu-west-1.amazonaws.com", "eu-west-1", "pqfile-dev")
    assert "valid for 5 minutes" in err and "cli-secret" not in out + err


def test_json_is_one_line_and_stderr_stays_silent(
    aws_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_env.setenv("PQFILE_AUDIENCE", "pqfile-local")
    aws_env.setenv("PQFILE_STS_ENDPOINT_URL", "http://127.0.0.1:4599")
    aws_env.setenv("AWS_SESSION_TOKEN", "session-token")
    rc = main(["auth", "proof", "--bucket", "enc", "--key", "encrypted/x.pqf", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0 and err == ""
    assert out.count("\n") == 1
    payload = json.loads(out)
    assert payload["bucket"] == "enc" and payload["key"] == "encrypted/x.pqf"
    assert payload["identity_proof"]["headers"]["X-Amz-Security-Token"] == "session-token"
    accepted(payload, "http://127.0.0.1:4599", "us-east-1", "pqfile-local")


def test_a_proof_for_the_uploads_name_covers_its_source(
    aws_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_env.setenv("PQFILE_AUDIENCE", "pqfile-local")
    aws_env.setenv("PQFILE_STS_ENDPOINT_URL", "http://127.0.0.1:4599")
    rc = main(["auth", "proof", "--source", "s3://up/uploads/a/r.pdf?versionId=v7", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert payload["source"] == {"bucket": "up", "key": "uploads/a/r.pdf", "version_id": "v7"}
    accepted(payload, "http://127.0.0.1:4599", "us-east-1", "pqfile-local")  # bound to it
    other = {**payload, "source": {**payload["source"], "version_id": "v8"}}
    assert retrieve_request_sha256(other) != retrieve_request_sha256(payload)
    with pytest.raises(IdentityProofError):
        accepted(other, "http://127.0.0.1:4599", "us-east-1", "pqfile-local")


def test_endpoint_url_and_region_options(
    aws_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["auth", "proof", "--document-id", "d", "--audience", "a", "--region",
               "ap-south-1", "--endpoint-url", "http://localhost:4566", "--json"])  # fmt: skip
    payload = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert "/ap-south-1/sts/aws4_request" in payload["identity_proof"]["headers"]["Authorization"]
    accepted(payload, "http://localhost:4566", "ap-south-1", "a")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--document-id", "d"], "no audience"),
        (["--audience", "a"], "name the document"),
        (["--document-id", "d", "--bucket", "b", "--key", "k", "--audience", "a"],
         "name the document"),
        (["--bucket", "b", "--audience", "a"], "name the document"),
        (["--source", "s3://b/k", "--document-id", "d", "--audience", "a"], "name the document"),
        (["--source", "b/k", "--audience", "a"], "s3://BUCKET/KEY"),
        (["--document-id", "d", "--audience", "a", "--endpoint-url", "http://sts.example.com"],
         "--endpoint-url"),
        (["--document-id", "d", "--audience", "not valid"], "audience"),
    ],
)  # fmt: skip
def test_usage_errors(
    aws_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["auth", "proof", *args]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("pqfile: error: ") and message in err


def test_no_credentials(aws_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    aws_env.delenv("AWS_ACCESS_KEY_ID")
    aws_env.delenv("AWS_SECRET_ACCESS_KEY")
    assert main(["auth", "proof", "--document-id", "d", "--audience", "a"]) == 1
    assert "no AWS credentials" in capsys.readouterr().err


def test_the_local_stack_gives_the_audience_region_and_sts(
    aws_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As retrieve does: without flags or variables, the proof is for the local stack's
    audience and its local STS (the tour's `aws lambda invoke` path)."""
    base = tmp_path / "devstack"
    base.mkdir()
    (base / "state.json").write_text(json.dumps({
        "status": "ready", "endpoint_url": "http://127.0.0.1:4566", "region": "eu-west-1",
        "sts_endpoint_url": "http://127.0.0.1:4599",
        "terraform_outputs": {"audience": "pqfile-local"}}))  # fmt: skip
    aws_env.setenv("PQFILE_DEVSTACK_DIR", str(base))
    assert main(["auth", "proof", "--operation", "status", "--document-id", "d", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    accepted(payload, "http://127.0.0.1:4599", "eu-west-1", "pqfile-local")
    # a flag still wins over the stack
    assert main(["auth", "proof", "--document-id", "d", "--audience", "other", "--json"]) == 0
    accepted(json.loads(capsys.readouterr().out), "http://127.0.0.1:4599", "eu-west-1", "other")
