"""A second PQF v1 reader written from docs/FORMAT.md alone, run against the vectors.

It shares no code with pqfile.format or pqfile.crypto except the key objects (to get pyca
HPKE keys from a seed): offsets, HKDF, MAC, nonces and segmenting are redone here from the
spec text. If the spec and the implementation drift apart, this test fails.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pqfile.crypto.kem import Suite, secret_key_from_seed

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
