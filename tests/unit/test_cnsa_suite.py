"""The CNSA 2.0 suite in the format and the core (docs/FORMAT.md §1, §4, §5, §7, §8, §9).

- header byte 55 is the KDF id; the MAC length (32/48) and so the body offset follow it;
- the key schedule, header MAC and HPKE ``info`` use the package's hash, recomputed here
  from RFC 5869 / RFC 2104 with hashlib only;
- rewrap keeps the body and its KDF, refuses a SHA-256 package into mlkem1024 and any
  downgrade unless allowed; reencrypt_stream moves a package under a fresh data key.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os

import pytest

from pqfile.crypto import envelope, stream
from pqfile.crypto.kem import SecretKey, Suite, generate
from pqfile.crypto.keyschedule import Kdf
from pqfile.errors import (
    DecryptionError,
    DowngradeError,
    MalformedPackageError,
    ReencryptionRequiredError,
    RewrapRefusedError,
    WrongKeyError,
)
from pqfile.format import header as H

SEG = 1024
KDF_BYTE = 55


@pytest.fixture(scope="module")
def cnsa_key() -> SecretKey:
    return generate(Suite.MLKEM1024)


def _pkg(
    key: SecretKey,
    data: bytes = b"x" * 3000,
    *,
    document_id: str | bytes | None = None,
    context: dict[str, str] | None = None,
) -> bytes:
    return bytes(
        envelope.encrypt_bytes(
            data, key.public_key(), segment_size=SEG, document_id=document_id, context=context
        )
    )


# --- header byte 55 and the MAC length -----------------------------------------------------


@pytest.mark.parametrize(
    ("suite", "kdf_id", "mac"),
    [(Suite.XWING, 0x00, 32), (Suite.MLKEM768, 0x00, 32), (Suite.MLKEM1024, 0x01, 48)],
    ids=lambda v: getattr(v, "value", str(v)),
)
def test_encryption_writes_the_suites_kdf(suite: Suite, kdf_id: int, mac: int) -> None:
    key = generate(suite)
    pkg = _pkg(key, document_id="d", context={"a": "b"})
    assert pkg[KDF_BYTE] == kdf_id
    hdr = H.parse_header(pkg)
    assert hdr.kdf is Kdf(kdf_id) and len(hdr.mac) == mac
    assert hdr.size == 88 + 1 + len(hdr.context_bytes) + H.stanza_size(suite) + mac
    assert H.header_size(pkg[: H.FIXED_SIZE]) == hdr.size
    assert hdr.to_bytes() == pkg[: hdr.size]
    assert envelope.decrypt_bytes(pkg, key) == b"x" * 3000
    summary = envelope.describe(hdr)
    assert summary["kdf"] == Kdf(kdf_id).label and summary["kdf_id"] == f"0x{kdf_id:02x}"


def test_max_header_size_follows_the_largest_stanza_and_mac() -> None:
    assert H.stanza_size(Suite.MLKEM1024) == 16 + 1568 + 48
    assert H.MAX_HEADER_SIZE == 88 + 256 + 8192 + 1632 + 48


@pytest.mark.parametrize("kdf_id", [0x02, 0x10, 0x80, 0xFF])
@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.value)
def test_unknown_kdf_id_is_malformed_before_any_crypto(suite: Suite, kdf_id: int) -> None:
    pkg = bytearray(_pkg(generate(suite)))
    pkg[KDF_BYTE] = kdf_id
    msg = f"unknown KDF id 0x{kdf_id:02x}"
    with pytest.raises(MalformedPackageError, match=msg):
        H.header_size(bytes(pkg[: H.FIXED_SIZE]))
    with pytest.raises(MalformedPackageError, match=msg):
        envelope.read_header(io.BytesIO(bytes(pkg)))
    with pytest.raises(MalformedPackageError, match=msg):
        envelope.decrypt_bytes(pkg, generate(suite))  # no key needed to refuse it


def test_mlkem1024_with_sha256_is_malformed(cnsa_key: SecretKey) -> None:
    pkg = bytearray(_pkg(cnsa_key))
    pkg[KDF_BYTE] = 0x00
    with pytest.raises(MalformedPackageError, match="requires KDF id 0x01"):
        envelope.decrypt_bytes(pkg, cnsa_key)


def test_kdf_byte_flipped_on_a_sha256_package_fails_opaquely() -> None:
    key = generate(Suite.XWING)
    pkg = bytearray(_pkg(key))
    pkg[KDF_BYTE] = 0x01  # now claims a 48-byte MAC: offsets shift, info hash changes
    with pytest.raises(DecryptionError):
        envelope.decrypt_bytes(pkg, key)
    with pytest.raises(DecryptionError):
        envelope.decrypt_stream(io.BytesIO(bytes(pkg)), io.BytesIO(), key)


@pytest.mark.parametrize("offset", [1, 16, 47, 48])
def test_every_byte_of_the_48_byte_mac_is_checked(cnsa_key: SecretKey, offset: int) -> None:
    pkg = bytearray(_pkg(cnsa_key))
    size = H.parse_header(pkg).size
    pkg[size - offset] ^= 0x01
    with pytest.raises(DecryptionError):
        envelope.decrypt_bytes(pkg, cnsa_key)


def test_header_check_refuses_a_32_byte_mac_for_sha384(cnsa_key: SecretKey) -> None:
    hdr = H.parse_header(_pkg(cnsa_key))
    with pytest.raises(ValueError, match="48 bytes"):
        hdr.with_mac(hdr.mac[:32]).check()


# --- the key schedule recomputed from the RFCs ------------------------------------------------


def _hkdf_expand(h: str, prk: bytes, info: bytes, n: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < n:
        block = hmac.new(prk, block + info + bytes([counter]), h).digest()
        out += block
        counter += 1
    return out[:n]


def test_sha384_key_schedule_mac_and_info_match_the_spec(cnsa_key: SecretKey) -> None:
    data = os.urandom(2 * SEG + 5)
    pkg = _pkg(cnsa_key, data, document_id="doc", context={"k": "v"})
    hdr = H.parse_header(pkg)
    data_key, keys = envelope.open_header(hdr, cnsa_key)
    prk = hmac.new(hdr.salt, data_key, "sha384").digest()  # RFC 5869 Extract, SHA-384
    assert len(prk) == 48
    body_key = _hkdf_expand("sha384", prk, b"pqfile/v1/body", 32)
    commit = _hkdf_expand("sha384", prk, b"pqfile/v1/commit", 32)
    mac_key = _hkdf_expand("sha384", prk, b"pqfile/v1/header-mac", 48)
    assert (keys.body_key, keys.commitment, keys.mac_key) == (body_key, commit, mac_key)
    assert hdr.commitment == commit
    assert hdr.mac == hmac.new(mac_key, pkg[: hdr.size - 48], "sha384").digest()
    info = b"pqfile/v1/wrap" + hashlib.sha384(hdr.core_bytes()).digest() + hdr.key_id_bytes
    assert len(info) == 78
    from pqfile.crypto.wrap import hpke_info, hpke_unwrap

    assert hpke_info(hdr.core_bytes(), hdr.key_id_bytes, hdr.kdf) == info
    assert hpke_unwrap(hdr.enc, hdr.wrapped_key, cnsa_key, info) == data_key
    # the SHA-256 info (62 bytes) does not open it: the info hash follows the package KDF
    info256 = b"pqfile/v1/wrap" + hashlib.sha256(hdr.core_bytes()).digest() + hdr.key_id_bytes
    with pytest.raises(DecryptionError):
        hpke_unwrap(hdr.enc, hdr.wrapped_key, cnsa_key, info256)
    # and the key id stays SHA-256 based
    pub = cnsa_key.public_key()
    assert (
        pub.key_id_bytes
        == hashlib.sha256(b"pqfile/key-id/v1" + b"\x00\x42" + pub.raw).digest()[:16]
    )


# --- rewrap rules (FORMAT.md §8) -----------------------------------------------------------


def test_sha256_package_cannot_be_rewrapped_into_mlkem1024(cnsa_key: SecretKey) -> None:
    for suite in (Suite.XWING, Suite.MLKEM768):
        old = generate(suite)
        pkg = _pkg(old)
        with pytest.raises(ReencryptionRequiredError, match="re-encrypt"):
            envelope.rewrap_header(pkg, old, cnsa_key.public_key())
        out = io.BytesIO()
        with pytest.raises(RewrapRefusedError):
            envelope.rewrap_stream(io.BytesIO(pkg), out, old, cnsa_key.public_key())
        assert out.getvalue() == b""  # nothing written


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (Suite.MLKEM1024, Suite.XWING),
        (Suite.MLKEM1024, Suite.MLKEM768),
        (Suite.XWING, Suite.MLKEM768),
    ],
    ids=lambda s: s.value,
)
def test_downgrade_refused_unless_allowed(old: Suite, new: Suite) -> None:
    old_key, new_key = generate(old), generate(new)
    data = os.urandom(3 * SEG)
    pkg = _pkg(old_key, data)
    with pytest.raises(DowngradeError) as info:
        envelope.rewrap_header(pkg, old_key, new_key.public_key())
    assert (info.value.from_suite, info.value.to_suite) == (old.value, new.value)
    out = io.BytesIO()
    with pytest.raises(DowngradeError):
        envelope.rewrap_stream(io.BytesIO(pkg), out, old_key, new_key.public_key())
    assert out.getvalue() == b""
    # Explicitly allowed: the body and its KDF stay, the new key opens it.
    new_hdr = envelope.rewrap_stream(
        io.BytesIO(pkg), out, old_key, new_key.public_key(), allow_downgrade=True
    )
    old_hdr = H.parse_header(pkg)
    assert new_hdr.suite is new and new_hdr.kdf is old_hdr.kdf
    assert out.getvalue()[new_hdr.size :] == pkg[old_hdr.size :]
    assert envelope.decrypt_bytes(out.getvalue(), new_key) == data


def test_upgrades_and_same_suite_need_no_flag(cnsa_key: SecretKey) -> None:
    for old, new in [(Suite.MLKEM768, Suite.XWING), (Suite.XWING, Suite.XWING)]:
        old_key, new_key = generate(old), generate(new)
        pkg = _pkg(old_key)
        head = envelope.rewrap_header(pkg, old_key, new_key.public_key())
        assert H.parse_header(head).kdf is Kdf.HKDF_SHA256
    # mlkem1024 -> mlkem1024 keeps SHA-384 and the 48-byte MAC.
    other = generate(Suite.MLKEM1024)
    pkg = _pkg(cnsa_key)
    head = envelope.rewrap_header(pkg, cnsa_key, other.public_key())
    assert len(head) == H.parse_header(pkg).size and head[KDF_BYTE] == 0x01


def test_sha384_package_downgraded_keeps_kdf_and_may_return(cnsa_key: SecretKey) -> None:
    """A SHA-384 body is CNSA-ready: once rewrapped to xwing (allowed downgrade) it keeps
    KDF 0x01 and a 48-byte MAC, and may be rewrapped back into mlkem1024."""
    data = os.urandom(SEG + 1)
    pkg = _pkg(cnsa_key, data)
    xw = generate(Suite.XWING)
    down = envelope.rewrap_header(pkg, cnsa_key, xw.public_key(), allow_downgrade=True)
    down_hdr = H.parse_header(down)
    assert down_hdr.kdf is Kdf.HKDF_SHA384 and len(down_hdr.mac) == 48
    down_pkg = down + pkg[H.parse_header(pkg).size :]
    assert envelope.decrypt_bytes(down_pkg, xw) == data
    back = envelope.rewrap_header(down_pkg, xw, cnsa_key.public_key())
    assert envelope.decrypt_bytes(back + pkg[H.parse_header(pkg).size :], cnsa_key) == data


def test_refused_rewrap_does_not_need_the_right_key(cnsa_key: SecretKey) -> None:
    """The policy is decided from the header alone, before any unwrap."""
    pkg = _pkg(cnsa_key)
    with pytest.raises(DowngradeError):
        envelope.rewrap_header(pkg, generate(Suite.MLKEM1024), generate().public_key())
    with pytest.raises(WrongKeyError):
        envelope.rewrap_header(
            pkg, generate(Suite.MLKEM1024), generate().public_key(), allow_downgrade=True
        )


# --- re-encryption -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 5 * SEG + 17])
def test_reencrypt_sha256_package_into_mlkem1024(cnsa_key: SecretKey, size: int) -> None:
    old = generate(Suite.XWING)
    data = os.urandom(size)
    pkg = _pkg(old, data, document_id=b"\xffraw-id", context={"tenant": "t1", "a": ""})
    out = io.BytesIO()
    result = envelope.reencrypt_stream(io.BytesIO(pkg), out, old, cnsa_key.public_key())
    new_pkg = out.getvalue()
    old_hdr, new_hdr = H.parse_header(pkg), H.parse_header(new_pkg)
    assert result.header == new_hdr and result.package_size == len(new_pkg)
    assert result.plaintext_size == size
    assert new_hdr.suite is Suite.MLKEM1024 and new_hdr.kdf is Kdf.HKDF_SHA384
    assert new_pkg[KDF_BYTE] == 0x01
    # Same document id, context and segment size; fresh salt, nonce prefix, commitment.
    assert new_hdr.document_id == old_hdr.document_id
    assert new_hdr.context_bytes == old_hdr.context_bytes
    assert new_hdr.segment_size == old_hdr.segment_size
    assert new_hdr.salt != old_hdr.salt and new_hdr.nonce_prefix != old_hdr.nonce_prefix
    assert new_hdr.commitment != old_hdr.commitment
    assert len(new_pkg) - new_hdr.size == len(pkg) - old_hdr.size  # same segmenting
    assert envelope.decrypt_bytes(new_pkg, cnsa_key) == data
    # A fresh data key: the old data key does not open the new header.
    old_dk, _ = envelope.open_header(old_hdr, old)
    new_dk, _ = envelope.open_header(new_hdr, cnsa_key)
    assert old_dk != new_dk


def test_old_header_cannot_open_the_new_body(cnsa_key: SecretKey) -> None:
    old = generate(Suite.XWING)
    data = os.urandom(3 * SEG + 9)
    pkg = _pkg(old, data)
    out = io.BytesIO()
    envelope.reencrypt_stream(io.BytesIO(pkg), out, old, cnsa_key.public_key())
    new_pkg = out.getvalue()
    old_size, new_size = H.parse_header(pkg).size, H.parse_header(new_pkg).size
    spliced = pkg[:old_size] + new_pkg[new_size:]  # old header (old data key) + new body
    with pytest.raises(DecryptionError):
        envelope.decrypt_bytes(spliced, old)
    with pytest.raises(DecryptionError):
        envelope.decrypt_stream(io.BytesIO(spliced), io.BytesIO(), old)


def test_reencrypt_refuses_downgrade_and_tampering(cnsa_key: SecretKey) -> None:
    data = os.urandom(2 * SEG)
    pkg = _pkg(cnsa_key, data)
    xw = generate(Suite.XWING)
    with pytest.raises(DowngradeError):
        envelope.reencrypt_stream(io.BytesIO(pkg), io.BytesIO(), cnsa_key, xw.public_key())
    out = io.BytesIO()
    res = envelope.reencrypt_stream(
        io.BytesIO(pkg), out, cnsa_key, xw.public_key(), allow_downgrade=True
    )
    assert res.header.kdf is Kdf.HKDF_SHA256  # a re-encryption takes the new suite's KDF
    assert envelope.decrypt_bytes(out.getvalue(), xw) == data
    damaged = bytearray(pkg)
    damaged[-1] ^= 1  # the final segment's tag
    with pytest.raises(DecryptionError):
        envelope.reencrypt_stream(
            io.BytesIO(bytes(damaged)),
            io.BytesIO(),
            cnsa_key,
            xw.public_key(),
            allow_downgrade=True,
        )
    with pytest.raises(DecryptionError):
        envelope.reencrypt_stream(
            io.BytesIO(pkg),
            io.BytesIO(),
            cnsa_key,
            generate(Suite.MLKEM1024).public_key(),
            expected_context={"other": "ctx"},
        )


class _CountingSink:
    """Records the largest single write: the re-encryption must not buffer the body."""

    def __init__(self) -> None:
        self.total = 0
        self.largest = 0

    def write(self, data: memoryview, /) -> int:
        self.total += len(data)
        self.largest = max(self.largest, len(data))
        return len(data)


def test_reencrypt_is_streaming(cnsa_key: SecretKey) -> None:
    old = generate(Suite.MLKEM768)
    pkg = _pkg(old, os.urandom(200 * SEG + 3))
    sink = _CountingSink()
    result = envelope.reencrypt_stream(io.BytesIO(pkg), sink, old, cnsa_key.public_key())
    assert sink.total == result.package_size
    assert sink.largest <= max(result.header.size, SEG + 16)


# --- SegmentEncryptor == encrypt_body -------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, SEG, SEG + 1, 2 * SEG, 4 * SEG + 100])
@pytest.mark.parametrize("chunk", [1, 7, SEG, 3 * SEG + 5])
def test_segment_encryptor_matches_encrypt_body(size: int, chunk: int) -> None:
    data = os.urandom(size)
    key, prefix = os.urandom(32), os.urandom(7)
    expected = io.BytesIO()
    stream.encrypt_body(io.BytesIO(data), expected, key, prefix, SEG)
    got = io.BytesIO()
    enc = stream.SegmentEncryptor(got, key, prefix, SEG)
    for i in range(0, size, chunk):
        enc.write(memoryview(data[i : i + chunk]))
    assert enc.finish() == (size, len(expected.getvalue()))
    assert got.getvalue() == expected.getvalue()
    with pytest.raises(ValueError):
        enc.write(memoryview(b"late"))
