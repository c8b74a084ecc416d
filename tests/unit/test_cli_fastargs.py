"""`pqfile encrypt` / `decrypt` start-up (issue 15 target 2): the one-file forms are parsed
without argparse into exactly what argparse builds, and the command loads only the crypto
core (no argparse, dataclasses, hashlib, pathlib, pyca's OpenSSL backend, cipher or other
Python modules beyond those pyca's Rust code imports itself, and none of the service
modules), and the process's own command ends without interpreter finalization."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import pqfile
from pqfile.cli import _fastargs, build_parser, main
from pqfile.cli import files as cli_files
from pqfile.crypto import keyfiles
from pqfile.crypto.kem import generate

# Forms the fast parser takes: its namespace must equal argparse's.
ACCEPTED = [
    ["encrypt", "-r", "k.pub"],
    ["encrypt", "--recipient", "k.pub", "--in", "a", "--out", "b"],
    ["encrypt", "--recipient=k.pub", "--in=a", "--out=b", "--force", "--json"],
    ["encrypt", "-r", "k.pub", "-c", "a=1", "--context", "b=2", "-o", "x", "-f"],
    ["encrypt", "-r", "old.pub", "-r", "k.pub", "--document-id", "doc 1", "--in", "-"],
    ["encrypt", "-r", "k.pub", "--segment-size", "64k", "--out", "o"],
    ["encrypt", "-r", "k.pub", "--segment-size=4096", "--document-id="],
    ["encrypt", "--json", "-r", "k.pub", "--context", "k=-v"],
    ["decrypt", "-i", "k.sec"],
    ["decrypt", "--identity", "k.sec", "--in", "p", "--out", "q", "-f", "--json"],
    ["decrypt", "-i", "k.sec", "--expect-context", "a=1", "--expect-context=b=2"],
    ["decrypt", "-i", "k.sec", "--expect-document-id", "d", "-o", "out", "--force"],
]

# Forms left to argparse (help, errors, abbreviations, bundles, batch mode, odd values).
DEFERRED = [
    ["encrypt"],
    ["encrypt", "--help"],
    ["encrypt", "-h"],
    ["encrypt", "--rec", "k.pub"],
    ["encrypt", "-rk.pub"],
    ["encrypt", "-r", "k.pub", "-c=a=1"],
    ["encrypt", "-r", "k.pub", "-fo", "x"],
    ["encrypt", "-r", "k.pub", "--in"],
    ["encrypt", "-r", "k.pub", "--in", "-x"],
    ["encrypt", "-r", "k.pub", "--segment-size", "lots"],
    ["encrypt", "-r", "k.pub", "--json=yes"],
    ["encrypt", "-r", "k.pub", "--", "f"],
    ["encrypt", "-r", "k.pub", "f1", "f2"],
    ["encrypt", "-r", "k.pub", "--out-dir", "d"],
    ["encrypt", "-i", "k.sec"],
    ["decrypt", "-r", "k.pub"],
    ["decrypt", "--expect-context", "a=1"],
    ["keygen", "--public", "p", "--secret", "s"],
]


@pytest.mark.parametrize("argv", ACCEPTED, ids=" ".join)
def test_fast_parse_equals_argparse(argv: list[str]) -> None:
    fast = _fastargs.parse(argv)
    assert fast is not None
    assert vars(fast) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", DEFERRED, ids=" ".join)
def test_other_forms_are_left_to_argparse(argv: list[str]) -> None:
    assert _fastargs.parse(argv) is None


def test_fast_options_are_exactly_the_registered_ones() -> None:
    """A new option on encrypt/decrypt must be taught to the fast parser (or it would send
    every command that uses it to argparse, silently slower)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for command in ("encrypt", "decrypt"):
        sp = sub.choices[command]  # type: ignore[index]
        registered = {
            s for a in sp._actions for s in a.option_strings if s not in ("-h", "--help")
        }
        assert registered == set(_fastargs._SPECS[command])


def test_segment_size_spellings_match() -> None:
    for text in ("1024", "64k", "64K", "1m", "1MiB", "16mb"):
        fast = _fastargs.parse(["encrypt", "-r", "k", "--segment-size", text])
        assert fast is not None
        assert fast.segment_size == cli_files.parse_size(text)


def test_usage_errors_still_come_from_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["encrypt", "--segment-size", "lots", "-r", "k.pub"])
    assert exc.value.code == 2
    assert "argument --segment-size: not a size: 'lots'" in capsys.readouterr().err


# pyca's Python modules that pyca's own Rust code imports on this path: HPKE checks its key
# arguments against the ML-KEM and X25519 classes, Hash/HMAC/HKDF against HashAlgorithm
# (tests/unit/test_pyca_bindings.py pins that); no other one may load.
PYCA_OWN = (
    "cryptography.hazmat.primitives",
    "cryptography.hazmat.primitives._serialization",
    "cryptography.hazmat.primitives.asymmetric",
    "cryptography.hazmat.primitives.asymmetric.mlkem",
    "cryptography.hazmat.primitives.asymmetric.x25519",
    "cryptography.hazmat.primitives.hashes",
)

