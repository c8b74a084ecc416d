"""The points of docs/FORMAT.md an outside implementer could read two ways, pinned by tests.

- §10 / §1: one check order (magic, version, flags, suite, then the rest), and a truncated
  input fails at the first field it cannot read; every entry point agrees.
- §10 step 7: the recipient is the pair (suite id, key id); a suite swapped under a matching
  key id is ``WrongKeyError``, decided before any secret is used.
- §3: plain lexicographic order of the key bytes; a zero-length key is malformed for the
  reader and a limit error for the writer; well-formed UTF-8, no normalization.
- §6 / §10: the zero-byte body, a final chunk shorter than a tag, truncation inside the
  header (malformed) versus inside the body (opaque ``DecryptionError``).
- §2: the document id is opaque bytes (non-UTF-8 allowed).
- §4a: HPKE as PQF uses it, redone here by hand from RFC 9180 (base mode, the KEM shared
  secret used directly, sequence number 0, empty AAD) and the pinned X-Wing revision.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pqfile.crypto import envelope
from pqfile.crypto.kem import SecretKey, Suite, generate, secret_key_from_seed
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
from pqfile.format import header as H
from tests.fixtures import shared_vectors as sv

SEG = 1024
MAGIC = b"\x89PQF"
XWING_ID = b"\x64\x7a"
UNKNOWN_ID = b"\x12\x34"


@pytest.fixture(scope="module")
def alice() -> SecretKey:
    return generate(Suite.XWING)


@pytest.fixture(scope="module")
def package(alice: SecretKey) -> bytes:
    return bytes(
        envelope.encrypt_bytes(
            b"p" * (2 * SEG + 100),
            alice.public_key(),
            context={"a": "1"},
            document_id="doc",
            segment_size=SEG,
        )
    )


# Every entry point that reads a package must give the same answer for the same bytes.
Reader = Callable[[bytes, SecretKey, Path], object]


def _parse(data: bytes, key: SecretKey, tmp: Path) -> object:
    return H.parse_header(data)


def _read_stream(data: bytes, key: SecretKey, tmp: Path) -> object:
    return envelope.read_header(io.BytesIO(data))


def _decrypt_bytes(data: bytes, key: SecretKey, tmp: Path) -> object:
    return envelope.decrypt_bytes(data, key)


def _decrypt_stream(data: bytes, key: SecretKey, tmp: Path) -> object:
    return envelope.decrypt_stream(io.BytesIO(data), io.BytesIO(), key)


def _decrypt_to_path(data: bytes, key: SecretKey, tmp: Path) -> object:
    try:
        return envelope.decrypt_to_path(io.BytesIO(data), tmp / "out", key)
    finally:
        assert list(tmp.iterdir()) == [], "a failed decrypt left a file behind"


def _header_size(data: bytes, key: SecretKey, tmp: Path) -> object:
    return H.header_size(data[: H.FIXED_SIZE])


READERS: dict[str, Reader] = {
    "parse_header": _parse,
    "read_header_stream": _read_stream,
    "header_size": _header_size,
    "decrypt_bytes": _decrypt_bytes,
    "decrypt_stream": _decrypt_stream,
    "decrypt_to_path": _decrypt_to_path,
}
DECRYPTERS = {k: v for k, v in READERS.items() if k.startswith("decrypt")}


def _error(reader: Reader, data: bytes, key: SecretKey, tmp: Path) -> PQFileError:
    with pytest.raises(PQFileError) as info:
        reader(data, key, tmp)
    return info.value


def _exactly(exc: PQFileError, kind: type[PQFileError], words: str = "") -> None:
    assert type(exc) is kind, f"expected {kind.__name__}, got {exc!r}"
    assert words in str(exc), f"{words!r} not in {str(exc)!r}"
    assert "\n" not in str(exc)


# --- §1 / §10: one check order ------------------------------------------------------------

# (name, first bytes, expected error, a word of its message); "+" = the rest of a real package
PREAMBLE_CASES = [
    ("empty", b"", NotAPackageError, "magic"),
    ("1 byte of the magic", MAGIC[:1], NotAPackageError, "magic"),
    ("3 bytes of the magic", MAGIC[:3], NotAPackageError, "magic"),
    ("4 bytes, other magic", b"\x89PQX", NotAPackageError, "magic"),
    ("other magic, version 2", b"PK\x03\x04\x02", NotAPackageError, "magic"),
    ("4 bytes: magic only", MAGIC, MalformedPackageError, "truncated"),
    ("5 bytes, version 1", MAGIC + b"\x01", MalformedPackageError, "truncated"),
    ("5 bytes, version 2", MAGIC + b"\x02", UnsupportedVersionError, "version 2"),
    ("5 bytes, version 0", MAGIC + b"\x00", UnsupportedVersionError, "version 0"),
    ("6 bytes, flags 0", MAGIC + b"\x01\x00", MalformedPackageError, "truncated"),
    ("6 bytes, flags 1", MAGIC + b"\x01\x01", MalformedPackageError, "flags"),
    ("6 bytes, version 2 flags 1", MAGIC + b"\x02\x01", UnsupportedVersionError, "version"),
    ("7 bytes, flags 0", MAGIC + b"\x01\x00\x64", MalformedPackageError, "truncated"),
    ("7 bytes, flags 1", MAGIC + b"\x01\x01\x64", MalformedPackageError, "flags"),
    ("8 bytes, known suite", MAGIC + b"\x01\x00" + XWING_ID, MalformedPackageError, "truncated"),
    ("8 bytes, flags 1", MAGIC + b"\x01\x01" + XWING_ID, MalformedPackageError, "flags"),
    ("8 bytes, unknown suite", MAGIC + b"\x01\x00" + UNKNOWN_ID, UnsupportedSuiteError, "0x1234"),
    (
        "8 bytes, flags 1 unknown suite",
        MAGIC + b"\x01\x01" + UNKNOWN_ID,
        MalformedPackageError,
        "flags",
    ),
    (
        "9 bytes, unknown suite",
        MAGIC + b"\x01\x00" + UNKNOWN_ID + b"\x00",
        UnsupportedSuiteError,
        "0x1234",
    ),
    (
        "87 bytes, known suite",
        MAGIC + b"\x01\x00" + XWING_ID + b"+87",
        MalformedPackageError,
        "truncated",
    ),
    (
        "whole package, flags 1 unknown suite",
        MAGIC + b"\x01\x01" + UNKNOWN_ID + b"+",
        MalformedPackageError,
        "flags",
    ),
    (
        "whole package, flags 0x80",
        MAGIC + b"\x01\x80" + XWING_ID + b"+",
        MalformedPackageError,
        "flags",
    ),
    (
        "whole package, version 2 flags 1 unknown suite",
        MAGIC + b"\x02\x01" + UNKNOWN_ID + b"+",
        UnsupportedVersionError,
        "version 2",
    ),
    (
        "whole package, unknown suite",
        MAGIC + b"\x01\x00" + UNKNOWN_ID + b"+",
        UnsupportedSuiteError,
        "0x1234",
    ),
]


def _materialize(first: bytes, package: bytes) -> bytes:
    """``first`` as given, or with the rest of ``package`` after 8 bytes (``+``/``+87``)."""
    if first.endswith(b"+87"):
        return (first[:-3] + package[8:])[:87]
    if first.endswith(b"+"):
        return first[:-1] + package[8:]
    return first


@pytest.mark.parametrize("reader", list(READERS), ids=str)
@pytest.mark.parametrize(
    ("first", "kind", "words"),
    [case[1:] for case in PREAMBLE_CASES],
    ids=[case[0] for case in PREAMBLE_CASES],
)
def test_check_order_at_every_boundary(
    reader: str,
    first: bytes,
    kind: type[PQFileError],
    words: str,
    package: bytes,
    alice: SecretKey,
    tmp_path: Path,
) -> None:
    data = _materialize(first, package)
    _exactly(_error(READERS[reader], data, alice, tmp_path), kind, words)


def test_check_preamble_reads_only_the_first_eight_bytes(package: bytes) -> None:
    assert H.check_preamble(package[:8]) is Suite.XWING
    assert H.check_preamble(package) is Suite.XWING
    # Byte 55 (the KDF id) is not part of the preamble: the fixed part reports an unknown one.
    unknown_kdf = package[:55] + b"\x02" + package[56:]
    assert H.check_preamble(unknown_kdf) is Suite.XWING
    _exactly(_error(_parse, unknown_kdf, generate(), Path()), MalformedPackageError, "KDF id")


def test_after_the_preamble_the_fixed_part_is_read_whole(package: bytes) -> None:
    """8..87 bytes: truncated, even where a limit-breaking segment size is already visible."""
    bad_segment = package[:8] + (1).to_bytes(4, "big") + package[12:]
    for cut in (12, 50, 87):
        _exactly(
            _error(_parse, bad_segment[:cut], generate(), Path()),
            MalformedPackageError,
            "truncated",
        )
    _exactly(_error(_parse, bad_segment, generate(), Path()), LimitExceededError, "segment size")


# --- §10 step 7: the recipient is (suite id, key id) -----------------------------------------


@pytest.mark.parametrize(
    ("real", "claimed"),
    [(a, b) for a in Suite for b in Suite if a is not b],
    ids=lambda s: s.value,
)
def test_suite_swapped_under_matching_key_id_is_wrong_key(
    real: Suite, claimed: Suite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = generate(real)
    pkg = bytearray(envelope.encrypt_bytes(b"q" * 4000, key.public_key(), segment_size=SEG))
    pkg[6:8] = claimed.wire_id.to_bytes(2, "big")
    if claimed is Suite.MLKEM1024 and real is not Suite.MLKEM1024:
        # §1 byte 55: mlkem1024 under KDF 0x00 is malformed before the recipient is looked at
        _exactly(_error(_parse, bytes(pkg), key, tmp_path), MalformedPackageError, "KDF id")
        return
    header = H.parse_header(bytes(pkg))
    assert header.suite is claimed
    assert header.key_id == key.public_key().key_id  # the stanza still names this key

    def no_secret_used(*args: object) -> bytes:
        raise AssertionError("the recipient check must come before the unwrap")

    monkeypatch.setattr(envelope, "hpke_unwrap", no_secret_used)
    for name, reader in DECRYPTERS.items():
        exc = _error(reader, bytes(pkg), key, tmp_path)
        assert isinstance(exc, WrongKeyError), (name, exc)
        assert f"({claimed.value})" in str(exc) and f"({real.value})" in str(exc)
        assert exc.expected_key_id == exc.supplied_key_id == key.public_key().key_id
    with pytest.raises(WrongKeyError):
        envelope.rewrap_header(
            bytes(pkg), key, generate(real).public_key(), allow_downgrade=True
        )


def test_wrong_key_of_another_suite_names_ids_and_suites() -> None:
    a, b = generate(Suite.MLKEM768), generate(Suite.XWING)
    pkg = envelope.encrypt_bytes(b"x", a.public_key())
    with pytest.raises(WrongKeyError) as info:
        envelope.decrypt_bytes(pkg, b)
    assert str(info.value) == (
        f"this package is for key id {a.public_key().key_id} (mlkem768), "
        f"not {b.public_key().key_id} (xwing)"
    )


def test_wrong_key_of_the_same_suite_names_only_ids() -> None:
    a, b = generate(Suite.XWING), generate(Suite.XWING)
    pkg = envelope.encrypt_bytes(b"x", a.public_key())
    with pytest.raises(WrongKeyError) as info:
        envelope.decrypt_bytes(pkg, b)
    assert str(info.value) == (
        f"this package is for key id {a.public_key().key_id}, not {b.public_key().key_id}"
    )


# --- §3: the context ------------------------------------------------------------------------


def _keys_in_wire_order(encoded: bytes) -> list[bytes]:
    keys, pos = [], 0
    while pos < len(encoded):
        klen = encoded[pos]
        keys.append(encoded[pos + 1 : pos + 1 + klen])
        pos += 1 + klen
        pos += 2 + int.from_bytes(encoded[pos : pos + 2], "big")
    return keys


@pytest.mark.parametrize(
    ("keys", "wire_order"),
    [
        (["ab", "a"], [b"a", b"ab"]),  # a prefix sorts first
        (["a", "B", "_"], [b"B", b"_", b"a"]),  # bytes, not case-folded
        (["z", "\u00e9"], [b"z", b"\xc3\xa9"]),  # bytes of the UTF-8 encoding
        (["\U00010000", "\uffff"], [b"\xef\xbf\xbf", b"\xf0\x90\x80\x80"]),  # not UTF-16 order
        (["\u00e9", "e\u0301"], [b"e\xcc\x81", b"\xc3\xa9"]),  # no normalization: two keys
    ],
)
def test_context_order_is_plain_lexicographic_order_of_key_bytes(
    keys: list[str], wire_order: list[bytes]
) -> None:
    encoded = H.encode_context(dict.fromkeys(keys, "v"))
    assert _keys_in_wire_order(encoded) == wire_order
    assert H.decode_context(encoded) == dict.fromkeys(keys, "v")
    # The same entries in any other order are malformed.
    entries = [bytes((len(k),)) + k + b"\x00\x01v" for k in wire_order]
    _exactly(_decode_error(b"".join(reversed(entries))), MalformedPackageError, "order")


def _decode_error(data: bytes) -> PQFileError:
    with pytest.raises(PQFileError) as info:
        H.decode_context(data)
    return info.value


def test_zero_length_key_reader_malformed_writer_limit(
    package: bytes, alice: SecretKey, tmp_path: Path
) -> None:
    _exactly(_decode_error(b"\x00\x00\x00"), MalformedPackageError)
    _exactly(_decode_error(b"\x00"), MalformedPackageError)
    # In a package: the first context byte (key length of "a") becomes 0.
    at = H.FIXED_SIZE + len(b"doc")
    assert package[at : at + 2] == b"\x01a"
    broken = package[:at] + b"\x00" + package[at + 1 :]
    for name, reader in READERS.items():
        if name != "header_size":  # it reads the fixed part only
            _exactly(_error(reader, broken, alice, tmp_path), MalformedPackageError)
    # The writer: an empty key is outside the 1..255 limit.
    with pytest.raises(LimitExceededError):
        H.encode_context({"": "v"})
    with pytest.raises(LimitExceededError):
        envelope.encrypt_bytes(b"x", alice.public_key(), context={"": "v"})


@pytest.mark.parametrize(
    "bad",
    [b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff", b"\xc3"],
    ids=["overlong", "surrogate", "above-10ffff", "ff", "cut-sequence"],
)
def test_context_must_be_well_formed_utf8(bad: bytes) -> None:
    as_key = bytes((len(bad),)) + bad + b"\x00\x00"
    as_value = b"\x01k" + len(bad).to_bytes(2, "big") + bad
    _exactly(_decode_error(as_key), MalformedPackageError, "UTF-8")
    _exactly(_decode_error(as_value), MalformedPackageError, "UTF-8")


# --- §6 / §10: body edge cases ----------------------------------------------------------------


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.value)
def test_zero_byte_plaintext_is_one_empty_final_segment_of_16_bytes(
    suite: Suite, tmp_path: Path
) -> None:
    key = generate(suite)
    pkg = bytes(envelope.encrypt_bytes(b"", key.public_key(), segment_size=SEG))
    size = H.parse_header(pkg).size
    assert len(pkg) == size + 16
    out = io.BytesIO()
    envelope.encrypt_stream(io.BytesIO(b""), out, key.public_key(), segment_size=SEG)
    assert len(out.getvalue()) == size + 16
    assert envelope.decrypt_bytes(pkg, key) == b""
    assert envelope.decrypt_stream(io.BytesIO(pkg), io.BytesIO(), key).plaintext_size == 0
    # Without its one segment the package is not authentic (an empty body).
    for reader in DECRYPTERS.values():
        with pytest.raises(DecryptionError):
            reader(pkg[:size], key, tmp_path)


def test_final_chunk_shorter_than_a_tag_is_decryption_error(
    package: bytes, alice: SecretKey, tmp_path: Path
) -> None:
    size = H.parse_header(package).size
    full = size + 2 * (SEG + 16)  # two whole segments, then the short final one
    for short in range(1, 16):
        for data in (
            package[: full + short],  # the final segment cut below a tag
            package + package[-short:],  # a complete package with 1..15 bytes appended
            package[: size + short],  # a body shorter than one tag
        ):
            for reader in DECRYPTERS.values():
                exc = _error(reader, data, alice, tmp_path)
                _exactly(exc, DecryptionError, str(DecryptionError()))


def test_truncation_inside_header_is_malformed_inside_body_is_opaque(
    package: bytes, alice: SecretKey, tmp_path: Path
) -> None:
    size = H.parse_header(package).size
    for cut in range(size):
        exc = _error(_decrypt_bytes, package[:cut], alice, tmp_path)
        if cut < 4:
            _exactly(exc, NotAPackageError)
        else:
            _exactly(exc, MalformedPackageError, "truncated")
    for cut in sorted({*range(size, len(package), 37), size + SEG + 15, size + SEG + 16}):
        for reader in DECRYPTERS.values():
            exc = _error(reader, package[:cut], alice, tmp_path)
            _exactly(exc, DecryptionError, str(DecryptionError()))


def test_streaming_reader_sees_the_same_truncation_errors(
    package: bytes, alice: SecretKey, tmp_path: Path
) -> None:
    size = H.parse_header(package).size
    for cut in (4, 7, 8, 60, 87, 88, size - 33, size - 1):
        _exactly(
            _error(_decrypt_stream, package[:cut], alice, tmp_path),
            MalformedPackageError,
            "truncated",
        )
        _exactly(
            _error(_decrypt_to_path, package[:cut], alice, tmp_path),
            MalformedPackageError,
            "truncated",
        )


# --- §2: the document id ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [b"\xff\xfe\x00\x80", b"\xed\xa0\x80", b"", b"\x00" * 256],
    ids=["ff-fe", "surrogate", "empty", "256-nul"],
)
def test_document_id_is_opaque_bytes(doc: bytes, alice: SecretKey) -> None:
    pkg = bytes(envelope.encrypt_bytes(b"data", alice.public_key(), document_id=doc))
    header = H.parse_header(pkg)
    assert header.document_id == doc
    assert pkg[H.FIXED_SIZE : H.FIXED_SIZE + len(doc)] == doc
    assert envelope.decrypt_bytes(pkg, alice, expected_document_id=doc) == b"data"
    with pytest.raises(DecryptionError):
        other = doc[:-1] + bytes((doc[-1] ^ 1,)) if doc else b"x"
        envelope.decrypt_bytes(pkg, alice, expected_document_id=other)
    if doc and doc[0] >= 0x80:
        assert envelope.describe(header)["document_id"] == "hex:" + doc.hex()


def test_text_document_id_is_its_utf8_bytes(alice: SecretKey) -> None:
    pkg = bytes(envelope.encrypt_bytes(b"d", alice.public_key(), document_id="r\u00e9sum\u00e9"))
    assert H.parse_header(pkg).document_id == "r\u00e9sum\u00e9".encode()
    assert envelope.decrypt_bytes(pkg, alice, expected_document_id=b"r\xc3\xa9sum\xc3\xa9")
    with pytest.raises(LimitExceededError):
        envelope.encrypt_bytes(b"d", alice.public_key(), document_id=b"\x00" * 257)


# --- §4a: HPKE by hand from RFC 9180, and the pinned X-Wing revision -------------------------

# The KEM ids of these suites with KDF HKDF-SHA256 (0x0001) and AEAD AES-256-GCM (0x0002).
HPKE_SUITES = {Suite.XWING: 0x647A, Suite.MLKEM768: 0x0041}
XWING_LABEL = bytes.fromhex("5c2e2f2f5e5c")


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or b"\x00" * 32, ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes((counter,)), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, n: int) -> bytes:
    return _expand(prk, n.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info, n)


def _kem_shared_secret(identity: SecretKey, enc: bytes) -> bytes:
    """The KEM's own Decap output: X-Wing (§4a revision) or ML-KEM-768 (FIPS 203)."""
    if identity.suite is Suite.MLKEM768:
        return mlkem.MLKEM768PrivateKey.from_seed_bytes(identity.seed).decapsulate(enc)
    expanded = hashlib.shake_256(identity.seed).digest(96)
    ss_m = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]).decapsulate(enc[:1088])
    sk_x = x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
    ct_x = enc[1088:]
    ss_x = sk_x.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
    pk_x = sk_x.public_key().public_bytes_raw()
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()


