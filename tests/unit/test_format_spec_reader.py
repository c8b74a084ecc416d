"""A second PQF v1 reader written from docs/FORMAT.md alone, run against the vectors.

It shares no code with pqfile.format or pqfile.crypto except the key objects (to get pyca
HPKE keys from a seed): offsets, HKDF, MAC, nonces and segmenting are redone here from the
spec text, and so is the error model's order (§10 steps 1-7, ``spec_classify``), which
must give the implementation's outcome for every vector and every truncation. If the spec
and the implementation drift apart, this test fails.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pqfile.crypto import envelope
from pqfile.crypto.kem import SecretKey, Suite, secret_key_from_seed
from pqfile.errors import (
    DecryptionError,
    LimitExceededError,
    MalformedPackageError,
    NotAPackageError,
    PQFileError,
    UnsupportedSuiteError,
    UnsupportedVersionError,
    WrongKeyError,
)

VECTOR_DIR = Path(__file__).resolve().parents[2] / "tests" / "vectors"
ENC_SIZE = {0x647A: 1120, 0x0041: 1088, 0x0042: 1568}
KEM = {0x647A: hpke.KEM.MLKEM768_X25519, 0x0041: hpke.KEM.MLKEM768, 0x0042: hpke.KEM.MLKEM1024}
HPKE_KDF = {0x0042: hpke.KDF.HKDF_SHA384}  # FORMAT.md §4: the others use HKDF-SHA256
PACKAGE_HASH = {0x00: "sha256", 0x01: "sha384"}  # FORMAT.md §1 byte 55, the KDF id


def hkdf_expand(h: str, prk: bytes, info: bytes, n: int) -> bytes:
    out, block, counter = b"", b"", 1  # RFC 5869 HKDF-Expand
    while len(out) < n:
        block = hmac.new(prk, block + info + bytes([counter]), h).digest()
        out += block
        counter += 1
    return out[:n]


def spec_decrypt(package: bytes, suite_name: str, seed: bytes) -> bytes:
    magic, version, flags, suite_id, seg, ctx_len, doc_len = struct.unpack(
        ">4sBBHIHH", package[:16]
    )
    assert (magic, version, flags) == (b"\x89PQF", 1, 0)
    h = PACKAGE_HASH[package[55]]
    mac_size = hashlib.new(h).digest_size
    salt, prefix, commitment = package[16:48], package[48:55], package[56:88]
    core_end = 88 + doc_len + ctx_len
    core = package[:core_end]
    enc_size = ENC_SIZE[suite_id]
    key_id = package[core_end : core_end + 16]
    enc = package[core_end + 16 : core_end + 16 + enc_size]
    wrapped = package[core_end + 16 + enc_size : core_end + 16 + enc_size + 48]
    mac_at = core_end + 16 + enc_size + 48
    mac = package[mac_at : mac_at + mac_size]
    body = package[mac_at + mac_size :]

    identity = secret_key_from_seed(Suite.from_name(suite_name), seed)
    assert (
        key_id
        == hashlib.sha256(
            b"pqfile/key-id/v1" + suite_id.to_bytes(2, "big") + identity.public_key().raw
        ).digest()[:16]
    )
    info = b"pqfile/v1/wrap" + hashlib.new(h, core).digest() + key_id
    kdf = HPKE_KDF.get(suite_id, hpke.KDF.HKDF_SHA256)
    suite = hpke.Suite(KEM[suite_id], kdf, hpke.AEAD.AES_256_GCM)
    data_key = suite.decrypt(enc + wrapped, identity.to_pyca(), info=info)

    prk = hmac.new(salt, data_key, h).digest()
    assert hkdf_expand(h, prk, b"pqfile/v1/commit", 32) == commitment
    mac_key = hkdf_expand(h, prk, b"pqfile/v1/header-mac", mac_size)
    assert hmac.new(mac_key, package[:mac_at], h).digest() == mac
    aead = AESGCM(hkdf_expand(h, prk, b"pqfile/v1/body", 32))

    wire = seg + 16
    chunks = [body[i : i + wire] for i in range(0, len(body), wire)] or [b""]
    out = []
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        nonce = prefix + struct.pack(">IB", i, 1 if last else 0)
        out.append(aead.decrypt(nonce, chunk, None))
    return b"".join(out)


VALID = [
    p for p in sorted(VECTOR_DIR.glob("*.pqfv")) if p.read_bytes().startswith(b"expect: success")
]


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_spec_reader_decrypts_valid_vectors(path: Path) -> None:
    head, _, package = path.read_bytes().partition(b"\n\n")
    meta = dict(line.split(": ", 1) for line in head.decode().splitlines())
    plain = spec_decrypt(package, meta["suite"], bytes.fromhex(meta["identity"]))
    assert hashlib.sha256(plain).hexdigest() == meta["plaintext-sha256"]


def test_there_are_valid_vectors_for_both_suites() -> None:
    suites = {p.read_bytes().split(b"\n")[1] for p in VALID}
    assert suites == {b"suite: xwing", b"suite: mlkem768", b"suite: mlkem1024"}


# --- §10 steps 1-7, from the text ---------------------------------------------------------

SPEC_ENC_SIZE = {0x647A: 1120, 0x0041: 1088, 0x0042: 1568}  # §1 suite table / §4: known suites
MAC_SIZE = {0x00: 32, 0x01: 48}  # §7: the MAC length follows the KDF id (§1 byte 55)


def spec_context(ctx: bytes) -> str | None:
    """§3: the entries in turn; the first failure decides."""
    pos, count, previous = 0, 0, None
    while pos < len(ctx):
        if count == 64:
            return "limit_exceeded"  # a 65th entry
        klen = ctx[pos]
        if klen == 0 or pos + 1 + klen + 2 > len(ctx):
            return "malformed"
        key = ctx[pos + 1 : pos + 1 + klen]
        vlen = int.from_bytes(ctx[pos + 1 + klen : pos + 3 + klen], "big")
        if vlen > 2048:
            return "limit_exceeded"
        value_at = pos + 3 + klen
        if value_at + vlen > len(ctx):
            return "malformed"
        if previous is not None and key <= previous:
            return "malformed"
        try:
            key.decode("utf-8")
            ctx[value_at : value_at + vlen].decode("utf-8")
        except UnicodeDecodeError:
            return "malformed"
        previous, pos, count = key, value_at + vlen, count + 1
    return None


def spec_classify(package: bytes, identity: SecretKey) -> str | None:
    """§10 steps 1-7: the outcome name, or None when the reader goes on to the crypto."""
    if len(package) < 4 or package[:4] != b"\x89PQF":
        return "not_a_package"
    if len(package) < 5:
        return "malformed"  # truncated at the version
    if package[4] != 1:
        return "unsupported_version"
    if len(package) < 6 or package[5] != 0:
        return "malformed"  # truncated at the flags, or a flag set
    if len(package) < 8:
        return "malformed"
    suite_id = int.from_bytes(package[6:8], "big")
    if suite_id not in SPEC_ENC_SIZE:
        return "unsupported_suite"
    if len(package) < 88 or package[55] not in MAC_SIZE:
        return "malformed"
    if suite_id == 0x0042 and package[55] != 0x01:
        return "malformed"  # §1: mlkem1024 requires HKDF-SHA384
    seg, m, n = struct.unpack(">IHH", package[8:16])
    if not 1024 <= seg <= 16 * 1024 * 1024 or m > 8192 or n > 256:
        return "limit_exceeded"
    core_end = 88 + n + m
    if len(package) < core_end + 16 + SPEC_ENC_SIZE[suite_id] + 48 + MAC_SIZE[package[55]]:
        return "malformed"
    outcome = spec_context(package[88 + n : core_end])
    if outcome is not None:
        return outcome
    own_id = identity.suite.wire_id
    own_key_id = hashlib.sha256(
        b"pqfile/key-id/v1" + own_id.to_bytes(2, "big") + identity.public_key().raw
    ).digest()[:16]
    if suite_id != own_id or package[core_end : core_end + 16] != own_key_id:
        return "wrong_key"
    return None


OUTCOMES: dict[type[PQFileError], str] = {
    NotAPackageError: "not_a_package",
    UnsupportedVersionError: "unsupported_version",
    UnsupportedSuiteError: "unsupported_suite",
    LimitExceededError: "limit_exceeded",
    MalformedPackageError: "malformed",
    WrongKeyError: "wrong_key",
    DecryptionError: "decryption_error",
}


def code_outcome(package: bytes, identity: SecretKey) -> str:
    try:
        envelope.decrypt_bytes(package, identity)
    except PQFileError as exc:
        return OUTCOMES[type(exc)]
    return "success"


def _assert_agree(package: bytes, identity: SecretKey, what: str) -> None:
    spec, code = spec_classify(package, identity), code_outcome(package, identity)
    if spec is None:
        assert code in {"success", "decryption_error"}, (what, code)
    else:
        assert spec == code, (what, spec, code)


ALL = sorted(VECTOR_DIR.glob("*.pqfv"))


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_spec_error_order_agrees_with_the_code(path: Path) -> None:
    head, _, package = path.read_bytes().partition(b"\n\n")
    meta = dict(line.split(": ", 1) for line in head.decode().splitlines())
    identity = secret_key_from_seed(Suite.from_name(meta["suite"]), bytes.fromhex(meta["identity"]))
    _assert_agree(package, identity, path.stem)


@pytest.mark.parametrize("name", ["valid_context", "valid_mlkem768", "valid_empty"])
def test_spec_error_order_agrees_on_every_truncation_and_flag(name: str) -> None:
    head, _, package = (VECTOR_DIR / f"{name}.pqfv").read_bytes().partition(b"\n\n")
    meta = dict(line.split(": ", 1) for line in head.decode().splitlines())
    identity = secret_key_from_seed(Suite.from_name(meta["suite"]), bytes.fromhex(meta["identity"]))
    header_end = 1500  # beyond every header here; the body is sampled
    for cut in {*range(min(header_end, len(package))), *range(0, len(package) + 1, 13)}:
        _assert_agree(package[:cut], identity, f"cut {cut}")
    for version in (0, 1, 2):
        for flags in (0, 1, 0x80):
            for suite in (package[6:8], b"\x12\x34"):
                mutated = package[:4] + bytes((version, flags)) + suite + package[8:]
                for cut in (5, 6, 7, 8, 87, len(mutated)):
                    _assert_agree(mutated[:cut], identity, f"v{version} f{flags} {suite!r} {cut}")
