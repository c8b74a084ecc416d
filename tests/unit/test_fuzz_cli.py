"""A bounded, seeded fuzz test of everything hostile input reaches (issue 11).

Mutated packages go through ``envelope.decrypt_bytes`` and through ``pqfile decrypt`` /
``inspect`` (``main()`` in-process); mutated key files through the PEM readers and the CLI;
random argument lists through ``main()``. Asserted for every case: only the documented
errors (FORMAT.md §10) or exit codes (0, 1, 2), a one-line ``pqfile: error:`` for exit 1,
no traceback, no mutated package accepted (unless the mutation left it byte-identical),
and nothing left in the output directory by a failed command.

Every case draws from its own ``random.Random(f"{SEED}/{kind}/{index}")``, so a failure
names the case and reproduces alone. ``PQFILE_FUZZ_SEED`` picks another seed and
``PQFILE_FUZZ_SCALE`` multiplies the case counts (CI runs the defaults: a few seconds).
"""

from __future__ import annotations

import base64
import io
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pqfile.cli import main
from pqfile.crypto import envelope
from pqfile.crypto import keyfiles as K
from pqfile.crypto.kem import PublicKey, SecretKey, Suite, generate
from pqfile.errors import (
    DecryptionError,
    KeyFormatError,
    MalformedPackageError,
    NotAPackageError,
    UnsupportedSuiteError,
    UnsupportedVersionError,
    WrongKeyError,
)
from pqfile.format.header import TAG_SIZE

SEED = int(os.environ.get("PQFILE_FUZZ_SEED", "20261129"))
SCALE = float(os.environ.get("PQFILE_FUZZ_SCALE", "1"))
SEGMENT = 1024
SUITES = (Suite.XWING, Suite.MLKEM768)  # the suites with key files on this branch

# FORMAT.md §10: what a reader may raise on a bad package.
PACKAGE_ERRORS = (
    NotAPackageError,
    UnsupportedVersionError,
    UnsupportedSuiteError,
    MalformedPackageError,  # LimitExceededError included
    WrongKeyError,
    DecryptionError,
)
KEY_ERRORS = (KeyFormatError, UnsupportedSuiteError)


def cases(n: int) -> int:
    return max(1, int(n * SCALE))


def rng_for(kind: str, index: int) -> random.Random:
    return random.Random(f"{SEED}/{kind}/{index}")


def where(kind: str, index: int) -> str:
    return f"fuzz case {kind}/{index} (PQFILE_FUZZ_SEED={SEED})"


# --- the material -------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    suite: Suite
    secret: SecretKey
    data: bytes
    header_size: int


@pytest.fixture(scope="module")
def material() -> dict[Suite, list[Package]]:
    fixed = random.Random(f"{SEED}/material")
    out: dict[Suite, list[Package]] = {}
    for suite in SUITES:
        secret = generate(suite)
        out[suite] = []
        for size in (0, 700, 3 * SEGMENT + 5):
            plain = fixed.randbytes(size)
            data = bytes(
                envelope.encrypt_bytes(
                    plain,
                    secret.public_key(),
                    context={"team": "sec", "k": "v" * fixed.randrange(5)},
                    document_id=fixed.randbytes(fixed.randrange(8)),
                    segment_size=SEGMENT,
                )
            )
            out[suite].append(Package(suite, secret, data, envelope.read_header(data).size))
    return out


# --- package mutations ----------------------------------------------------------------------

# Fixed-part fields (FORMAT.md §1): offset, size.
FIELDS = {
    "magic": (0, 4),
    "version": (4, 1),
    "flags": (5, 1),
    "suite": (6, 2),
    "segment_size": (8, 4),
    "context_length": (12, 2),
    "document_id_length": (14, 2),
    "salt": (16, 32),
    "nonce_prefix": (48, 7),
    "reserved": (55, 1),
    "commitment": (56, 32),
}
SUITE_IDS = (0x647A, 0x0041, 0x0042, 0x0000, 0x0020, 0xFFFF)


