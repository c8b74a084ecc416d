"""`pqfile keygen | encrypt | decrypt | inspect` as a user runs them (subprocess)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pqfile.cli import main

PQFILE = [sys.executable, "-m", "pqfile"]


def run(*args: str | Path, stdin: bytes = b"", cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*PQFILE, *map(str, args)], input=stdin, capture_output=True, cwd=cwd, timeout=60
    )


def one_line_error(proc: subprocess.CompletedProcess[bytes]) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 1, (proc.returncode, err)
    assert err.count("\n") == 1 and err.startswith("pqfile: error: "), err
    return err


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    for suite in ("xwing", "mlkem768"):
        rc = main(["keygen", "--suite", suite, "--public", str(d / f"{suite}.pub"),
                   "--secret", str(d / f"{suite}.sec")])  # fmt: skip
        assert rc == 0
    return d


def test_keygen_writes_0600_secret_and_refuses_overwrite(tmp_path: Path) -> None:
    proc = run("keygen", "--public", "k.pub", "--secret", "k.sec", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["suite"] == "xwing" and len(info["key_id"]) == 32
    assert stat.S_IMODE(os.stat(tmp_path / "k.sec").st_mode) == 0o600
    assert (tmp_path / "k.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    before = (tmp_path / "k.sec").read_bytes()
    err = one_line_error(run("keygen", "--public", "x.pub", "--secret", "k.sec", cwd=tmp_path))
    assert "refusing to overwrite" in err and "--force" in err
    assert (tmp_path / "k.sec").read_bytes() == before
    assert not (tmp_path / "x.pub").exists()
    proc = run("keygen", "--public", "k.pub", "--secret", "k.sec", "--force", cwd=tmp_path)
    assert proc.returncode == 0
    assert (tmp_path / "k.sec").read_bytes() != before
    assert stat.S_IMODE(os.stat(tmp_path / "k.sec").st_mode) == 0o600


@pytest.mark.parametrize("suite", ["xwing", "mlkem768"])
def test_files_round_trip(keys: Path, tmp_path: Path, suite: str) -> None:
    data = os.urandom(200_000)
    (tmp_path / "in.bin").write_bytes(data)
    proc = run("encrypt", "-r", keys / f"{suite}.pub", "--in", "in.bin", "--out", "in.pqf",
               "-c", "team=sec", "--segment-size", "4K", "--json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["plaintext_size"] == len(data)
    assert summary["package_size"] == (tmp_path / "in.pqf").stat().st_size
    proc = run("decrypt", "-i", keys / f"{suite}.sec", "--in", "in.pqf", "--out", "out.bin",
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.bin").read_bytes() == data
    assert proc.stderr == b""


def test_stdin_stdout_pipeline(keys: Path, tmp_path: Path) -> None:
    data = os.urandom(50_000)
    enc = run("encrypt", "-r", keys / "xwing.pub", stdin=data, cwd=tmp_path)
    assert enc.returncode == 0 and enc.stderr == b""
    dec = run("decrypt", "-i", keys / "xwing.sec", stdin=enc.stdout, cwd=tmp_path)
    assert dec.returncode == 0 and dec.stdout == data and dec.stderr == b""


def test_failed_decrypt_leaves_nothing(keys: Path, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    enc = run("encrypt", "-r", keys / "xwing.pub", "--segment-size", "1024", stdin=data,
              cwd=tmp_path)  # fmt: skip
    damaged = bytearray(enc.stdout)
    damaged[-1] ^= 1
    (tmp_path / "bad.pqf").write_bytes(damaged)
    proc = run("decrypt", "-i", keys / "xwing.sec", "--in", "bad.pqf", "--out", "o.bin",
               cwd=tmp_path)  # fmt: skip
    assert "not authentic" in one_line_error(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pqf"]
    # to stdout: nothing at all is written, although all but the last segment verify
    proc = run("decrypt", "-i", keys / "xwing.sec", stdin=bytes(damaged), cwd=tmp_path)
    one_line_error(proc)
    assert proc.stdout == b""
    (tmp_path / "trunc.pqf").write_bytes(enc.stdout[:-2000])
    proc = run("decrypt", "-i", keys / "xwing.sec", "--in", "trunc.pqf", "--out", "o.bin",
               cwd=tmp_path)  # fmt: skip
    one_line_error(proc)
    assert not (tmp_path / "o.bin").exists()


def test_distinct_errors(keys: Path, tmp_path: Path) -> None:
    enc = run("encrypt", "-r", keys / "xwing.pub", stdin=b"secret", cwd=tmp_path)
    (tmp_path / "p.pqf").write_bytes(enc.stdout)
    (tmp_path / "text.txt").write_bytes(b"hello\n")
    err = one_line_error(run("decrypt", "-i", keys / "mlkem768.sec", "--in", "p.pqf",
                             "--out", "o", cwd=tmp_path))  # fmt: skip
    assert "this package is for key id" in err
    err = one_line_error(run("decrypt", "-i", keys / "xwing.sec", "--in", "text.txt",
                             "--out", "o", cwd=tmp_path))  # fmt: skip
    assert "not a PQF package" in err
    v2 = bytearray(enc.stdout)
    v2[4] = 2
    (tmp_path / "v2.pqf").write_bytes(v2)
    assert "version" in one_line_error(run("inspect", "v2.pqf", cwd=tmp_path))
    err = one_line_error(run("encrypt", "-r", keys / "xwing.sec", stdin=b"x", cwd=tmp_path))
    assert "PUBLIC KEY" in err
    err = one_line_error(run("decrypt", "-i", "missing.sec", stdin=b"x", cwd=tmp_path))
    assert "missing.sec" in err
    err = one_line_error(run("encrypt", "-r", keys / "xwing.pub", "-c", "novalue", stdin=b"",
                             cwd=tmp_path))  # fmt: skip
    assert "KEY=VALUE" in err
    assert not (tmp_path / "o").exists()


def test_refuses_to_overwrite_output(keys: Path, tmp_path: Path) -> None:
    (tmp_path / "in.bin").write_bytes(b"data")
    (tmp_path / "out.pqf").write_bytes(b"keep me")
    err = one_line_error(run("encrypt", "-r", keys / "xwing.pub", "--in", "in.bin",
                             "--out", "out.pqf", cwd=tmp_path))  # fmt: skip
    assert "--force" in err
    assert (tmp_path / "out.pqf").read_bytes() == b"keep me"
    proc = run("encrypt", "-r", keys / "xwing.pub", "--in", "in.bin", "--out", "out.pqf",
               "--force", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0
    assert (tmp_path / "out.pqf").read_bytes()[:4] == b"\x89PQF"


def test_inspect_human_and_json(keys: Path, tmp_path: Path) -> None:
    (tmp_path / "in.bin").write_bytes(b"z" * 5000)
    run("encrypt", "-r", keys / "mlkem768.pub", "--in", "in.bin", "--out", "p.pqf",
        "-c", "b=2", "-c", "a=1", "--document-id", "doc-7", "--segment-size", "1024",
        cwd=tmp_path)  # fmt: skip
    proc = run("inspect", "p.pqf", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    key_id = json.loads(run("inspect", "p.pqf", "--json", cwd=tmp_path).stdout)["key_id"]
    assert info == {
        "format": "PQF",
        "version": 1,
        "suite": "mlkem768",
        "suite_id": "0x0041",
        "kdf": "hkdf-sha256",
        "kdf_id": "0x00",
        "key_id": key_id,
        "document_id": "doc-7",
        "context": {"a": "1", "b": "2"},
        "segment_size": 1024,
        "header_size": info["header_size"],
        "package_size": (tmp_path / "p.pqf").stat().st_size,
        "plaintext_size": 5000,
        "segments": 5,
    }
    human = run("inspect", "p.pqf", cwd=tmp_path).stdout.decode()
    assert "mlkem768" in human and key_id in human and "a = 1" in human
    assert "5000 bytes" in human


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    proc = run("encrypt", cwd=tmp_path)
    assert proc.returncode == 2
    proc = run("keygen", "--suite", "rsa", "--public", "a", "--secret", "b", cwd=tmp_path)
    assert proc.returncode == 2


def test_progress_is_silent_when_not_a_terminal() -> None:
    import io

    from pqfile.cli import _output

    class FakeTty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not _output.progress_wanted(10**12, stream=io.StringIO())
    assert _output.progress_wanted(10**12, stream=FakeTty())
    assert not _output.progress_wanted(1000, stream=FakeTty())  # small inputs: no bar
    assert _output.progress_wanted(None, stream=FakeTty())  # unknown size (a pipe)
    with _output.progress_bar(10**12, "x") as advance:  # pytest's stderr is not a tty
        assert advance is None
    assert _output.human_size(1536) == "1.5 KiB (1536 bytes)"
