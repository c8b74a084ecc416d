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
ENC_SIZE = {0x647A: 1120, 0x0041: 1088}
KEM = {0x647A: hpke.KEM.MLKEM768_X25519, 0x0041: hpke.KEM.MLKEM768}


def hkdf_expand_32(prk: bytes, info: bytes) -> bytes:
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # RFC 5869, L = 32


def spec_decrypt(package: bytes, suite_name: str, seed: bytes) -> bytes:
    magic, version, flags, suite_id, seg, ctx_len, doc_len = struct.unpack(
        ">4sBBHIHH", package[:16]
    )
    assert (magic, version, flags, package[55]) == (b"\x89PQF", 1, 0, 0)
    salt, prefix, commitment = package[16:48], package[48:55], package[56:88]
    core_end = 88 + doc_len + ctx_len
    core = package[:core_end]
    enc_size = ENC_SIZE[suite_id]
    key_id = package[core_end : core_end + 16]
    enc = package[core_end + 16 : core_end + 16 + enc_size]
    wrapped = package[core_end + 16 + enc_size : core_end + 16 + enc_size + 48]
    mac_at = core_end + 16 + enc_size + 48
    mac = package[mac_at : mac_at + 32]
    body = package[mac_at + 32 :]

    identity = secret_key_from_seed(Suite.from_name(suite_name), seed)
    assert (
        key_id
        == hashlib.sha256(
            b"pqfile/key-id/v1" + suite_id.to_bytes(2, "big") + identity.public_key().raw
        ).digest()[:16]
    )
    info = b"pqfile/v1/wrap" + hashlib.sha256(core).digest() + key_id
    suite = hpke.Suite(KEM[suite_id], hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    data_key = suite.decrypt(enc + wrapped, identity.to_pyca(), info=info)

    prk = hmac.new(salt, data_key, hashlib.sha256).digest()
    assert hkdf_expand_32(prk, b"pqfile/v1/commit") == commitment
    mac_key = hkdf_expand_32(prk, b"pqfile/v1/header-mac")
    assert hmac.new(mac_key, package[:mac_at], hashlib.sha256).digest() == mac
    aead = AESGCM(hkdf_expand_32(prk, b"pqfile/v1/body"))

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
    assert suites == {b"suite: xwing", b"suite: mlkem768"}
