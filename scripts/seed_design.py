"""The seed's original design, kept ONLY as a benchmark baseline (never use it for data).

ML-KEM-768 encapsulation, AES key = SHA-256(shared secret), AES-256-CBC with PKCS#7
padding, whole document in memory, no MAC (malleable, a padding oracle through any
decrypt endpoint: see docs/DESIGN.md "Where we differ from the original description").

Layout: KEM ciphertext (1088) || IV (16) || CBC ciphertext.
The seed used Kyber768; pyca's FIPS 203 ML-KEM-768 stands in for it (same sizes, and the
KEM is microseconds next to the bulk cipher, so the comparison is the bulk path).
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEM_CT_SIZE = 1088
IV_SIZE = 16


def generate() -> tuple[bytes, bytes]:
    """(public key 1184 bytes, secret seed 64 bytes)."""
    seed = os.urandom(64)
    pub = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw()
    return pub, seed


def encrypt(public_key: bytes, plaintext: bytes) -> bytes:
    shared, kem_ct = mlkem.MLKEM768PublicKey.from_public_bytes(public_key).encapsulate()
    key = hashlib.sha256(shared).digest()
    iv = os.urandom(IV_SIZE)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return kem_ct + iv + enc.update(padded) + enc.finalize()


def decrypt(secret_seed: bytes, blob: bytes) -> bytes:
    kem_ct, iv, body = (
        blob[:KEM_CT_SIZE],
        blob[KEM_CT_SIZE : KEM_CT_SIZE + IV_SIZE],
        blob[KEM_CT_SIZE + IV_SIZE :],
    )
    shared = mlkem.MLKEM768PrivateKey.from_seed_bytes(secret_seed).decapsulate(kem_ct)
    key = hashlib.sha256(shared).digest()
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = dec.update(body) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


if __name__ == "__main__":  # a quick self-check
    pub, sec = generate()
    msg = os.urandom(1000)
    assert decrypt(sec, encrypt(pub, msg)) == msg
    print("seed design round trip ok")
