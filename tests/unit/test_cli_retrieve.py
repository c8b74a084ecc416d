"""`pqfile retrieve` and `pqfile access` without a stack: usage errors are one line, and a
document whose bytes do not match the answer is never written."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from pqfile.cli import main
from pqfile.cli.retrieve import RetrieveRefusedError, _write


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err.strip()


def test_retrieve_needs_one_document_and_a_function(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PQFILE_RETRIEVE_FUNCTION", raising=False)
    monkeypatch.delenv("PQFILE_STACK", raising=False)
    monkeypatch.setenv("PQFILE_DEVSTACK_DIR", str(tmp_path / "no-local-stack"))
    out = str(tmp_path / "x")
    assert main(["retrieve", "--out", out]) == 1
    assert _err(capsys) == (
        "pqfile: error: name the document: DOCUMENT_ID or "
        "--source s3://BUCKET/KEY[?versionId=VERSION]"
    )
    assert main(["retrieve", "doc", "--source", "s3://b/k", "--out", out]) == 1
    assert main(["retrieve", "--source", "b/k", "--out", out]) == 1
    assert "s3://BUCKET/KEY" in _err(capsys)
    assert main(["retrieve", "doc", "--out", out]) == 1
    assert _err(capsys) == (
        "pqfile: error: no function: --function-name, PQFILE_RETRIEVE_FUNCTION, or a stack "
        "(not deployed: no local stack (python -m devstack up, then deploy) and no --stack "
        "DIR or PQFILE_STACK)"
    )


def test_access_needs_a_tenant_or_a_document(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["access", "grant", "--principal", "arn:aws:iam::123456789012:user/a"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["access", "grant", "--principal", "p", "--tenant", "a", "--document", "d"])


def test_a_document_that_does_not_match_its_sha256_is_not_written(tmp_path: Path) -> None:
    out = tmp_path / "got.bin"
    data = b"the document"
    good = {"delivery": "inline", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "content_base64": base64.b64encode(data).decode()}  # fmt: skip
    assert _write(out, good) == len(data) and out.read_bytes() == data
    out.unlink()
    bad_answers = [
        {**good, "sha256": "0" * 64},
        {**good, "size": 1},
        {**good, "content_base64": "!!"},
        {**good, "delivery": "carrier pigeon"},
    ]
    for bad in bad_answers:
        with pytest.raises((RetrieveRefusedError, Exception)):
            _write(out, bad)
        assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left


def test_source_url_names_the_upload_and_its_version() -> None:
    from pqfile.cli.retrieve import source_of
    from pqfile.config import ConfigurationError

    assert source_of("s3://up/uploads/a/x.pdf") == {"bucket": "up", "key": "uploads/a/x.pdf"}
    assert source_of("s3://up/uploads/a/x.pdf?versionId=3HL4kqtJ") == {
        "bucket": "up", "key": "uploads/a/x.pdf", "version_id": "3HL4kqtJ"}  # fmt: skip
    # a '?' elsewhere is part of the key
    assert source_of("s3://up/uploads/a/what?.pdf")["key"] == "uploads/a/what?.pdf"
    for bad in ("up/uploads/a/x", "s3://up", "s3://up/", "s3:///k", "s3://up/?versionId=v"):
        with pytest.raises(ConfigurationError, match="versionId"):
            source_of(bad)