def _field_value(rng: random.Random, name: str, size: int, old: int) -> int:
    top = (1 << (8 * size)) - 1
    if name == "suite":
        return rng.choice(SUITE_IDS)
    return rng.choice([0, 1, top, old + 1, old - 1, rng.randrange(top + 1), old ^ 0x80]) & top


def mutate_package(rng: random.Random, p: Package, other: Package) -> tuple[bytes, str]:
    data = bytearray(p.data)
    body = len(data) - p.header_size
    how = rng.choice(
        [
            "flip",
            "flip_header",
            "flip_many",
            "truncate",
            "truncate_segment",
            "insert",
            "delete",
            "duplicate",
            "append",
            "field",
            "field",
            "swap_segments",
            "splice_header",
            "splice_stanza",
            "overwrite",
        ]
    )
    if how == "flip" or (how == "swap_segments" and body < 2 * (SEGMENT + TAG_SIZE)):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    elif how == "flip_header":
        i = rng.randrange(p.header_size)
        data[i] ^= 1 << rng.randrange(8)
    elif how == "flip_many":
        for _ in range(rng.randint(2, 16)):
            data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    elif how == "truncate":
        del data[rng.randrange(len(data)) :]
    elif how == "truncate_segment":
        cut = p.header_size + rng.randrange(body // (SEGMENT + TAG_SIZE) + 1) * (SEGMENT + TAG_SIZE)
        del data[cut:]
    elif how == "insert":
        i = rng.randrange(len(data) + 1)
        data[i:i] = rng.randbytes(rng.randint(1, 64))
    elif how == "delete":
        i = rng.randrange(len(data))
        del data[i : i + rng.randint(1, 64)]
    elif how == "duplicate":
        i = rng.randrange(len(data))
        data[i:i] = data[i : i + rng.randint(1, 2 * SEGMENT)]
    elif how == "append":
        data += rng.randbytes(rng.choice([1, TAG_SIZE, SEGMENT + TAG_SIZE]))
    elif how == "field":
        name = rng.choice(sorted(FIELDS))
        off, size = FIELDS[name]
        old = int.from_bytes(data[off : off + size], "big")
        data[off : off + size] = _field_value(rng, name, size, old).to_bytes(size, "big")
        how = f"field {name}"
    elif how == "swap_segments":
        w = SEGMENT + TAG_SIZE
        a = p.header_size
        data[a : a + 2 * w] = data[a + w : a + 2 * w] + data[a : a + w]
    elif how == "splice_header":  # another package's header (same key) on this body
        data[: p.header_size] = other.data[: other.header_size]
    elif how == "splice_stanza":  # the last stanza bytes and MAC from the other package
        n = rng.randint(1, 200)
        end = min(p.header_size, other.header_size)
        data[end - n : end] = other.data[end - n : end]
    else:
        i = rng.randrange(len(data))
        data[i : i + 32] = rng.randbytes(32)[: len(data) - i]
    return bytes(data), how


def _pick(rng: random.Random, material: dict[Suite, list[Package]]) -> tuple[Package, Package]:
    group = material[rng.choice(SUITES)]
    p = rng.choice(group)
    return p, rng.choice([q for q in group if q is not p])


def test_mutated_packages_never_decrypt(material: dict[Suite, list[Package]]) -> None:
    seen: dict[str, int] = {}
    for i in range(cases(3000)):
        rng = rng_for("package", i)
        p, other = _pick(rng, material)
        mutated, how = mutate_package(rng, p, other)
        identity = p.secret if rng.random() < 0.9 else material[Suite.XWING][0].secret
        try:
            envelope.decrypt_bytes(mutated, identity)
        except PACKAGE_ERRORS as exc:
            seen[type(exc).__name__] = seen.get(type(exc).__name__, 0) + 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{where('package', i)}: {how} raised {type(exc).__name__}: {exc}")
        assert mutated == p.data and identity == p.secret, (
            f"{where('package', i)}: {how} was accepted"
        )
    # the mutations reach every layer, not only the first check
    assert {"NotAPackageError", "MalformedPackageError", "DecryptionError"} <= set(seen), seen


# --- the CLI, in-process ----------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def _stream(errors: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors=errors, write_through=True)


def run_main(argv: list[str], stdin: bytes = b"") -> Outcome:
    """main() in-process with the standard streams of a UTF-8 terminal session: stdout
    strict (an unencodable character is a crash there), stderr backslashreplace."""
    out, err = _stream("strict"), _stream("backslashreplace")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        mp.setattr(sys, "stdout", out)
        mp.setattr(sys, "stderr", err)
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage errors (2), --help and --version (0)
            code = exc.code if isinstance(exc.code, int) else 1

    def text(stream: io.TextIOWrapper) -> str:
        raw = stream.buffer
        assert isinstance(raw, io.BytesIO)
        return raw.getvalue().decode("utf-8", "replace")  # stdout may carry a package

    return Outcome(code, text(out), text(err))


@pytest.fixture(autouse=True)
def _one_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the argument parser once (about 20 ms each): main() is called thousands of times."""
    import pqfile.cli

    parser = pqfile.cli.build_parser()
    monkeypatch.setattr(pqfile.cli, "build_parser", lambda: parser)


def check_outcome(o: Outcome, label: str, outdir: Path, before: set[str]) -> None:
    assert "Traceback" not in o.err and "Traceback" not in o.out, f"{label}: {o.err}"
    assert o.code in (0, 1, 2), f"{label}: exit {o.code}: {o.err}"
    if o.code == 1:
        assert o.err.startswith("pqfile: error: ") and o.err.count("\n") == 1, f"{label}: {o.err!r}"
    if o.code == 2:
        assert o.err, label
    now = {p.name for p in outdir.iterdir()}
    temps = [n for n in now if n.endswith((".partial", ".tmp"))]
    assert not temps, f"{label}: temporary files left: {temps}"
    if o.code != 0:
        assert now == before, f"{label}: a failed command left {sorted(now - before)}"


@pytest.fixture
def workdir(tmp_path: Path, material: dict[Suite, list[Package]]) -> Path:
    for suite in SUITES:
        secret = material[suite][0].secret
        K.write_secret_key(tmp_path / f"{suite.value}.sec", secret)
        K.write_public_key(tmp_path / f"{suite.value}.pub", secret.public_key())
    (tmp_path / "out").mkdir()
    return tmp_path


def _reset(outdir: Path, keep: set[str]) -> None:
    for path in outdir.iterdir():
        if path.name not in keep:
            path.unlink()


def test_mutated_packages_through_the_cli(
    material: dict[Suite, list[Package]],
    workdir: Path,
) -> None:
    outdir = workdir / "out"
    for i in range(cases(300)):
        rng = rng_for("cli-package", i)
        p, other = _pick(rng, material)
        mutated, how = mutate_package(rng, p, other)
        (workdir / "m.pqf").write_bytes(mutated)
        label = f"{where('cli-package', i)} ({how})"
        sec = str(workdir / f"{p.suite.value}.sec")
        if rng.random() < 0.8:
            argv = [
                "decrypt",
                "-i",
                sec,
                "--in",
                str(workdir / "m.pqf"),
                "--out",
                str(outdir / "o"),
            ]
            stdin = b""
        else:  # the stdout path spools and must print nothing on failure
            argv, stdin = ["decrypt", "-i", sec], mutated
        o = run_main(argv, stdin)
        check_outcome(o, label, outdir, set())
        if mutated != p.data:
            assert o.code == 1 and o.out == "", f"{label}: exit {o.code}"
        _reset(outdir, set())
        insp = run_main(["inspect", str(workdir / "m.pqf"), *rng.choice([[], ["--json"]])])
        check_outcome(insp, label + " inspect", outdir, set())
        assert insp.code in (0, 1), label


# --- key files --------------------------------------------------------------------------------


def mutate_pem(rng: random.Random, pem: bytes) -> tuple[bytes, str]:
    lines = pem.split(b"\n")
    der = bytearray(K._unpem(pem, pem.split(b"-----")[1][6:].decode()))
    how = rng.choice(
        [
            "flip",
            "truncate",
            "insert",
            "drop_line",
            "dup_line",
            "label",
            "spaces",
            "der_flip",
            "der_truncate",
            "der_extend",
            "der_length",
            "der_swap",
        ]
    )
    text = bytearray(pem)
    if how == "flip":
        text[rng.randrange(len(text))] ^= 1 << rng.randrange(8)
    elif how == "truncate":
        del text[rng.randrange(len(text)) :]
    elif how == "insert":
        i = rng.randrange(len(text) + 1)
        text[i:i] = rng.choice(
            [rng.randbytes(8), b"-----BEGIN X-----\n", b"\r\n", b"====", b"\x00"]
        )
    elif how in ("drop_line", "dup_line"):
        i = rng.randrange(len(lines))
        lines[i : i + 1] = [] if how == "drop_line" else [lines[i], lines[i]]
        text = bytearray(b"\n".join(lines))
    elif how == "label":
        text = bytearray(
            pem.replace(
                b"PUBLIC KEY" if b"PUBLIC" in pem else b"PRIVATE KEY",
                rng.choice([b"PRIVATE KEY", b"PUBLIC KEY", b"KEY", b""]),
                1,
            )
        )
    elif how == "spaces":
        text = bytearray(b"\n".join(b" \t" + line + b"  " for line in lines))
    else:
        if how == "der_flip":
            der[rng.randrange(len(der))] ^= 1 << rng.randrange(8)
        elif how == "der_truncate":
            del der[rng.randrange(len(der)) :]
        elif how == "der_extend":
            der += rng.randbytes(rng.randint(1, 40))
        elif how == "der_length":  # the length octets of one of the first few elements
            i = rng.choice([1, 2, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23])
            if i < len(der):
                der[i] = rng.choice([0x00, 0x7F, 0x80, 0x81, 0x82, 0x83, 0x84, 0xFF, der[i] ^ 1])
        else:
            i, j = sorted(rng.sample(range(len(der)), 2))
            der[i], der[j] = der[j], der[i]
        label = b"PUBLIC KEY" if b"PUBLIC" in pem else b"PRIVATE KEY"
        b64 = base64.encodebytes(bytes(der))
        text = bytearray(
            b"-----BEGIN " + label + b"-----\n" + b64 + b"-----END " + label + b"-----\n"
        )
    return bytes(text), how


@pytest.fixture(scope="module")
def key_pems(material: dict[Suite, list[Package]]) -> list[tuple[str, bytes, SecretKey]]:
    out = []
    for suite in SUITES:
        secret = material[suite][0].secret
        out.append(("public", K.public_key_to_pem(secret.public_key()), secret))
        out.append(("secret", K.secret_key_to_pem(secret), secret))
    return out


def test_mutated_key_files_load_or_fail_cleanly(
    key_pems: list[tuple[str, bytes, SecretKey]],
) -> None:
    loaders: dict[str, Callable[[bytes], PublicKey | SecretKey]] = {
        "public": K.public_key_from_pem,
        "secret": K.secret_key_from_pem,
    }
    for i in range(cases(1500)):
        rng = rng_for("keyfile", i)
        kind, pem, _ = rng.choice(key_pems)
        mutated, how = mutate_pem(rng, pem)
        load = loaders[kind] if rng.random() < 0.85 else loaders[rng.choice(sorted(loaders))]
        try:
            load(mutated)
        except KEY_ERRORS as exc:
            text = str(exc)
            assert "\n" not in text and len(text) < 300, f"{where('keyfile', i)}: {text!r}"
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{where('keyfile', i)} ({how}): {type(exc).__name__}: {exc}")


def test_mutated_key_files_through_the_cli(
    key_pems: list[tuple[str, bytes, SecretKey]],
    material: dict[Suite, list[Package]],
    workdir: Path,
) -> None:
    outdir = workdir / "out"
    (workdir / "plain").write_bytes(b"plaintext")
    for i in range(cases(200)):
        rng = rng_for("cli-key", i)
        kind, pem, secret = rng.choice(key_pems)
        mutated, how = mutate_pem(rng, pem)
        (workdir / "k.pem").write_bytes(mutated)
        label = f"{where('cli-key', i)} ({how})"
        if kind == "public":
            argv = [
                "encrypt",
                "-r",
                str(workdir / "k.pem"),
                "--in",
                str(workdir / "plain"),
                "--out",
                str(outdir / "o.pqf"),
            ]
            o = run_main(argv)
            check_outcome(o, label, outdir, set())
        else:
            package = material[secret.suite][1]
            (workdir / "p.pqf").write_bytes(package.data)
            argv = [
                "decrypt",
                "-i",
                str(workdir / "k.pem"),
                "--in",
                str(workdir / "p.pqf"),
                "--out",
                str(outdir / "o"),
            ]
            o = run_main(argv)
            check_outcome(o, label, outdir, set())
            # Exit 0 exactly when the mutated file still holds a key with the same public key
            # (for ML-KEM that may be another seed: z is used only for implicit rejection).
            try:
                same = K.secret_key_from_pem(mutated).public_key() == secret.public_key()
            except KEY_ERRORS:
                same = False
            assert (o.code == 0) == same, f"{label}: exit {o.code}, same public key: {same}"
        _reset(outdir, set())


# --- random argument lists ------------------------------------------------------------------


def _junk(rng: random.Random) -> str:
    """Text as argv delivers it: arbitrary bytes, undecodable ones as lone surrogates."""
    raw = rng.choice(
        [
            rng.randbytes(rng.randint(0, 12)),
            bytes(rng.choice(b"abc=-_ .\n\t\x1b/\xff\xc3") for _ in range(rng.randint(0, 12))),
            b"k=" + b"v" * rng.choice([0, 2048, 2049, 9000]),
            b"\xff" * rng.randint(1, 300),
        ]
    )
    return os.fsdecode(raw.replace(b"\x00", b""))


def _pair(rng: random.Random) -> str:
    word = rng.choice(["team", "sec", "k", "", "é", "a b", "\x1b[2J", "=", "k" * 256])
    return rng.choice([_junk(rng), f"{word}={_junk(rng)}", f"{word}={word}", "team=sec"])


def random_argv(rng: random.Random, w: Path) -> tuple[list[str], bytes]:
    out = w / "out"
    inputs = [w / "p.pqf", w / "plain", w / "xwing.pub", w / "empty", w, w / "missing", out]
    keys = [
        w / "xwing.pub",
        w / "xwing.sec",
        w / "mlkem768.pub",
        w / "mlkem768.sec",
        w / "p.pqf",
        w / "plain",
        w / "missing",
        w,
        Path("/dev/zero"),
        Path("/dev/null"),
    ]
    outputs = [
        out / "o",
        out / "existing",
        out / "subdir",
        out / "link",
        out / "dangling",
        out / "fifo",
        out / "missing_dir" / "o",
        out / os.fsdecode(b"\xff\n"),
    ]
    values: dict[str, Callable[[], str]] = {
        "--in": lambda: str(rng.choice(inputs)),
        "--out": lambda: str(rng.choice(outputs)),
        "-o": lambda: str(rng.choice(outputs)),
        "--public": lambda: str(rng.choice(outputs)),
        "--secret": lambda: str(rng.choice(outputs)),
        "-r": lambda: str(rng.choice(keys)),
        "--recipient": lambda: str(rng.choice(keys)),
        "-i": lambda: str(rng.choice(keys)),
        "--identity": lambda: str(rng.choice(keys)),
        "-c": lambda: _pair(rng),
        "--context": lambda: _pair(rng),
        "--expect-context": lambda: _pair(rng),
        "--document-id": lambda: _junk(rng),
        "--expect-document-id": lambda: _junk(rng),
        "--segment-size": lambda: rng.choice(
            ["1K", "1024", "0", "-5", "16M", "17M", "x", "1e3", "99999999999999999999", _junk(rng)]
        ),
        "--suite": lambda: rng.choice(["xwing", "mlkem768", "XWING", "rsa", _junk(rng)]),
    }
    # Mostly well-formed command lines with hostile values (they reach the command's code);
    # now and then a missing required option, a foreign option or a stray token.
    spec = {
        "keygen": (["--public", "--secret"], ["--suite", "--force", "--json"]),
        "encrypt": (
            ["-r"],
            [
                "--in",
                "--out",
                "-c",
                "-c",
                "--context",
                "--document-id",
                "--segment-size",
                "--force",
                "--json",
            ],
        ),
        "decrypt": (
            ["-i"],
            [
                "--in",
                "--out",
                "--expect-context",
                "--expect-context",
                "--expect-document-id",
                "--force",
                "--json",
            ],
        ),
        "inspect": ([], ["--json"]),
    }
    command = rng.choice([*spec, *spec, "bogus", _junk(rng)])
    required, optional = spec.get(command, ([], sorted(values)))
    chosen = [o for o in required if rng.random() < 0.95]
    chosen += [o for o in optional if rng.random() < 0.35]
    if rng.random() < 0.1:
        chosen.append(rng.choice([*values, "--help", "--version", "--force"]))
    rng.shuffle(chosen)
    argv = [command] if command else []
    if command == "inspect":
        argv.append(str(rng.choice(inputs)))
    for option in chosen:
        argv.append(option)
        if option in values:
            argv.append(values[option]())
    if rng.random() < 0.05:
        argv.insert(rng.randrange(len(argv) + 1), rng.choice([_junk(rng), "--", "-"]))
    stdin = rng.choice([b"", b"plain", (w / "p.pqf").read_bytes(), rng.randbytes(100)])
    return argv, stdin


def test_random_arguments(
    material: dict[Suite, list[Package]],
    workdir: Path,
) -> None:
    w = workdir
    (w / "p.pqf").write_bytes(material[Suite.XWING][1].data)
    (w / "plain").write_bytes(b"some plaintext")
    (w / "empty").write_bytes(b"")
    out = w / "out"
    (out / "subdir").mkdir()
    (out / "existing").write_bytes(b"keep")
    (out / "link").symlink_to(out / "existing")
    (out / "dangling").symlink_to(out / "nowhere")
    os.mkfifo(out / "fifo")  # never read: inputs do not include it
    keep = {p.name for p in out.iterdir()}
    codes: dict[int, int] = {}
    for i in range(cases(600)):
        rng = rng_for("argv", i)
        argv, stdin = random_argv(rng, w)
        label = f"{where('argv', i)} {argv!r}"
        o = run_main(argv, stdin)
        codes[o.code] = codes.get(o.code, 0) + 1
        check_outcome(o, label, out, keep)
        assert (out / "link").is_symlink() and (out / "subdir").is_dir(), label
        assert (out / "fifo").exists() and not (out / "fifo").is_file(), label
        _reset(out, keep)
        if (out / "existing").read_bytes() != b"keep":  # a --force run replaced it: fine
            (out / "existing").write_bytes(b"keep")
    # most command lines reach the command itself: refusals (1) and some successes (0)
    n = sum(codes.values())
    assert codes.get(1, 0) > n // 4 and codes.get(0, 0) > n // 50, codes
