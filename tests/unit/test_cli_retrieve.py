"""`pqfile retrieve` and `pqfile access` without a stack: usage errors are one line, and a
document whose bytes do not match the answer is never written."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
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


# --- --out: the rules of `pqfile decrypt --out`, through envelope.write_atomically ----------

#: Runs `pqfile retrieve` with the AWS side replaced: no proof is signed and the "function"
#: answers with the JSON in argv[1]; the rest of argv is the command line.
_FAKE_RETRIEVE = """
import json, sys
import pqfile.adapters.lambda_retrieve as lr
import pqfile.adapters.sts_proof as sp
sp.default_credentials = lambda **kw: None
sp.proof_payload = lambda request, **kw: dict(request)
answer = json.loads(sys.argv[1])
lr.invoke_retrieve = lambda *a, **kw: lr.InvokeAnswer(answer, None)
from pqfile.cli import main
sys.exit(main(sys.argv[2:]))
"""

_FLAGS = ["--function-name", "f", "--audience", "aud", "--region", "us-east-1",
          "--endpoint-url", "https://sts.us-east-1.amazonaws.com"]  # fmt: skip


def _inline(data: bytes) -> dict[str, object]:
    return {"document_id": "d", "delivery": "inline", "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "content_base64": base64.b64encode(data).decode()}  # fmt: skip


@pytest.fixture
def fake_function(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, object]:
    """The AWS side replaced in this process (as _FAKE_RETRIEVE does in a subprocess): no
    proof is signed, the "function" answers with what the test puts in the dict."""
    import pqfile.adapters.lambda_retrieve as lr
    import pqfile.adapters.sts_proof as sp

    answer: dict[str, object] = {}
    monkeypatch.setattr(sp, "default_credentials", lambda **kw: None)
    monkeypatch.setattr(sp, "proof_payload", lambda request, **kw: dict(request))
    monkeypatch.setattr(lr, "invoke_retrieve", lambda *a, **kw: lr.InvokeAnswer(answer, None))
    monkeypatch.delenv("PQFILE_STACK", raising=False)
    monkeypatch.setenv("PQFILE_DEVSTACK_DIR", str(tmp_path / "no-stack"))
    return answer


def _run_retrieve(
    answer: dict[str, object],
    out: Path,
    *extra: str,
    fake: dict[str, object],
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str]:
    """(exit status, stderr) of `pqfile retrieve doc --out OUT` against the fake function."""
    fake.clear()
    fake.update(answer)
    code = main(["retrieve", "doc", "--out", str(out), *_FLAGS, *extra])
    return code, capsys.readouterr().err


def test_retrieve_writes_a_new_file_and_overwrites_only_with_force(
    tmp_path: Path, fake_function: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "got.bin"
    run = functools.partial(_run_retrieve, fake=fake_function, capsys=capsys)
    code, err = run(_inline(b"first"), out)
    assert code == 0, err
    assert out.read_bytes() == b"first"
    assert oct(out.stat().st_mode & 0o777) == "0o600"  # the atomic writer's mode
    code, err = run(_inline(b"second"), out)
    assert code == 1
    assert err.strip().splitlines() == [f"pqfile: error: refusing to overwrite {out} (use --force)"]
    assert out.read_bytes() == b"first"
    assert run(_inline(b"second"), out, "--force")[0] == 0
    assert out.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["got.bin"]  # no temporary left


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "directory", "fifo"])
def test_retrieve_refuses_an_out_that_is_not_a_regular_file_even_with_force(
    tmp_path: Path, kind: str, fake_function: dict[str, object],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    target = tmp_path / "target.txt"
    target.write_bytes(b"keep me")
    out = tmp_path / "out"
    if kind == "symlink":
        out.symlink_to(target)
    elif kind == "dangling symlink":
        out.symlink_to(tmp_path / "nowhere")
    elif kind == "directory":
        out.mkdir()
    else:
        os.mkfifo(out)
    before = sorted(p.name for p in tmp_path.iterdir())
    for extra in ([], ["--force"]):
        code, err = _run_retrieve(_inline(b"new bytes"), out, *extra, fake=fake_function,
                                  capsys=capsys)  # fmt: skip
        assert code == 1, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pqfile: error: refusing to "), lines
    assert target.read_bytes() == b"keep me"  # a symlink is never followed
    assert not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_sigterm_mid_download_leaves_no_temporary_file(tmp_path: Path) -> None:
    """The URL delivery sends half the document and then stalls, so SIGTERM lands while the
    temporary file is open; the command exits 143 and leaves nothing behind."""
    import http.server
    import threading
    import time

    data = os.urandom(2 * 1024 * 1024)
    release = threading.Event()

    class Stalling(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            release.wait(30)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answer = {"document_id": "d", "delivery": "url", "size": len(data),
              "sha256": hashlib.sha256(data).hexdigest(),
              "url": f"http://127.0.0.1:{server.server_address[1]}/doc"}  # fmt: skip
    out = tmp_path / "got.bin"
    env = {**os.environ, "PQFILE_DEVSTACK_DIR": str(tmp_path / "no-stack")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _FAKE_RETRIEVE, json.dumps(answer), "retrieve", "doc",
         "--out", str(out), *_FLAGS],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        written = 0
        while time.monotonic() < deadline and written < len(data) // 2:
            time.sleep(0.05)
            partial = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
            written = partial[0].stat().st_size if partial else 0
        assert written >= len(data) // 2, "the download never reached its temporary file"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        release.set()
        server.shutdown()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "pqfile: interrupted"
    assert list(tmp_path.iterdir()) == []
