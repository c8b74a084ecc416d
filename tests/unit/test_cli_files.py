"""`pqfile keygen | encrypt | decrypt | inspect` as a user runs them (subprocess)."""

from __future__ import annotations

import json
import os
import signal
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


# --- hostile input: non-UTF-8 arguments -----------------------------------------------------


def run_bytes(*args: bytes | str | Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Like run(), with arguments that need not be UTF-8 (argv is bytes on POSIX)."""
    argv = [os.fsencode(a) for a in (*PQFILE, *args)]
    return subprocess.run(argv, capture_output=True, cwd=cwd, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--context", b"team=\xff"), ("--context", b"\xfe\xff=1"), ("--expect-context", b"a=\xc3")],
)
def test_non_utf8_context_is_one_line(
    keys: Path, tmp_path: Path, option: str, value: bytes
) -> None:
    (tmp_path / "in").write_bytes(b"data")
    if option == "--context":
        proc = run_bytes("encrypt", "-r", keys / "xwing.pub", option, value, "--in", "in",
                         "--out", "o.pqf", cwd=tmp_path)  # fmt: skip
    else:
        run("encrypt", "-r", keys / "xwing.pub", "--in", "in", "--out", "p.pqf", cwd=tmp_path)
        proc = run_bytes("decrypt", "-i", keys / "xwing.sec", option, value, "--in", "p.pqf",
                         "--out", "o", cwd=tmp_path)  # fmt: skip
    err = one_line_error(proc)
    assert "not valid UTF-8" in err and option in err and "\\x" in err
    assert not (tmp_path / "o.pqf").exists() and not (tmp_path / "o").exists()


def test_non_utf8_document_id_is_opaque_bytes(keys: Path, tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"data")
    doc_id = b"doc-\xff\xfe\n"
    proc = run_bytes("encrypt", "-r", keys / "xwing.pub", "--document-id", doc_id, "--in", "in",
                     "--out", b"\xffout.pqf", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    human = proc.stdout.decode()
    assert "\\xffout.pqf" in human  # the undecodable file name is shown escaped
    package = (tmp_path / os.fsdecode(b"\xffout.pqf")).read_bytes()
    from pqfile.crypto.envelope import read_header

    assert read_header(package).document_id == doc_id
    info = json.loads(run_bytes("inspect", b"\xffout.pqf", "--json", cwd=tmp_path).stdout)
    assert info["document_id"] == "hex:" + doc_id.hex()
    human = run_bytes("inspect", b"\xffout.pqf", cwd=tmp_path).stdout.decode()
    assert "hex:" + doc_id.hex() in human
    # the expectation compares bytes: the same bytes decrypt, others do not
    proc = run_bytes("decrypt", "-i", keys / "xwing.sec", "--expect-document-id", doc_id,
                     "--in", b"\xffout.pqf", "--out", "ok", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ok").read_bytes() == b"data"
    proc = run_bytes("decrypt", "-i", keys / "xwing.sec", "--expect-document-id", b"doc-\xff",
                     "--in", b"\xffout.pqf", "--out", "bad", cwd=tmp_path)  # fmt: skip
    assert "not authentic" in one_line_error(proc)
    assert not (tmp_path / "bad").exists()


def test_inspect_escapes_control_characters_from_the_package(keys: Path, tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"data")
    proc = run("encrypt", "-r", keys / "xwing.pub", "-c", "note=\x1b[2Jhi\nthere", "--in", "in",
               "--out", "p.pqf", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    human = run("inspect", "p.pqf", cwd=tmp_path).stdout.decode()
    assert "\x1b" not in human and "note = \\x1b[2Jhi\\nthere" in human


# --- hostile input: --out that is not a regular file ----------------------------------------


def _leftovers(d: Path, expected: set[str]) -> set[str]:
    return {p.name for p in d.iterdir()} - expected


def _make_targets(d: Path) -> dict[str, Path]:
    import socket

    (d / "real").write_bytes(b"keep me")
    targets = {"dir": d / "adir", "fifo": d / "afifo", "symlink": d / "alink",
               "dangling": d / "dangling", "socket": d / "s.sock"}  # fmt: skip
    targets["dir"].mkdir()
    os.mkfifo(targets["fifo"])
    targets["symlink"].symlink_to(d / "real")
    targets["dangling"].symlink_to(d / "nowhere")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(targets["socket"]))
    sock.close()
    return targets


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_out_must_be_absent_or_a_regular_file(keys: Path, tmp_path: Path, force: bool) -> None:
    (tmp_path / "in").write_bytes(b"plaintext")
    run("encrypt", "-r", keys / "xwing.pub", "--in", "in", "--out", "p.pqf", cwd=tmp_path)
    work = tmp_path / "w"
    work.mkdir()
    targets = _make_targets(work)
    before = {p.name for p in work.iterdir()}
    extra = ["--force"] if force else []
    for kind, target in targets.items():
        for argv in (
            ["encrypt", "-r", keys / "xwing.pub", "--in", "in", "--out", target, *extra],
            ["decrypt", "-i", keys / "xwing.sec", "--in", "p.pqf", "--out", target, *extra],
            ["keygen", "--public", target, "--secret", work / "new.sec", *extra],
        ):
            err = one_line_error(run(*argv, cwd=tmp_path))
            assert "refusing" in err, (kind, err)
            if force:
                assert "regular files only" in err, (kind, err)
            assert _leftovers(work, before) == set(), (kind, argv[0])
    assert (work / "real").read_bytes() == b"keep me"
    assert targets["symlink"].is_symlink() and targets["dir"].is_dir()
    assert stat.S_ISFIFO(os.lstat(targets["fifo"]).st_mode)


def test_force_replaces_a_regular_file_only(keys: Path, tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"plaintext")
    run("encrypt", "-r", keys / "xwing.pub", "--in", "in", "--out", "p.pqf", cwd=tmp_path)
    (tmp_path / "out").write_bytes(b"old")
    proc = run("decrypt", "-i", keys / "xwing.sec", "--in", "p.pqf", "--out", "out", "--force",
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").read_bytes() == b"plaintext"
    assert _leftovers(tmp_path, {"in", "p.pqf", "out"}) == set()


def test_library_refuses_non_regular_targets_and_cleans_up(keys: Path, tmp_path: Path) -> None:
    from pqfile.crypto import envelope, keyfiles

    sk = keyfiles.load_secret_key(keys / "xwing.sec")
    package = bytes(envelope.encrypt_bytes(b"x" * 5000, sk.public_key(), segment_size=1024))
    targets = _make_targets(tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    import io

    for target in targets.values():
        for overwrite in (False, True):
            with pytest.raises(FileExistsError):
                envelope.decrypt_to_path(io.BytesIO(package), target, sk, overwrite=overwrite)
    # the target turns into a directory while the plaintext is written: still no partial file
    late = tmp_path / "late"

    class Source(io.BytesIO):
        def read(self, size: int = -1, /) -> bytes:
            if not late.exists():
                late.mkdir()
            return super().read(size)

    with pytest.raises(FileExistsError):
        envelope.decrypt_to_path(Source(package), late, sk, overwrite=True)
    assert _leftovers(tmp_path, before) == {"late"} and not any(late.iterdir())


# --- interrupted writes leave nothing ------------------------------------------------------


def _default_signals() -> None:
    """The child starts with SIGINT and SIGTERM at their defaults, as from a terminal. A test
    run started in the background of a non-interactive shell inherits SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler: the interrupt would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("command", ["decrypt", "encrypt"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_mid_write_leaves_no_temporary_file(
    keys: Path, tmp_path: Path, command: str, signum: int
) -> None:
    """The input is a pipe fed half the data, so the signal lands mid-write for sure (on a
    fast disk a whole large file could be written before a timed signal arrives); then the
    rest trickles in, as from a slow upload, while the command should be stopping."""
    import threading
    import time

    plain = os.urandom(4 * 1024 * 1024)
    if command == "decrypt":
        enc = run("encrypt", "-r", keys / "xwing.pub", "--segment-size", "64K", stdin=plain,
                  cwd=tmp_path)  # fmt: skip
        data, argv = enc.stdout, ["decrypt", "-i", keys / "xwing.sec"]
    else:
        data, argv = plain, ["encrypt", "-r", keys / "xwing.pub", "--segment-size", "64K"]
    proc = subprocess.Popen([*PQFILE, *map(str, argv), "--out", "out.bin"], cwd=tmp_path,
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_signals)  # fmt: skip
    assert proc.stdin is not None and proc.stderr is not None
    half = len(data) // 2
    proc.stdin.write(data[:half])
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    sizes = [0]
    while time.monotonic() < deadline:
        time.sleep(0.05)
        partial = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
        sizes.append(partial[0].stat().st_size if partial else 0)
        if sizes[-1] > 1 << 20 and sizes[-4:] == [sizes[-1]] * 4:
            break  # over 1 MiB on disk, and the command is waiting for more input
    assert sizes[-1] > 1 << 20, f"the write never started: {sizes[-5:]}"
    proc.send_signal(signum)

    def trickle() -> None:
        stdin = proc.stdin
        assert stdin is not None
        try:
            for i in range(half, len(data), 4096):
                stdin.write(data[i : i + 4096])
                stdin.flush()
                time.sleep(0.01)
            stdin.close()
        except (BrokenPipeError, ValueError):
            pass  # it stopped reading: what we want

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    rc = proc.wait(timeout=30)
    err = proc.stderr.read().decode()
    feeder.join(timeout=30)
    assert rc == 128 + signum, (rc, err)
    assert err == "pqfile: interrupted\n", err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_dev_zero_as_a_key_is_one_line(tmp_path: Path) -> None:
    err = one_line_error(run("encrypt", "-r", "/dev/zero", stdin=b"x", cwd=tmp_path))
    assert "larger than 64 KiB" in err
    err = one_line_error(run("decrypt", "-i", "/dev/zero", stdin=b"x", cwd=tmp_path))
    assert "larger than 64 KiB" in err
    err = one_line_error(run("encrypt", "-r", tmp_path, stdin=b"x", cwd=tmp_path))
    assert "directory" in err.lower()
