"""PEM key files (docs/FORMAT.md section 12)."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey

from pqfile.crypto import keyfiles as K
from pqfile.crypto.kem import Suite, generate
from pqfile.errors import KeyFormatError


def test_oid_encodings() -> None:
    assert K.encode_oid(K.OID_MLKEM768) == bytes.fromhex("608648016503040402")
    # draft-connolly-cfrg-xwing-kem: id-XWing 1.3.6.1.4.1.62253.25722
    assert K.encode_oid(K.OID_XWING) == bytes.fromhex("2b0601040183e62d81c87a")


def test_mlkem768_matches_pyca_byte_for_byte() -> None:
    sk = generate(Suite.MLKEM768)
    pyca = MLKEM768PrivateKey.from_seed_bytes(sk.seed)
    assert K.secret_key_to_pem(sk) == pyca.private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    )
    assert K.public_key_to_pem(sk.public_key()) == pyca.public_key().public_bytes(
        ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo
    )
    # and pyca reads what we write
    loaded = ser.load_pem_private_key(K.secret_key_to_pem(sk), None)
    assert isinstance(loaded, MLKEM768PrivateKey)
    assert loaded.private_bytes_raw() == sk.seed


def test_xwing_der_layout() -> None:
    sk = generate(Suite.XWING)
    der = K.secret_key_to_der(sk)
    assert der[:20] == bytes.fromhex("3034020100300d060b2b0601040183e62d81c87a")
    assert der[20:22] == b"\x04\x20" and der[22:] == sk.seed
    spki = K.public_key_to_der(sk.public_key())
    assert spki[:24] == bytes.fromhex("308204d4300d060b2b0601040183e62d81c87a038204c100")
    assert spki[24:] == sk.public_key().raw


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.value)
def test_round_trip(suite: Suite) -> None:
    sk = generate(suite)
    assert K.secret_key_from_pem(K.secret_key_to_pem(sk)) == sk
    assert K.public_key_from_pem(K.public_key_to_pem(sk.public_key())) == sk.public_key()


def _pem(label: str, der: bytes) -> bytes:
    return (
        f"-----BEGIN {label}-----\n".encode()
        + base64.encodebytes(der)
        + f"-----END {label}-----\n".encode()
    )


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.value)
def test_rejects_malformed(suite: Suite) -> None:
    sk = generate(suite)
    der = K.secret_key_to_der(sk)
    pub = K.public_key_to_der(sk.public_key())
    bad = [
        der + b"\x00",  # trailing
        der[:-1],  # truncated
        der[:2] + b"\x02\x01\x01" + der[5:],  # version 1
        pub,  # a public key where a secret key belongs
    ]
    for item in bad:
        with pytest.raises(KeyFormatError):
            K.secret_key_from_der(item)
    with pytest.raises(KeyFormatError):
        K.public_key_from_der(pub[:-1])
    with pytest.raises(KeyFormatError):
        K.public_key_from_pem(K.secret_key_to_pem(sk))  # wrong PEM label
    with pytest.raises(KeyFormatError):
        K.public_key_from_pem(b"-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n")
    with pytest.raises(KeyFormatError):
        K.public_key_from_pem(b"not pem")


def test_rejects_other_algorithms() -> None:
    from cryptography.hazmat.primitives.asymmetric import x25519

    other = x25519.X25519PrivateKey.generate()
    pem = other.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    with pytest.raises(KeyFormatError):
        K.secret_key_from_pem(pem)


def test_mlkem_expanded_form_rejected() -> None:
    sk = generate(Suite.MLKEM768)
    der = bytearray(K.secret_key_to_der(sk))
    der[der.index(b"\x80\x40")] = 0x81  # not the seed [0] choice
    with pytest.raises(KeyFormatError):
        K.secret_key_from_der(bytes(der))


def test_modulus_check_applies_to_pem() -> None:
    sk = generate(Suite.MLKEM768)
    spki = bytearray(K.public_key_to_der(sk.public_key()))
    start = len(spki) - 1184  # ek is the BIT STRING payload
    spki[start : start + 2] = b"\xff\xff"  # first coefficient 0xfff >= q
    with pytest.raises(KeyFormatError):
        K.public_key_from_der(bytes(spki))


def test_secret_file_mode_and_no_clobber(tmp_path: Path) -> None:
    sk = generate()
    path = tmp_path / "id.sec"
    K.write_secret_key(path, sk)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert K.load_secret_key(path) == sk
    with pytest.raises(FileExistsError):
        K.write_secret_key(path, generate())
    other = generate()
    K.write_secret_key(path, other, overwrite=True)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert K.load_secret_key(path) == other
    assert [p.name for p in tmp_path.iterdir()] == ["id.sec"]
    pub = tmp_path / "id.pub"
    K.write_public_key(pub, other.public_key())
    assert K.load_public_key(pub) == other.public_key()


def test_secret_file_refuses_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "link.sec"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        K.write_secret_key(link, generate())
    assert not target.exists()


FIXTURES = Path(__file__).resolve().parents[1] / "vectors" / "keyfiles"


def test_xwing_draft_fixtures_byte_for_byte() -> None:
    """The X-Wing draft's own key files (see tests/vectors/keyfiles/PROVENANCE.md)."""
    priv_pem = (FIXTURES / "xwing-draft.priv.pem").read_bytes()
    pub_pem = (FIXTURES / "xwing-draft.pub.pem").read_bytes()
    sk = K.secret_key_from_pem(priv_pem)
    assert sk.suite is Suite.XWING and sk.seed == bytes(range(32))
    pk = K.public_key_from_pem(pub_pem)
    assert pk == sk.public_key()  # same seed expansion and key layout as the draft
    assert K.secret_key_to_pem(sk) == priv_pem
    assert K.public_key_to_pem(pk) == pub_pem


