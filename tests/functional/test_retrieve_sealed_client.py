"""`pqfile retrieve --identity ME.sec` (the reader's side of sealed delivery, issue 18)
against a real HTTP server on loopback that serves a real stored package.

The package is made with crypto.envelope for a "service" key; the answer carries its header
re-wrapped to the reader's key (rewrap_header), as the retrieve function builds it
(docs/OPERATIONS.md "Retrieval"). Only the function invoke and the proof signing are
replaced (as in tests/unit/test_cli_retrieve.py); the body travels over HTTP with a Range
header, is spliced, verified and decrypted by the command itself.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pqfile.cli import main
from pqfile.crypto import envelope, keyfiles
from pqfile.crypto.kem import SecretKey, Suite, generate
from pqfile.format.header import parse_header

DOC_ID = "3f2a9c0d1e2f3a4b5c6d7e8f90a1b2c3"
SEGMENT = 1024
_FLAGS = ["--function-name", "f", "--audience", "aud", "--region", "us-east-1",
          "--endpoint-url", "https://sts.us-east-1.amazonaws.com"]  # fmt: skip


@dataclass
class Served:
    """What the loopback server serves and how it misbehaves; what it saw."""

    blob: bytes = b""
    path: Path | None = None  # served instead of blob, 1 MiB at a time (a large package)
    mode: str = "ok"  # ok | 403 | truncate | short | ignore-range | flip-body | stall
    release: threading.Event = field(default_factory=threading.Event)  # ends a stall
    requests: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[tuple[Served, str]]:
    served = Served()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append({"path": self.path, "range": self.headers.get("Range", "")})
            if served.path is not None:
                self._send_file(served.path)
                return
            if served.mode == "403":
                body = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message>"
                self.send_response(403)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            blob = bytearray(served.blob)
            if served.mode == "flip-body":
                blob[-SEGMENT] ^= 0x01  # inside the body, before the final segment's tag
            first, last = 0, len(blob) - 1
            ranged = self.headers.get("Range", "")
            if served.mode != "ignore-range" and ranged.startswith("bytes="):
                a, _, b = ranged.removeprefix("bytes=").partition("-")
                first, last = int(a), min(int(b) if b else last, last)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {first}-{last}/{len(blob)}")
            else:
                self.send_response(200)
            part = bytes(blob[first : last + 1])
            if served.mode == "short":  # a well-formed answer with fewer bytes
                part = part[: len(part) // 2]
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            if served.mode == "stall":  # half the body, then nothing until released
                self.wfile.write(part[: len(part) // 2])
                self.wfile.flush()
                served.release.wait(30)
                return
            if served.mode == "truncate":  # promises them all, then the connection drops
                self.wfile.write(part[: len(part) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(part)

        def _send_file(self, path: Path) -> None:
            a, _, b = self.headers["Range"].removeprefix("bytes=").partition("-")
            first, last = int(a), int(b)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{path.stat().st_size}")
            self.send_header("Content-Length", str(last - first + 1))
            self.end_headers()
            with path.open("rb") as f:
                f.seek(first)
                left = last - first + 1
                while left:
                    chunk = f.read(min(left, 1 << 20))
                    self.wfile.write(chunk)
                    left -= len(chunk)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}/encrypted/{DOC_ID}.pqf?X-Amz-Signature=x"
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass
class Keys:
    service: SecretKey
    reader: SecretKey
    reader_sec: Path
    reader_pub: Path
    service_sec: Path


@pytest.fixture(scope="module")
def key_material(tmp_path_factory: pytest.TempPathFactory) -> tuple[SecretKey, SecretKey]:
    return generate(Suite.XWING), generate(Suite.XWING)


@pytest.fixture
def keys(tmp_path: Path, key_material: tuple[SecretKey, SecretKey]) -> Keys:
    service, reader = key_material
    d = tmp_path / "keys"
    d.mkdir()
    keyfiles.write_secret_key(d / "me.sec", reader)
    keyfiles.write_public_key(d / "me.pub", reader.public_key())
    keyfiles.write_secret_key(d / "service.sec", service)
    return Keys(service, reader, d / "me.sec", d / "me.pub", d / "service.sec")


def _fingerprint(key: SecretKey) -> str:
    return hashlib.sha256(key.public_key().raw).hexdigest()


def _stored_and_answer(
    data: bytes, keys: Keys, url: str, *, reader: SecretKey | None = None
) -> tuple[bytes, dict[str, Any], bytes]:
    """(the stored package, the sealed answer, the spliced package the reader should get)."""
    reader = reader or keys.reader
    stored = bytes(envelope.encrypt_bytes(
        data, keys.service.public_key(), document_id=DOC_ID, segment_size=SEGMENT,
        context={"pqfile:content-type": "text/plain"},
    ))  # fmt: skip
    old_size = parse_header(stored).size
    new_header = envelope.rewrap_header(stored, keys.service, reader.public_key())
    answer = {
        "document_id": DOC_ID, "delivery": "sealed", "size": len(data),
        "content_type": "text/plain",
        "recipient": {"fingerprint": _fingerprint(reader), "suite": reader.suite.value},
        "header_base64": base64.b64encode(new_header).decode(),
        "body": {"url": url, "offset": old_size, "length": len(stored) - old_size,
                 "expires_in": 300},
        "receipt": {"audit_seq": 41, "note": "prove it"},
    }  # fmt: skip
    return stored, answer, new_header + stored[old_size:]


@pytest.fixture
def fake_function(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """The function's answer is what the test puts in ``["answer"]``; the request it got
    is kept in ``["request"]``. No proof is signed."""
    import pqfile.adapters.lambda_retrieve as lr
    import pqfile.adapters.sts_proof as sp

    box: dict[str, Any] = {"answer": {}, "request": None, "calls": 0}

    def invoke(function: str, payload: dict[str, Any], **kw: Any) -> Any:
        box["request"] = payload
        box["calls"] += 1
        return lr.InvokeAnswer(box["answer"], None)

    monkeypatch.setattr(sp, "default_credentials", lambda **kw: None)
    monkeypatch.setattr(sp, "proof_payload", lambda request, **kw: dict(request))
    monkeypatch.setattr(lr, "invoke_retrieve", invoke)
    monkeypatch.delenv("PQFILE_STACK", raising=False)
    monkeypatch.setenv("PQFILE_DEVSTACK_DIR", str(tmp_path / "no-stack"))
    return box


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name != "keys")


def _retrieve(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["retrieve", DOC_ID, *args, *_FLAGS])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("size", [0, 1, 1024, 5 * 1024 + 7])
def test_sealed_retrieve_is_byte_identical_and_reports_its_sha256(
    size: int, tmp_path: Path, keys: Keys, server: tuple[Served, str],
    fake_function: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    served, url = server
    data = os.urandom(size)
    served.blob, fake_function["answer"], _ = _stored_and_answer(data, keys, url)
    out = tmp_path / "got.bin"
    code, stdout, err = _retrieve(capsys, "--identity", str(keys.reader_sec), "--out", str(out),
                                  "--json")  # fmt: skip
    assert code == 0, err
    assert out.read_bytes() == data
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert fake_function["request"] == {"document_id": DOC_ID, "delivery": "sealed"}
    body = fake_function["answer"]["body"]
    assert served.requests == [{"path": served.requests[0]["path"],
        "range": f"bytes={body['offset']}-{body['offset'] + body['length'] - 1}"}]  # fmt: skip
    summary = json.loads(stdout)
    assert summary["sha256"] == hashlib.sha256(data).hexdigest()
    assert summary["size"] == size and summary["delivery"] == "sealed"
    assert summary["out"] == str(out) and summary["sealed"] is None
    assert summary["recipient"] == {"fingerprint": _fingerprint(keys.reader), "suite": "xwing",
                                    "key_id": keys.reader.public_key().key_id}  # fmt: skip
    assert summary["receipt"] == {"audit_seq": 41, "note": "prove it"}
    assert _files(tmp_path) == ["got.bin"]  # no temporary left


def test_human_output_names_the_file_its_sha256_and_the_receipt(
    tmp_path: Path, keys: Keys, server: tuple[Served, str],
    fake_function: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    served, url = server
    data = b"board minutes\n" * 100
    served.blob, fake_function["answer"], _ = _stored_and_answer(data, keys, url)
    out = tmp_path / "got.txt"
    code, stdout, err = _retrieve(capsys, "-i", str(keys.reader_sec), "--out", str(out))
    assert code == 0, err
    assert stdout == ""
    lines = err.strip().splitlines()
    assert lines[0] == (f"wrote {out}: 1.4 KiB (1400 bytes), sha256 "
                        f"{hashlib.sha256(data).hexdigest()} (decrypted here: every segment "
                        "verified)")  # fmt: skip
    assert lines[1].startswith("audit receipt: row 41 ")


def test_keep_sealed_opens_with_the_readers_key_and_not_with_the_service_key(
    tmp_path: Path, keys: Keys, server: tuple[Served, str],
    fake_function: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    served, url = server
    data = os.urandom(3 * SEGMENT + 5)
    served.blob, fake_function["answer"], spliced = _stored_and_answer(data, keys, url)
    out, kept = tmp_path / "got.bin", tmp_path / "kept.pqf"
    code, stdout, err = _retrieve(capsys, "--identity", str(keys.reader_sec), "--out", str(out),
                                  "--keep-sealed", str(kept), "--json")  # fmt: skip
    assert code == 0, err
    assert out.read_bytes() == data
    assert kept.read_bytes() == spliced
    summary = json.loads(stdout)
    assert summary["sealed"] == str(kept) and summary["sealed_size"] == len(spliced)
    assert summary["verified"] == "header and every segment, with --identity"
    # the kept package is an ordinary PQF package for the reader's key, and only for it
    again = tmp_path / "again.bin"
    assert main(["decrypt", "--identity", str(keys.reader_sec), "--in", str(kept),
                 "--out", str(again)]) == 0  # fmt: skip
    assert again.read_bytes() == data
    capsys.readouterr()
    refused = tmp_path / "refused.bin"
    assert main(["decrypt", "--identity", str(keys.service_sec), "--in", str(kept),
                 "--out", str(refused)]) == 1  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "this package is for key id" in err[0], err
    assert not refused.exists()


def test_keep_sealed_alone_without_identity_checks_the_structure(
    tmp_path: Path, keys: Keys, server: tuple[Served, str],
    fake_function: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    served, url = server
    data = os.urandom(2 * SEGMENT)
    served.blob, fake_function["answer"], spliced = _stored_and_answer(data, keys, url)
    kept = tmp_path / "kept.pqf"
    code, stdout, err = _retrieve(capsys, "--keep-sealed", str(kept), "--json")
    assert code == 0, err
    assert fake_function["request"]["delivery"] == "sealed"
    assert kept.read_bytes() == spliced
    summary = json.loads(stdout)
    assert summary["sha256"] is None and summary["out"] is None
    assert summary["verified"] == "structure only (no --identity)"
    assert envelope.decrypt_bytes(spliced, keys.reader) == data
    # ... and with --identity but no --out: every segment verified, no plaintext written
    kept.unlink()
    code, stdout, err = _retrieve(capsys, "-i", str(keys.reader_sec), "--keep-sealed", str(kept),
                                  "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["sha256"] == hashlib.sha256(data).hexdigest()
    assert _files(tmp_path) == ["kept.pqf"]


def test_a_server_that_ignores_the_range_still_gives_the_body(
    tmp_path: Path, keys: Keys, server: tuple[Served, str],
    fake_function: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    served, url = server
    data = os.urandom(2 * SEGMENT + 1)
    served.blob, fake_function["answer"], _ = _stored_and_answer(data, keys, url)
    served.mode = "ignore-range"
    out = tmp_path / "got.bin"
    code, _, err = _retrieve(capsys, "-i", str(keys.reader_sec), "--out", str(out))
    assert code == 0, err
    assert out.read_bytes() == data


def _tamper_header(answer: dict[str, Any], where: int) -> None:
    raw = bytearray(base64.b64decode(answer["header_base64"]))
    raw[where] ^= 0x01
    answer["header_base64"] = base64.b64encode(bytes(raw)).decode()


#: (name, how the answer or the server goes wrong, the one error line's start or part)
FAILURES: list[tuple[str, Callable[[Served, dict[str, Any]], None], str]] = [
    ("header MAC", lambda s, a: _tamper_header(a, -1),
     "pqfile: error: the sealed header is not authentic for --identity: nothing written"),
    ("header enc", lambda s, a: _tamper_header(a, -100),
     "pqfile: error: the sealed header is not authentic for --identity: nothing written"),
    ("header salt", lambda s, a: _tamper_header(a, 30),
     "pqfile: error: the sealed header is not authentic for --identity: nothing written"),
    ("body byte", lambda s, a: setattr(s, "mode", "flip-body"),
     "pqfile: error: decryption failed: package is not authentic"),
    ("connection drops", lambda s, a: setattr(s, "mode", "truncate"),
     "pqfile: error: the body ended after "),
    ("body ends early", lambda s, a: setattr(s, "mode", "short"),
     "pqfile: error: the body ended after "),
    ("expired URL", lambda s, a: setattr(s, "mode", "403"),
     "pqfile: error: the body URL was refused (HTTP 403): it has expired"),
    ("stored package cut", lambda s, a: setattr(s, "blob", s.blob[:-SEGMENT]),
     "pqfile: error: the body ended after "),
    ("length lies", lambda s, a: a["body"].update(length=a["body"]["length"] - 16),
     "pqfile: error: the answer's body length "),
    ("size lies", lambda s, a: a.update(size=a["size"] + 1),
     "pqfile: error: the answer's body length "),
    ("another document", lambda s, a: a.update(document_id="0" * 32),
     "pqfile: error: the sealed header binds another document than the answer names"),
    ("suite lies", lambda s, a: a["recipient"].update(suite="mlkem768"),
     "pqfile: error: the sealed header is for suite xwing, the answer says mlkem768"),
    ("not base64", lambda s, a: a.update(header_base64="!!"),
     "pqfile: error: the sealed answer's header_base64 is not base64"),
    ("header cut", lambda s, a: a.update(header_base64=a["header_base64"][:40]),
     "pqfile: error: truncated PQF header"),
    ("no body", lambda s, a: a.pop("body"),
     "pqfile: error: the sealed answer lacks its recipient or body"),
    ("not https", lambda s, a: a["body"].update(url="http://example.com/x"),
     "pqfile: error: the delivery URL is not https"),
]


@pytest.mark.parametrize(("name", "spoil", "error"), FAILURES, ids=[f[0] for f in FAILURES])
def test_a_spoilt_answer_or_body_is_one_line_and_leaves_no_file(
    name: str, spoil: Callable[[Served, dict[str, Any]], None], error: str,
    tmp_path: Path, keys: Keys, server: tuple[Served, str],
    fake_function: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    served, url = server
    data = os.urandom(4 * SEGMENT + 3)
    served.blob, fake_function["answer"], _ = _stored_and_answer(data, keys, url)
    spoil(served, fake_function["answer"])
    out, kept = tmp_path / "got.bin", tmp_path / "kept.pqf"
    code, stdout, err = _retrieve(capsys, "-i", str(keys.reader_sec), "--out", str(out),
                                  "--keep-sealed", str(kept))  # fmt: skip
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(error), lines
    assert stdout == ""
    assert _files(tmp_path) == []  # neither file, no temporary
    if name.startswith(("header", "length", "size", "another", "suite", "not base", "no body")):
        assert served.requests == []  # refused before any body byte was fetched


def test_another_identity_than_the_registered_one_is_named_before_any_fetch(
    tmp_path: Path, keys: Keys, server: tuple[Served, str],
    fake_function: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    served, url = server
    data = b"for the registered key only"
    served.blob, fake_function["answer"], _ = _stored_and_answer(data, keys, url)
    other = tmp_path / "keys" / "other.sec"
    keyfiles.write_secret_key(other, generate(Suite.XWING))
    out = tmp_path / "got.bin"
    code, _, err = _retrieve(capsys, "--identity", str(other), "--out", str(out))
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith(f"pqfile: error: the document was sealed to the key with fingerprint "
                           f"{_fingerprint(keys.reader)} (xwing), not to --identity (")  # fmt: skip
    assert "pqfile access recipient add" in line
    assert served.requests == [] and _files(tmp_path) == []


def test_a_sealed_answer_without_identity_or_keep_sealed_says_what_to_do(
    tmp_path: Path, keys: Keys, server: tuple[Served, str],
    fake_function: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Without --identity the request names no delivery (the function chooses: today's
    plaintext delivery for a caller without a key); a caller with a key gets sealed."""
    served, url = server
    served.blob, fake_function["answer"], _ = _stored_and_answer(b"x", keys, url)
    out = tmp_path / "got.bin"
    code, _, err = _retrieve(capsys, "--out", str(out))
    assert code == 1
    assert fake_function["request"] == {"document_id": DOC_ID}
    assert err.strip() == ("pqfile: error: the function answered with sealed delivery (a "
                           "recipient key is registered for you): retrieve with --identity "
                           "YOUR.sec, or --keep-sealed OUT.pqf")  # fmt: skip
    assert served.requests == [] and _files(tmp_path) == []


