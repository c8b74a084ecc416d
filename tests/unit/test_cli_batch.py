"""Batch mode: `pqfile encrypt|decrypt --out-dir DIR FILE...` (cli/batch.py), as a user runs
it (subprocess): every output atomic, a bad file does not lose the others, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pqfile.cli import batch, main

PQFILE = [sys.executable, "-m", "pqfile"]


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PQFILE, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    for name in ("k", "other"):
        rc = main(
            ["keygen", "--public", str(d / f"{name}.pub"), "--secret", str(d / f"{name}.sec")]
        )
        assert rc == 0
    return d


def _inputs(tmp_path: Path, count: int) -> list[Path]:
    src = tmp_path / "in"
    src.mkdir()
    files = []
    for i in range(count):
        path = src / f"doc{i:03d}.bin"
        path.write_bytes(os.urandom(1000 + 997 * i))
        files.append(path)
    return files


def test_batch_round_trip_on_a_process_pool(keys: Path, tmp_path: Path) -> None:
    # 40 files: more than one chunk, so the pool path (not the inline one) runs.
    files = _inputs(tmp_path, 40)
    (tmp_path / "enc").mkdir()
    (tmp_path / "dec").mkdir()
    proc = run("encrypt", "-r", keys / "k.pub", "--out-dir", tmp_path / "enc", *files,
               "--json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["succeeded"] == 40 and summary["failed"] == 0
    assert [r["input"] for r in summary["files"]] == [str(f) for f in files]
    packages = sorted((tmp_path / "enc").iterdir())
    assert [p.name for p in packages] == [f.name + ".pqf" for f in files]
    proc = run("decrypt", "-i", keys / "k.sec", "--out-dir", tmp_path / "dec", *packages,
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "decrypted 40 of 40 files" in proc.stdout
    for f in files:
        assert (tmp_path / "dec" / f.name).read_bytes() == f.read_bytes()
    assert all(not p.name.startswith(".") for p in (tmp_path / "dec").iterdir())


def test_batch_partial_failure_keeps_the_others_and_exits_1(keys: Path, tmp_path: Path) -> None:
    files = _inputs(tmp_path, 20)
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    enc.mkdir()
    dec.mkdir()
    assert (
        run("encrypt", "-r", keys / "k.pub", "--out-dir", enc, *files, cwd=tmp_path).returncode == 0
    )
    packages = sorted(enc.iterdir())
    # One tampered package, one for another key, one missing input, one existing output.
    tampered = bytearray(packages[3].read_bytes())
    tampered[-5] ^= 1
    packages[3].write_bytes(tampered)
    foreign = tmp_path / "foreign.bin.pqf"
    assert main(["encrypt", "-r", str(keys / "other.pub"), "--in", str(files[0]),
                 "--out", str(foreign)]) == 0  # fmt: skip
    (dec / files[5].name).write_bytes(b"keep me")
    args = [*packages, foreign, tmp_path / "missing.pqf"]
    proc = run("decrypt", "-i", keys / "k.sec", "--out-dir", dec, *args, "--json", cwd=tmp_path)
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    failed = {Path(r["input"]).name: r["error"] for r in summary["files"] if not r["ok"]}
    assert set(failed) == {packages[3].name, packages[5].name, "foreign.bin.pqf", "missing.pqf"}
    assert "refusing to overwrite" in failed[packages[5].name]
    assert summary["succeeded"] == 18 and summary["failed"] == 4
    # Nothing of the failed files reached DIR (no temporary files either), the others did.
    assert (dec / files[5].name).read_bytes() == b"keep me"
    assert not (dec / files[3].name).exists() and not (dec / "foreign.bin").exists()
    assert sorted(p.name for p in dec.iterdir()) == sorted(
        f.name for i, f in enumerate(files) if i != 3
    )
    for i, f in enumerate(files):
        if i not in (3, 5):
            assert (dec / f.name).read_bytes() == f.read_bytes()
    # Human output: one line per failure on stderr, the summary on stdout.
    for p in dec.iterdir():
        if p.name != files[5].name:
            p.unlink()
    proc = run("decrypt", "-i", keys / "k.sec", "--out-dir", dec, *args, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 4 and "Traceback" not in proc.stderr
    assert all(line.startswith("pqfile: error: ") for line in proc.stderr.splitlines())
    assert "decrypted 18 of 22 files" in proc.stdout and "(4 failed)" in proc.stdout


def test_batch_refuses_duplicate_output_names_and_bad_usage(keys: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "same").write_bytes(b"one")
    (b / "same").write_bytes(b"two")
    out = tmp_path / "out"
    out.mkdir()
    proc = run("encrypt", "-r", keys / "k.pub", "--out-dir", out, a / "same", b / "same",
               "--json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert summary["succeeded"] == 1
    assert "same output name" in summary["files"][-1]["error"]
    assert [p.name for p in out.iterdir()] == ["same.pqf"]
    for argv, message in (
        (["encrypt", "-r", keys / "k.pub", a / "same"], "need --out-dir"),
        (["encrypt", "-r", keys / "k.pub", "--out-dir", tmp_path / "nope", a / "same"],
         "is not a directory"),
        (["encrypt", "-r", keys / "k.pub", "--out-dir", out, "--out", "x", a / "same"],
         "--in and --out are for one file"),
        (["decrypt", "-i", tmp_path / "no.sec", "--out-dir", out, a / "same"], "no.sec"),
    ):  # fmt: skip
        proc = run(*argv, cwd=tmp_path)
        assert proc.returncode == 1, (argv, proc.stderr)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_output_names() -> None:
    assert batch.output_name("encrypt", "/x/report.pdf") == "report.pdf.pqf"
    assert batch.output_name("decrypt", "/x/report.pdf.pqf") == "report.pdf"
    assert batch.output_name("decrypt", "/x/report.bin") == "report.bin.decrypted"
    assert batch.output_name("decrypt", ".pqf") == ".pqf.decrypted"


def test_file_commands_import_no_service_modules(keys: Path, tmp_path: Path) -> None:
    """`pqfile encrypt` / `decrypt` load only the crypto core and cli.files: no boto3,
    pg8000, rich, the service commands or the write-behind thread's queue for one segment."""
    (tmp_path / "p").write_bytes(os.urandom(5000))
    code = (
        "import sys\n"
        "from pqfile.cli import main\n"
        f"assert main(['encrypt', '-r', {str(keys / 'k.pub')!r}, '--in', {str(tmp_path / 'p')!r},"
        f" '--out', {str(tmp_path / 'p.pqf')!r}]) == 0\n"
        f"assert main(['decrypt', '-i', {str(keys / 'k.sec')!r},"
        f" '--in', {str(tmp_path / 'p.pqf')!r},"
        f" '--out', {str(tmp_path / 'p.out')!r}]) == 0\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'pg8000', 'rich', 'aws_lambda_powertools')"
        " or m in ('pqfile.cli.keys', 'pqfile.cli.upload', 'pqfile.config', 'tempfile', 'queue')]\n"
        "print('LOADED:' + ','.join(sorted(bad)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "LOADED:"
    assert (tmp_path / "p.out").read_bytes() == (tmp_path / "p").read_bytes()
    # The full command list still answers --help.
    proc = run("--help", cwd=tmp_path)
    assert proc.returncode == 0 and "upload" in proc.stdout and "encrypt" in proc.stdout