# --- ML-KEM-1024, the CNSA 2.0 suite (FORMAT.md §12) ----------------------------------------


def test_mlkem1024_oid_encoding() -> None:
    # NIST CSOR: id-alg-ml-kem-1024 = 2.16.840.1.101.3.4.4.3
    assert K.encode_oid(K.OID_MLKEM1024) == bytes.fromhex("608648016503040403")


def test_mlkem1024_matches_pyca_byte_for_byte() -> None:
    from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM1024PrivateKey

    sk = generate(Suite.MLKEM1024)
    pyca = MLKEM1024PrivateKey.from_seed_bytes(sk.seed)
    ours = K.secret_key_to_pem(sk)
    assert ours == pyca.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    assert K.public_key_to_pem(sk.public_key()) == pyca.public_key().public_bytes(
        ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo
    )
    # The seed form: 80 40 || d || z inside the PKCS#8 OCTET STRING.
    der = K.secret_key_to_der(sk)
    assert der.endswith(b"\x04\x42\x80\x40" + sk.seed)
    # pyca reads what we write, and we read what pyca writes.
    loaded = ser.load_pem_private_key(ours, None)
    assert isinstance(loaded, MLKEM1024PrivateKey)
    assert loaded.private_bytes_raw() == sk.seed
    spki = pyca.public_key().public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    assert K.public_key_from_der(spki) == sk.public_key()


def test_mlkem1024_oid_with_a_768_key_is_rejected() -> None:
    sk = generate(Suite.MLKEM768)
    der = K.public_key_to_der(sk.public_key()).replace(
        bytes.fromhex("608648016503040402"), bytes.fromhex("608648016503040403")
    )
    with pytest.raises(KeyFormatError):
        K.public_key_from_der(der)


def test_mlkem1024_expanded_form_rejected() -> None:
    sk = generate(Suite.MLKEM1024)
    der = K.secret_key_to_der(sk)
    # Replace the [0] seed choice by a bare OCTET STRING of the same seed.
    bare = der.replace(b"\x80\x40" + sk.seed, b"\x04\x40" + sk.seed)
    with pytest.raises(KeyFormatError, match="seed form"):
        K.secret_key_from_der(bare)


# --- hostile key files: bounded size, linear parsing, one clear error each ----------------