LEAN = (
    "import sys\n"
    "from pqfile.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "heavy = ('argparse', 'dataclasses', 'inspect', 'hashlib', 'hmac', 'threading', 'queue',\n"
    "         'tempfile', 'shutil', 'gettext', 'locale', 'pqfile.config', 'pqfile.cli.batch',\n"
    "         'pathlib', 'urllib.parse', 'ipaddress', 'fnmatch', 'signal',\n"
    "         'cryptography.hazmat.backends.openssl.backend')\n"
    "tops = ('boto3', 'botocore', 'pg8000', 'rich', 'aws_lambda_powertools')\n"
    f"pyca_own = {PYCA_OWN!r}\n"
    "bad = sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in tops\n"
    "             or m.startswith('cryptography.hazmat.primitives') and m not in pyca_own)\n"
    "print('LOADED:' + ','.join(bad), file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def _lean_run(args: list[str], cwd: Path) -> str:
    """The command in a child without ``site`` (``-S``): the development venv's editable
    install finder imports pathlib, re and urllib.parse into every interpreter, which
    would hide them here; the package and its dependencies come from PYTHONPATH instead,
    as from a wheel install."""
    package_root = str(Path(pqfile.__file__).parents[1])
    path = os.pathsep.join([package_root, sysconfig.get_paths()["purelib"]])
    proc = subprocess.run(
        [sys.executable, "-S", "-c", LEAN, *args], cwd=cwd, capture_output=True, text=True,
        timeout=60, env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.splitlines()[-1]


def test_encrypt_and_decrypt_load_only_the_crypto_core(tmp_path: Path) -> None:
    secret = generate()
    keyfiles.write_public_key(tmp_path / "k.pub", secret.public_key())
    keyfiles.write_secret_key(tmp_path / "k.sec", secret)
    data = os.urandom(300_000)
    (tmp_path / "p").write_bytes(data)
    enc = ["encrypt", "-r", "k.pub", "--in", "p", "--out", "p.pqf", "-c", "a=b"]
    assert _lean_run(enc, tmp_path) == "LOADED:"
    dec = ["decrypt", "-i", "k.sec", "--in", "p.pqf", "--out", "p.out", "--expect-context", "a=b"]
    assert _lean_run(dec, tmp_path) == "LOADED:"
    assert (tmp_path / "p.out").read_bytes() == data
    # --json output too (json is loaded only to print it).
    assert _lean_run([*dec[:-2], "--json", "-f"], tmp_path) == "LOADED:"


# Runs main() as the console script does (argv from sys.argv) or as a program calls it;
# os._exit is watched so the test sees how the process ends.
OWN = (
    "import atexit, gc, os, sys\n"
    "from pqfile.cli import main\n"
    "mode, args = sys.argv[1], sys.argv[2:]\n"
    "if 'atexit' in mode:\n"
    "    atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
    "real_exit = os._exit\n"
    "def watched_exit(rc):\n"
    "    print(f'os._exit {rc} {gc.isenabled()} {gc.get_freeze_count() > 0}', file=sys.stderr)\n"
    "    real_exit(rc)\n"
    "os._exit = watched_exit\n"
    "if mode.startswith('own'):\n"
    "    sys.argv = ['pqfile', *args]\n"
    "    rc = main()\n"
    "else:\n"
    "    rc = main(args)\n"
    "print(f'returned {rc} {gc.isenabled()} {gc.get_freeze_count() > 0}', file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def _own(mode: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", OWN, mode, *args], cwd=cwd,
                          capture_output=True, timeout=60)  # fmt: skip


def test_only_the_process_own_command_freezes_what_it_loaded_and_skips_finalization(
    tmp_path: Path,
) -> None:
    """From sys.argv (the console script) the loaded modules are frozen out of the cycle
    collector and the process ends by os._exit once the command is done (no module
    teardown); main(argv) called by a program leaves its collector alone and returns."""
    secret = generate()
    keyfiles.write_public_key(tmp_path / "k.pub", secret.public_key())
    (tmp_path / "p").write_bytes(b"x" * 10)
    args = ["encrypt", "-r", "k.pub", "--in", "p", "--out", "p.pqf", "-f"]
    for mode, last in (("own", "os._exit 0 True True"), ("called", "returned 0 True False")):
        proc = _own(mode, args, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.decode().splitlines()[-1] == last
    # A refused command ends the same way, with its one-line error and exit status 1.
    proc = _own("own", ["decrypt", "-i", "k.pub", "--in", "p.pqf", "--out", "q"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines() == [
        "pqfile: error: expected a PEM 'PRIVATE KEY' block, found 'PUBLIC KEY'",
        "os._exit 1 True True",
    ]
    assert not (tmp_path / "q").exists()


def test_skipping_finalization_loses_no_output_and_no_exit_handler(tmp_path: Path) -> None:
    """Everything written to a pipe arrives (the streams are flushed before os._exit), and
    with an atexit handler registered the interpreter finalizes as usual so it runs."""
    secret = generate()
    keyfiles.write_public_key(tmp_path / "k.pub", secret.public_key())
    keyfiles.write_secret_key(tmp_path / "k.sec", secret)
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "p").write_bytes(data)
    enc = _own("own", ["encrypt", "-r", "k.pub", "--in", "p", "--segment-size", "64k"], tmp_path)
    assert enc.returncode == 0, enc.stderr
    assert enc.stderr.decode().splitlines()[-1] == "os._exit 0 True True"
    (tmp_path / "p.pqf").write_bytes(enc.stdout)
    dec = _own("own", ["decrypt", "-i", "k.sec", "--in", "p.pqf"], tmp_path)
    assert dec.returncode == 0, dec.stderr
    assert dec.stdout == data
    kept = _own("own atexit", ["decrypt", "-i", "k.sec", "--in", "p.pqf", "-o", "q"], tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert kept.stderr.decode().splitlines()[-2:] == ["returned 0 True True", "atexit ran"]
    assert (tmp_path / "q").read_bytes() == data
