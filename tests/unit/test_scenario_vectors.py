"""Run every scenario vector in tests/vectors/ (docs/FORMAT.md section 13).

Each file names its expected outcome; a failed decrypt must leave no output file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import sys
from pathlib import Path

import pytest

from pqfile.crypto import envelope
from pqfile.crypto.kem import Suite, secret_key_from_seed
from pqfile.errors import (
    DecryptionError,
    DowngradeError,
    LimitExceededError,
    MalformedPackageError,
    NotAPackageError,
    PQFileError,
    ReencryptionRequiredError,
    UnsupportedSuiteError,
    UnsupportedVersionError,
    WrongKeyError,
)

ROOT = Path(__file__).resolve().parents[2]
VECTOR_DIR = ROOT / "tests" / "vectors"
VECTORS = sorted(VECTOR_DIR.glob("*.pqfv"))

EXPECTED: dict[str, type[PQFileError] | None] = {
    "success": None,
    "decryption_error": DecryptionError,
    "not_a_package": NotAPackageError,
    "unsupported_version": UnsupportedVersionError,
    "unsupported_suite": UnsupportedSuiteError,
    "malformed": MalformedPackageError,
    "limit_exceeded": LimitExceededError,
    "wrong_key": WrongKeyError,
}


def load(path: Path) -> tuple[dict[str, str], bytes]:
    raw = path.read_bytes()
    head, sep, package = raw.partition(b"\n\n")
    assert sep, f"{path.name}: no blank line after the header"
    meta = dict(line.split(": ", 1) for line in head.decode("ascii").splitlines())
    assert meta["expect"] in EXPECTED, meta["expect"]
    return meta, package


def check_outcome(meta: dict[str, str], exc: BaseException | None) -> None:
    expected = EXPECTED[meta["expect"]]
    if expected is None:
        assert exc is None, f"expected success, got {exc!r}"
        return
    assert exc is not None, f"expected {expected.__name__}, got success"
    assert isinstance(exc, expected), f"expected {expected.__name__}, got {exc!r}"
    if meta["expect"] == "malformed":
        assert not isinstance(exc, LimitExceededError)
    if expected is DecryptionError:
        assert str(exc) == str(DecryptionError())  # opaque: always the same message


def identity(meta: dict[str, str]):  # type: ignore[no-untyped-def]
    return secret_key_from_seed(Suite.from_name(meta["suite"]), bytes.fromhex(meta["identity"]))


def test_vectors_exist_for_every_outcome() -> None:
    seen = {load(p)[0]["expect"] for p in VECTORS}
    assert seen == set(EXPECTED)
    assert len(VECTORS) >= 60


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector_decrypt_to_path(path: Path, tmp_path: Path) -> None:
    meta, package = load(path)
    target = tmp_path / "plain.out"
    exc: BaseException | None = None
    try:
        envelope.decrypt_to_path(io.BytesIO(package), target, identity(meta))
    except PQFileError as e:
        exc = e
    check_outcome(meta, exc)
    if exc is None:
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        assert digest == meta["plaintext-sha256"]
        assert (target.stat().st_mode & 0o777) == 0o600
    else:
        assert list(tmp_path.iterdir()) == [], "a failed decrypt left a file behind"


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector_decrypt_bytes(path: Path) -> None:
    meta, package = load(path)
    exc: BaseException | None = None
    try:
        plain = envelope.decrypt_bytes(package, identity(meta))
    except PQFileError as e:
        exc = e
    check_outcome(meta, exc)
    if exc is None:
        assert hashlib.sha256(plain).hexdigest() == meta["plaintext-sha256"]


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector_header_only_errors_need_no_key(path: Path) -> None:
    """Outcomes before the key step are reported by read_header alone."""
    meta, package = load(path)
    keyless = {"not_a_package", "unsupported_version", "unsupported_suite", "malformed"}
    keyless.add("limit_exceeded")
    if meta["expect"] in keyless:
        with pytest.raises(EXPECTED[meta["expect"]]):  # type: ignore[arg-type]
            envelope.read_header(io.BytesIO(package))
    else:
        envelope.read_header(io.BytesIO(package))


def test_generator_reproduces_committed_vectors() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_vectors", ROOT / "scripts" / "gen_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_vectors"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["gen_vectors"]
    files, cache = module.generate(VECTOR_DIR / module.CACHE_NAME)
    assert sorted(files) == [p.name for p in VECTORS]
    for name, data in files.items():
        assert (VECTOR_DIR / name).read_bytes() == data, name
    assert (VECTOR_DIR / module.CACHE_NAME).read_text() == cache


REWRAP_EXPECTED: dict[str, type[PQFileError] | None] = {
    "success": None,
    "downgrade_refused": DowngradeError,
    "reencryption_required": ReencryptionRequiredError,
}
REWRAP_VECTORS = [p for p in VECTORS if b"\nrewrap-expect: " in p.read_bytes().split(b"\n\n")[0]]


def test_rewrap_vectors_cover_both_refusals() -> None:
    assert {load(p)[0]["rewrap-expect"] for p in REWRAP_VECTORS} == {
        "downgrade_refused",
        "reencryption_required",
    }


@pytest.mark.parametrize("path", REWRAP_VECTORS, ids=lambda p: p.stem)
def test_vector_rewrap_outcome(path: Path) -> None:
    """FORMAT.md §8 and §13: a rewrap of the package to ``rewrap-identity``'s public key."""
    meta, package = load(path)
    new = secret_key_from_seed(
        Suite.from_name(meta["rewrap-suite"]), bytes.fromhex(meta["rewrap-identity"])
    )
    expected = REWRAP_EXPECTED[meta["rewrap-expect"]]
    assert expected is not None
    out = io.BytesIO()
    with pytest.raises(expected):
        envelope.rewrap_stream(io.BytesIO(package), out, identity(meta), new.public_key())
    assert out.getvalue() == b""
    if expected is DowngradeError:  # explicitly allowed, it works and keeps the body
        envelope.rewrap_stream(
            io.BytesIO(package), out, identity(meta), new.public_key(), allow_downgrade=True
        )
        plain = envelope.decrypt_bytes(out.getvalue(), new)
    else:  # the way in is a re-encryption
        envelope.reencrypt_stream(io.BytesIO(package), out, identity(meta), new.public_key())
        plain = envelope.decrypt_bytes(out.getvalue(), new)
    assert hashlib.sha256(plain).hexdigest() == meta["plaintext-sha256"]