def _crafted(size: int) -> dict[str, bytes]:
    """Inputs that made the old regex parser quadratic, and other worst cases, of ``size``."""

    def fill(head: bytes, unit: bytes) -> bytes:
        return head + (unit * (size // len(unit) + 1))[: size - len(head)]

    begin = b"-----BEGIN PUBLIC KEY-----\n"
    return {
        "begin_lines_other_label": fill(b"", b"-----BEGIN A-----\n"),
        "begin_lines_right_label": fill(begin, b"-----BEGIN PUBLIC KEY-----\n"[::-1]),
        "begin_then_no_end": fill(begin, b"QUFBQUFB\n"),
        "one_long_line": fill(begin, b"A"),
        "whitespace": fill(b"", b" \t\r\n"),
        "dashes": fill(b"", b"-"),
        "begin_markers_no_newline": fill(b"", b"-----BEGIN "),
    }


def test_pem_reader_uses_no_regular_expression() -> None:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(K))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "re" not in imported and "regex" not in imported


@pytest.mark.parametrize("name", sorted(_crafted(1024)))
def test_crafted_60k_key_file_is_refused_quickly(name: str, tmp_path: Path) -> None:
    import time

    data = _crafted(60 * 1024)[name]
    assert len(data) < K.MAX_KEY_FILE_SIZE
    (tmp_path / "k.pub").write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(KeyFormatError):
        K.load_public_key(tmp_path / "k.pub")
    # linear: about a millisecond; the old regex took 4.6 s on the first input
    assert time.perf_counter() - start < 1.0


def test_oversized_key_files_are_refused_before_parsing(tmp_path: Path) -> None:
    import time

    big = _crafted(800 * 1000)["begin_lines_right_label"]
    (tmp_path / "big.pub").write_bytes(big)
    start = time.perf_counter()
    with pytest.raises(KeyFormatError, match="larger than 64 KiB"):
        K.load_public_key(tmp_path / "big.pub")
    assert time.perf_counter() - start < 1.0  # the old parser: about nine minutes
    # exactly the cap still reads; one byte more does not (a valid key, padded with text)
    pem = K.public_key_to_pem(generate().public_key())
    for size, ok in ((K.MAX_KEY_FILE_SIZE, True), (K.MAX_KEY_FILE_SIZE + 1, False)):
        (tmp_path / "padded.pub").write_bytes(pem + b"#" * (size - len(pem)))
        if ok:
            K.load_public_key(tmp_path / "padded.pub")
        else:
            with pytest.raises(KeyFormatError, match="larger than"):
                K.load_public_key(tmp_path / "padded.pub")


def test_dev_zero_is_not_a_key() -> None:
    with pytest.raises(KeyFormatError, match="larger than"):
        K.load_public_key("/dev/zero")
    with pytest.raises(KeyFormatError, match="larger than"):
        K.load_secret_key("/dev/zero")


def test_pem_text_around_the_block_and_crlf_are_accepted() -> None:
    sk = generate(Suite.MLKEM768)
    pem = K.public_key_to_pem(sk.public_key())
    framed = b"Subject: ours\r\n\r\n" + pem.replace(b"\n", b"\r\n") + b"trailing notes\n"
    assert K.public_key_from_pem(framed) == sk.public_key()
    indented = b"".join(b"  " + line + b"  \n" for line in pem.splitlines())
    assert K.public_key_from_pem(indented) == sk.public_key()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a PEM key file"),
        (b"\xff\xfe\x00garbage", "not a PEM key file"),
        (b"-----BEGIN -----\n-----END -----\n", "not a PEM key file"),
        (b"-----BEGIN \xff\xfe KEY-----\nAAAA\n", "found '\\\\xff\\\\xfe KEY'"),
        (b"-----BEGIN " + b"X" * 5000 + b"-----\n", "found 'XXXXXXXX"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n", "no END line"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "wrong END line"),
        (b"-----BEGIN PUBLIC KEY-----\nAA\xffAA\n-----END PUBLIC KEY-----\n", "base64"),
        (b"-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----\n", "base64"),
        (b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n", "DER"),
        (b"-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n", "DER"),
    ],
)
def test_malformed_pem_gives_one_clear_line(data: bytes, message: str) -> None:
    with pytest.raises(KeyFormatError) as info:
        K.public_key_from_pem(data)
    text = str(info.value)
    assert "\n" not in text and len(text) < 200, text
    assert message.replace("\\\\", "\\") in text, text