def test_asking_sealed_and_getting_plaintext_is_refused(
    tmp_path: Path, keys: Keys, fake_function: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    fake_function["answer"] = {"document_id": DOC_ID, "delivery": "inline", "size": 1,
        "sha256": hashlib.sha256(b"x").hexdigest(), "content_base64": "eA=="}  # fmt: skip
    code, _, err = _retrieve(capsys, "-i", str(keys.reader_sec), "--out", str(tmp_path / "o"))
    assert code == 1
    assert err.strip() == "pqfile: error: asked for sealed delivery, the function answered 'inline'"
    assert _files(tmp_path) == []


@pytest.mark.parametrize(("args", "error"), [
    (["--delivery", "inline", "-i", "K", "--out", "o"],
     "--delivery inline is plaintext: --identity and --keep-sealed are for sealed"),
    (["--delivery", "url", "--keep-sealed", "k.pqf"],
     "--delivery url is plaintext: --identity and --keep-sealed are for sealed"),
    (["--delivery", "sealed", "--out", "o"],
     "sealed delivery is decrypted with your secret key: --identity ME.sec (or only "
     "--keep-sealed OUT.pqf to keep it encrypted)"),
    (["-i", "K"], "name where to write: --out FILE and/or --keep-sealed OUT.pqf"),
    (["-i", "K", "--out", "o", "--range", "bytes=0-9"],
     "--range is not available with sealed delivery"),
    (["-i", "K", "--out", "same", "--keep-sealed", "same"],
     "--out and --keep-sealed must be different files"),
])  # fmt: skip
def test_combinations_that_cannot_work_are_refused_before_the_call(
    args: list[str], error: str, tmp_path: Path, keys: Keys, fake_function: dict[str, Any],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    args = [str(keys.reader_sec) if a == "K" else a for a in args]
    code, _, err = _retrieve(capsys, *args)
    assert code == 1
    assert err.strip() == f"pqfile: error: {error}"
    assert fake_function["calls"] == 0


def test_an_unreadable_identity_is_one_line_before_the_call(
    tmp_path: Path, fake_function: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    bad = tmp_path / "bad.sec"
    bad.write_text("-----BEGIN NOTHING-----\n")
    code, _, err = _retrieve(capsys, "-i", str(bad), "--out", str(tmp_path / "o"))
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("pqfile: error: ")
    code, _, err = _retrieve(capsys, "-i", str(tmp_path / "missing.sec"), "--out",
                             str(tmp_path / "o"))  # fmt: skip
    assert code == 1
    assert err.strip().startswith("pqfile: error: No such file or directory")
    assert fake_function["calls"] == 0


def test_progress_follows_the_body_on_a_terminal_and_is_off_otherwise(
    tmp_path: Path, keys: Keys, server: tuple[Served, str],
    fake_function: dict[str, Any], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import pqfile.cli._output as output
    import pqfile.cli.retrieve_sealed as sealed

    served, url = server
    data = os.urandom(3 * SEGMENT)
    served.blob, fake_function["answer"], _ = _stored_and_answer(data, keys, url)
    monkeypatch.setattr(output, "PROGRESS_THRESHOLD", 0)  # any size: only the terminal decides
    seen: list[int | None] = []

    @contextlib.contextmanager
    def spy(total: int | None, description: str) -> Iterator[Callable[[int], None] | None]:
        with output.progress_bar(total, description) as advance:
            if advance is None:
                seen.append(None)
                yield None
                return
            seen.append(0)

            def counted(n: int) -> None:
                seen[-1] = (seen[-1] or 0) + n
                advance(n)

            yield counted

    monkeypatch.setattr(sealed, "progress_bar", spy)
    out = tmp_path / "got.bin"
    assert _retrieve(capsys, "-i", str(keys.reader_sec), "--out", str(out))[0] == 0
    assert seen == [None]  # stderr is captured, not a terminal: no bar
    monkeypatch.setattr(output, "progress_wanted", lambda total, **kw: True)
    out.unlink()
    code, _, err = _retrieve(capsys, "-i", str(keys.reader_sec), "--out", str(out))
    assert code == 0, err
    assert seen[1] == fake_function["answer"]["body"]["length"]  # every body byte counted


#: `pqfile retrieve` in a child process with the function's answer in argv[1] (see
#: tests/unit/test_cli_retrieve.py): stderr is a pipe there, as in scripts.
_CHILD = """
import json, sys
import pqfile.adapters.lambda_retrieve as lr
import pqfile.adapters.sts_proof as sp
import pqfile.cli._output as output
output.PROGRESS_THRESHOLD = 0
sp.default_credentials = lambda **kw: None
sp.proof_payload = lambda request, **kw: dict(request)
answer = json.loads(sys.argv[1])
lr.invoke_retrieve = lambda *a, **kw: lr.InvokeAnswer(answer, None)
from pqfile.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_script_sees_only_the_json_line_and_no_progress(
    tmp_path: Path, keys: Keys, server: tuple[Served, str],
) -> None:  # fmt: skip
    served, url = server
    data = os.urandom(8 * SEGMENT)
    served.blob, answer, _ = _stored_and_answer(data, keys, url)
    out = tmp_path / "got.bin"
    env = {**os.environ, "PQFILE_DEVSTACK_DIR": str(tmp_path / "no-stack")}
    env.pop("PQFILE_STACK", None)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(answer), "retrieve", DOC_ID,
         "-i", str(keys.reader_sec), "--out", str(out), "--json", *_FLAGS],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    (line,) = proc.stdout.splitlines()
    assert json.loads(line)["sha256"] == hashlib.sha256(data).hexdigest()
    assert out.read_bytes() == data


def test_a_large_document_streams_through_bounded_memory(
    tmp_path: Path, keys: Keys, server: tuple[Served, str],
    fake_function: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """64 MiB in 1 MiB segments, kept sealed and decrypted: the command's Python heap (and
    the loopback server's, in the same process) peaks at a few segments, not the document."""
    import io
    import tracemalloc

    mib = 1 << 20
    size = 64 * mib
    pattern = hashlib.sha256(b"pattern").digest() * (mib // 32)  # 1 MiB, not all zeros
    stored = tmp_path / "stored.pqf"
    with stored.open("wb") as f:
        src = io.BytesIO(pattern * (size // mib))
        envelope.encrypt_stream(src, f, keys.service.public_key(), document_id=DOC_ID,
                                segment_size=mib)  # fmt: skip
        del src
    with stored.open("rb") as f:
        head = f.read(16 * 1024)
    old = parse_header(head).size
    served, url = server
    served.path = stored
    fake_function["answer"] = {
        "document_id": DOC_ID, "delivery": "sealed", "size": size,
        "recipient": {"fingerprint": _fingerprint(keys.reader), "suite": "xwing"},
        "header_base64": base64.b64encode(
            envelope.rewrap_header(head, keys.service, keys.reader.public_key())).decode(),
        "body": {"url": url, "offset": old, "length": stored.stat().st_size - old},
    }  # fmt: skip
    out, kept = tmp_path / "got.bin", tmp_path / "kept.pqf"
    tracemalloc.start()
    try:
        code, stdout, err = _retrieve(capsys, "-i", str(keys.reader_sec), "--out", str(out),
                                      "--keep-sealed", str(kept), "--json")  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 0, err
    expected = hashlib.sha256()
    for _ in range(size // mib):
        expected.update(pattern)
    assert json.loads(stdout)["sha256"] == expected.hexdigest()
    assert out.stat().st_size == size
    assert kept.stat().st_size == stored.stat().st_size  # same header length within a suite
    assert peak < 12 * mib, f"peak {peak / mib:.1f} MiB for a {size // mib} MiB document"


@pytest.mark.parametrize(("stored_suite", "reader_suite"), [
    (Suite.XWING, Suite.MLKEM768),  # a downgrade the reader's key was registered for
    (Suite.MLKEM1024, Suite.MLKEM1024),  # CNSA 2.0: HKDF-SHA384, 48-byte MAC
    (Suite.MLKEM768, Suite.XWING),
])  # fmt: skip
def test_a_cross_suite_header_has_its_own_length_and_the_body_its_offset(
    stored_suite: Suite, reader_suite: Suite, tmp_path: Path, server: tuple[Served, str],
    fake_function: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    served, url = server
    service, reader = generate(stored_suite), generate(reader_suite)
    sec = tmp_path / "keys" / "reader.sec"
    sec.parent.mkdir()
    keyfiles.write_secret_key(sec, reader)
    data = os.urandom(2 * SEGMENT + 9)
    stored = bytes(envelope.encrypt_bytes(data, service.public_key(), document_id=DOC_ID,
                                          segment_size=SEGMENT))  # fmt: skip
    old = parse_header(stored).size
    new_header = envelope.rewrap_header(stored, service, reader.public_key(),
                                        allow_downgrade=True)  # fmt: skip
    assert (len(new_header) != old) == (stored_suite is not reader_suite)
    served.blob = stored
    fake_function["answer"] = {
        "document_id": DOC_ID, "delivery": "sealed", "size": len(data),
        "recipient": {"fingerprint": _fingerprint(reader), "suite": reader_suite.value},
        "header_base64": base64.b64encode(new_header).decode(),
        "body": {"url": url, "offset": old, "length": len(stored) - old},
    }  # fmt: skip
    out, kept = tmp_path / "got.bin", tmp_path / "kept.pqf"
    code, _, err = _retrieve(capsys, "-i", str(sec), "--out", str(out), "--keep-sealed",
                             str(kept))  # fmt: skip
    assert code == 0, err
    assert out.read_bytes() == data
    assert kept.read_bytes() == new_header + stored[old:]
    assert envelope.read_header(kept.read_bytes()).suite is reader_suite


def test_sigterm_mid_body_leaves_neither_file(
    tmp_path: Path, keys: Keys, server: tuple[Served, str],
) -> None:  # fmt: skip
    """The body stalls halfway, SIGTERM lands while both temporary files are open: exit 143,
    and neither --out nor --keep-sealed (nor a temporary) is left."""
    import signal
    import time

    served, url = server
    data = os.urandom(256 * SEGMENT)
    served.blob, answer, _ = _stored_and_answer(data, keys, url)
    served.mode = "stall"
    out, kept = tmp_path / "got.bin", tmp_path / "kept.pqf"
    env = {**os.environ, "PQFILE_DEVSTACK_DIR": str(tmp_path / "no-stack")}
    env.pop("PQFILE_STACK", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(answer), "retrieve", DOC_ID,
         "-i", str(keys.reader_sec), "--out", str(out), "--keep-sealed", str(kept), *_FLAGS],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            partial = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
            if len(partial) == 2 and min(p.stat().st_size for p in partial) > 64 * SEGMENT:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the body never reached both temporary files")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        served.release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "pqfile: interrupted"
    assert _files(tmp_path) == []
