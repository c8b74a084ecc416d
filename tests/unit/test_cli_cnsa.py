"""The CNSA 2.0 suite from the command line: keygen, encrypt/decrypt/inspect, rewrap (with the
downgrade guard) and reencrypt, run as a user runs them (subprocess)."""

from __future__ import annotations

import json
import os
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
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    for suite in ("xwing", "mlkem768", "mlkem1024"):
        rc = main(["keygen", "--suite", suite, "--public", str(d / f"{suite}.pub"),
                   "--secret", str(d / f"{suite}.sec")])  # fmt: skip
        assert rc == 0
    return d


def test_keygen_mlkem1024_json(tmp_path: Path) -> None:
    proc = run("keygen", "--suite", "mlkem1024", "--public", "k.pub", "--secret", "k.sec",
               "--json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["suite"] == "mlkem1024"
    assert (tmp_path / "k.sec").stat().st_mode & 0o777 == 0o600
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "k.sec").read_bytes()


def test_encrypt_decrypt_inspect_mlkem1024(keys: Path, tmp_path: Path) -> None:
    data = os.urandom(70_000)
    (tmp_path / "in.bin").write_bytes(data)
    proc = run("encrypt", "-r", keys / "mlkem1024.pub", "--in", "in.bin", "--out", "p.pqf",
               "--segment-size", "16K", "--json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["suite"], summary["suite_id"]) == ("mlkem1024", "0x0042")
    assert (summary["kdf"], summary["kdf_id"]) == ("hkdf-sha384", "0x01")
    info = json.loads(run("inspect", "p.pqf", "--json", cwd=tmp_path).stdout)
    assert info["kdf"] == "hkdf-sha384" and info["plaintext_size"] == len(data)
    assert info["header_size"] == 88 + 16 + 1568 + 48 + 48
    human = run("inspect", "p.pqf", cwd=tmp_path).stdout.decode()
    assert "hkdf-sha384 (0x01)" in human and "mlkem1024 (0x0042)" in human
    proc = run("decrypt", "-i", keys / "mlkem1024.sec", "--in", "p.pqf", "--out", "o.bin",
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.bin").read_bytes() == data
    xw = json.loads(run("encrypt", "-r", keys / "xwing.pub", "--in", "in.bin", "--out", "x.pqf",
                        "--json", cwd=tmp_path).stdout)  # fmt: skip
    assert (xw["kdf"], xw["kdf_id"]) == ("hkdf-sha256", "0x00")


def test_rewrap_downgrade_refused_then_allowed(keys: Path, tmp_path: Path) -> None:
    data = os.urandom(5000)
    (tmp_path / "in.bin").write_bytes(data)
    run("encrypt", "-r", keys / "mlkem1024.pub", "--in", "in.bin", "--out", "p.pqf",
        cwd=tmp_path)  # fmt: skip
    err = one_line_error(run("rewrap", "-i", keys / "mlkem1024.sec", "-r", keys / "xwing.pub",
                             "--in", "p.pqf", "--out", "r.pqf", cwd=tmp_path))  # fmt: skip
    assert "downgrade" in err and "mlkem1024" in err and "xwing" in err
    assert sorted(os.listdir(tmp_path)) == ["in.bin", "p.pqf"]  # nothing left behind
    proc = run("rewrap", "-i", keys / "mlkem1024.sec", "-r", keys / "xwing.pub", "--in", "p.pqf",
               "--out", "r.pqf", "--allow-downgrade", "--json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["from_suite"], summary["suite"], summary["kdf"]) == (
        "mlkem1024",
        "xwing",
        "hkdf-sha384",
    )
    proc = run("decrypt", "-i", keys / "xwing.sec", "--in", "r.pqf", "--out", "o.bin",
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.bin").read_bytes() == data
    # the body is the same bytes
    old, new = (tmp_path / "p.pqf").read_bytes(), (tmp_path / "r.pqf").read_bytes()
    assert old[-5000:] == new[-5000:]


def test_sha256_package_into_mlkem1024_needs_reencrypt(keys: Path, tmp_path: Path) -> None:
    data = os.urandom(3000)
    (tmp_path / "in.bin").write_bytes(data)
    run("encrypt", "-r", keys / "xwing.pub", "--in", "in.bin", "--out", "p.pqf", cwd=tmp_path)
    err = one_line_error(run("rewrap", "-i", keys / "xwing.sec", "-r", keys / "mlkem1024.pub",
                             "--in", "p.pqf", "--out", "r.pqf", cwd=tmp_path))  # fmt: skip
    assert "re-encrypt" in err
    assert not (tmp_path / "r.pqf").exists()
    proc = run("reencrypt", "-i", keys / "xwing.sec", "-r", keys / "mlkem1024.pub",
               "--in", "p.pqf", "--out", "r.pqf", "--json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["suite"], summary["kdf_id"]) == ("mlkem1024", "0x01")
    # stdout form too (a pipe), then decrypt from stdin
    piped = run("reencrypt", "-i", keys / "xwing.sec", "-r", keys / "mlkem1024.pub",
                stdin=(tmp_path / "p.pqf").read_bytes(), cwd=tmp_path)  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    for pkg in ((tmp_path / "r.pqf").read_bytes(), piped.stdout):
        out = run("decrypt", "-i", keys / "mlkem1024.sec", stdin=pkg, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout == data


def test_reencrypt_of_a_tampered_package_leaves_nothing(keys: Path, tmp_path: Path) -> None:
    (tmp_path / "in.bin").write_bytes(os.urandom(4000))
    run("encrypt", "-r", keys / "mlkem768.pub", "--in", "in.bin", "--out", "p.pqf",
        "--segment-size", "1K", cwd=tmp_path)  # fmt: skip
    pkg = bytearray((tmp_path / "p.pqf").read_bytes())
    pkg[-20] ^= 1
    (tmp_path / "p.pqf").write_bytes(pkg)
    err = one_line_error(run("reencrypt", "-i", keys / "mlkem768.sec", "-r",
                             keys / "mlkem1024.pub", "--in", "p.pqf", "--out", "r.pqf",
                             cwd=tmp_path))  # fmt: skip
    assert "not authentic" in err
    assert sorted(os.listdir(tmp_path)) == ["in.bin", "p.pqf"]
    piped = run("reencrypt", "-i", keys / "mlkem768.sec", "-r", keys / "mlkem1024.pub",
                stdin=bytes(pkg), cwd=tmp_path)  # fmt: skip
    assert piped.returncode == 1 and piped.stdout == b""