def _hpke_base_open(kem_id: int, shared_secret: bytes, info: bytes, ct: bytes) -> bytes:
    """RFC 9180 §5.1 KeySchedule (mode_base, empty psk) then §5.2 Open with seq = 0."""
    suite_id = b"HPKE" + struct.pack(">HHH", kem_id, 0x0001, 0x0002)
    psk_id_hash = _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite_id, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(suite_id, shared_secret, b"secret", b"")
    key = _labeled_expand(suite_id, secret, b"key", context, 32)
    base_nonce = _labeled_expand(suite_id, secret, b"base_nonce", context, 12)
    nonce = base_nonce  # base_nonce XOR I2OSP(seq = 0, 12)
    return AESGCM(key).decrypt(nonce, ct, b"")  # empty AAD


@pytest.mark.parametrize("suite", list(HPKE_SUITES), ids=lambda s: s.value)
def test_stanza_opens_with_rfc9180_by_hand(suite: Suite) -> None:
    key = generate(suite)
    pkg = bytes(envelope.encrypt_bytes(b"hi", key.public_key(), context={"k": "v"}))
    ctx_len, doc_len = struct.unpack(">HH", pkg[12:16])
    core_end = H.FIXED_SIZE + doc_len + ctx_len
    enc_size = {Suite.XWING: 1120, Suite.MLKEM768: 1088}[suite]
    key_id = pkg[core_end : core_end + 16]
    enc = pkg[core_end + 16 : core_end + 16 + enc_size]
    wrapped = pkg[core_end + 16 + enc_size : core_end + 16 + enc_size + 48]
    info = b"pqfile/v1/wrap" + hashlib.sha256(pkg[:core_end]).digest() + key_id
    assert len(info) == 62

    shared = _kem_shared_secret(key, enc)
    data_key = _hpke_base_open(HPKE_SUITES[suite], shared, info, wrapped)
    prk = _extract(pkg[16:48], data_key)
    assert _expand(prk, b"pqfile/v1/commit", 32) == pkg[56:88]  # the data key is the real one

    # Not DHKEM: running the shared secret through ExtractAndExpand (RFC 9180 §4.1) fails.
    kem_suite = b"KEM" + HPKE_SUITES[suite].to_bytes(2, "big")
    eae_prk = _labeled_extract(kem_suite, b"", b"eae_prk", shared)
    dhkem_style = _labeled_expand(
        kem_suite, eae_prk, b"shared_secret", enc + key.public_key().raw, 32
    )
    with pytest.raises(InvalidTag):
        _hpke_base_open(HPKE_SUITES[suite], dhkem_style, info, wrapped)
    # Nor a non-zero sequence number.
    with pytest.raises(InvalidTag):
        _hpke_base_open_seq1(HPKE_SUITES[suite], shared, info, wrapped)


def _hpke_base_open_seq1(kem_id: int, shared_secret: bytes, info: bytes, ct: bytes) -> bytes:
    suite_id = b"HPKE" + struct.pack(">HHH", kem_id, 0x0001, 0x0002)
    context = (
        b"\x00"
        + _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
        + _labeled_extract(suite_id, b"", b"info_hash", info)
    )
    secret = _labeled_extract(suite_id, shared_secret, b"secret", b"")
    key = _labeled_expand(suite_id, secret, b"key", context, 32)
    nonce = bytearray(_labeled_expand(suite_id, secret, b"base_nonce", context, 12))
    nonce[-1] ^= 1
    return AESGCM(key).decrypt(bytes(nonce), ct, b"")


def test_xwing_revision_pinned_by_the_vectors() -> None:
    """§4a: draft -06 and later; -03/-04 (SHAKE-128, label first) do not reproduce them."""
    for v in sv.load_json(sv.XWING):
        seed, pk, ct, ss = (bytes.fromhex(v[k]) for k in ("seed", "pk", "ct", "ss"))
        assert v["sk"] == v["seed"]  # the secret key is the 32-byte seed (since -03)
        identity = secret_key_from_seed(Suite.XWING, seed)
        assert identity.public_key().raw == pk
        assert _kem_shared_secret(identity, ct) == ss
        # The older expansion (SHAKE-128) gives another key.
        old = hashlib.shake_128(seed).digest(96)
        old_pk = mlkem.MLKEM768PrivateKey.from_seed_bytes(old[:64]).public_key()
        assert old_pk.public_bytes_raw() != pk[:1184]
        # The older combiner (label first) gives another shared secret.
        expanded = hashlib.shake_256(seed).digest(96)
        ss_m = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]).decapsulate(ct[:1088])
        sk_x = x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
        ss_x = sk_x.exchange(x25519.X25519PublicKey.from_public_bytes(ct[1088:]))
        label_first = hashlib.sha3_256(XWING_LABEL + ss_m + ss_x + ct[1088:] + pk[1184:])
        assert label_first.digest() != ss
    assert Suite.XWING.wire_id == 0x647A  # the HPKE KEM id requested from -06 on (-05: 0x66af)
