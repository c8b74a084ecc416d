"""Interoperability of ``pqfile.crypto.kem`` (pyca/OpenSSL) with an independent implementation.

- kyber-py (pure-Python FIPS 203 ML_KEM_768) encapsulates to our public keys and our keys
  decapsulate the same secret; pyca encapsulates to kyber-py keys derived from the same seed
  and kyber-py decapsulates. Same for X-Wing, with the reference combiner.
- pyca's HPKE KEM 0x647a (MLKEM768-X25519) is X-Wing as the vectors define it: an HPKE
  base-mode open/seal written here from RFC 9180 over the reference X-Wing interoperates with
  ``hpke.Suite`` and our ``to_pyca()`` keys. Same for 0x0041 (pure ML-KEM-768).
- Exact-length rejection for public keys, seeds and ciphertexts; the FIPS 203 modulus check
  agrees with pyca and kyber-py on keys with coefficients at and around q.
"""

from __future__ import annotations

import hmac
import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from kyber_py.ml_kem import ML_KEM_768, ML_KEM_1024

from pqfile.crypto import kem, wrap
from pqfile.errors import KeyFormatError
from tests.unit.test_kem_vectors import (
    MLKEM768_CT,
    MLKEM768_EK,
    xwing_decaps_kyberpy,
    xwing_decaps_ours,
    xwing_encaps_kyberpy,
    xwing_encaps_pyca,
    xwing_keys_kyberpy,
)

N_KEYS = 50
Q = 3329


# ---------------------------------------------------------------------------------------
# ML-KEM-768 both ways
# ---------------------------------------------------------------------------------------
def test_mlkem_kyberpy_encapsulates_to_our_keys() -> None:
    for _ in range(N_KEYS):
        sk = kem.generate(kem.Suite.MLKEM768)
        pub = sk.public_key()
        assert len(pub.raw) == MLKEM768_EK
        ss, ct = ML_KEM_768.encaps(pub.raw)
        assert sk.to_pyca().decapsulate(ct) == ss
        # the oracle derives the same key pair from our stored seed
        ek, dk = ML_KEM_768.key_derive(sk.seed)
        assert ek == pub.raw
        assert ML_KEM_768.decaps(dk, ct) == ss


def test_mlkem_pyca_encapsulates_to_kyberpy_keys() -> None:
    for _ in range(N_KEYS):
        seed = os.urandom(64)
        ek, dk = ML_KEM_768.key_derive(seed)
        assert kem.secret_key_from_seed(kem.Suite.MLKEM768, seed).public_key().raw == ek
        ss, ct = kem.public_key_from_bytes(kem.Suite.MLKEM768, ek).to_pyca().encapsulate()
        assert len(ct) == MLKEM768_CT
        assert ML_KEM_768.decaps(dk, ct) == ss


def test_mlkem_implicit_rejection_agrees() -> None:
    """A corrupted ciphertext gives the same (pseudo-random) rejection secret in both."""
    for _ in range(10):
        seed = os.urandom(64)
        ek, dk = ML_KEM_768.key_derive(seed)
        ss, ct = ML_KEM_768.encaps(ek)
        bad = bytearray(ct)
        bad[os.urandom(1)[0] % len(bad)] ^= 1 << (os.urandom(1)[0] % 8)
        ours = kem.secret_key_from_seed(kem.Suite.MLKEM768, seed).to_pyca().decapsulate(bytes(bad))
        assert ours == ML_KEM_768.decaps(dk, bytes(bad)) != ss


# ---------------------------------------------------------------------------------------
# X-Wing both ways
# ---------------------------------------------------------------------------------------
def test_xwing_reference_encapsulates_to_our_keys() -> None:
    for _ in range(N_KEYS):
        sk = kem.generate(kem.Suite.XWING)
        pub = sk.public_key()
        ss, ct = xwing_encaps_kyberpy(pub.raw, os.urandom(64))
        assert xwing_decaps_ours(sk, ct) == ss


def test_xwing_pyca_encapsulates_to_reference_keys() -> None:
    for _ in range(N_KEYS):
        seed = os.urandom(32)
        pk, dk_m, sk_x = xwing_keys_kyberpy(seed)
        assert kem.secret_key_from_seed(kem.Suite.XWING, seed).public_key().raw == pk
        ss, ct = xwing_encaps_pyca(kem.public_key_from_bytes(kem.Suite.XWING, pk).raw)
        assert xwing_decaps_kyberpy(dk_m, sk_x, pk, ct) == ss


# ---------------------------------------------------------------------------------------
# HPKE (RFC 9180) base mode, single shot, written from the RFC over the reference KEMs.
# pyca's hpke.Suite output is enc || AEAD ciphertext (checked below).
# ---------------------------------------------------------------------------------------
KDF_HKDF_SHA256 = 0x0001
KDF_HKDF_SHA384 = 0x0002
AEAD_AES_256_GCM = 0x0002
# FORMAT.md §4: the HPKE KDF follows the suite (HKDF-SHA384 for the CNSA 2.0 suite).
_KDF = {kem.Suite.MLKEM1024: (KDF_HKDF_SHA384, "sha384")}
_MLKEM = {kem.Suite.MLKEM768: ML_KEM_768, kem.Suite.MLKEM1024: ML_KEM_1024}


def _suite_id(kem_id: int, kdf_id: int) -> bytes:
    return (
        b"HPKE"
        + kem_id.to_bytes(2, "big")
        + kdf_id.to_bytes(2, "big")
        + (AEAD_AES_256_GCM.to_bytes(2, "big"))
    )


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes, h: str) -> bytes:
    return hmac.new(salt, b"HPKE-v1" + suite_id + label + ikm, h).digest()


def _labeled_expand(
    suite_id: bytes, prk: bytes, label: bytes, info: bytes, n: int, h: str
) -> bytes:
    labeled = n.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    out, block, counter = b"", b"", 1
    while len(out) < n:
        block = hmac.new(prk, block + labeled + bytes([counter]), h).digest()
        out += block
        counter += 1
    return out[:n]


def _key_schedule(suite: kem.Suite, shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    kdf_id, h = _KDF.get(suite, (KDF_HKDF_SHA256, "sha256"))
    sid = _suite_id(suite.wire_id, kdf_id)
    psk_id_hash = _labeled_extract(sid, b"", b"psk_id_hash", b"", h)
    info_hash = _labeled_extract(sid, b"", b"info_hash", info, h)
    context = b"\x00" + psk_id_hash + info_hash  # mode_base
    # RFC 9180: secret = LabeledExtract(shared_secret, "secret", psk), psk = "" in base mode
    secret = _labeled_extract(sid, shared_secret, b"secret", b"", h)
    key = _labeled_expand(sid, secret, b"key", context, 32, h)
    nonce = _labeled_expand(sid, secret, b"base_nonce", context, 12, h)
    return key, nonce


def _ref_open(suite: kem.Suite, seed: bytes, sealed: bytes, info: bytes) -> bytes:
    enc, ct = sealed[: suite.enc_size], sealed[suite.enc_size :]
    if suite is kem.Suite.XWING:
        pk, dk_m, sk_x = xwing_keys_kyberpy(seed)
        ss = xwing_decaps_kyberpy(dk_m, sk_x, pk, enc)
    else:
        _, dk = _MLKEM[suite].key_derive(seed)
        ss = _MLKEM[suite].decaps(dk, enc)
    key, nonce = _key_schedule(suite, ss, info)
    return AESGCM(key).decrypt(nonce, ct, b"")


def _ref_seal(suite: kem.Suite, pk: bytes, plaintext: bytes, info: bytes) -> bytes:
    if suite is kem.Suite.XWING:
        ss, enc = xwing_encaps_kyberpy(pk, os.urandom(64))
    else:
        ss, enc = _MLKEM[suite].encaps(pk)
    key, nonce = _key_schedule(suite, ss, info)
    return enc + AESGCM(key).encrypt(nonce, plaintext, b"")


def _pyca_suite(suite: kem.Suite) -> hpke.Suite:
    return hpke.Suite(suite.hpke_kem, wrap.hpke_kdf(suite), hpke.AEAD.AES_256_GCM)


@pytest.mark.parametrize("suite", list(kem.Suite), ids=lambda s: s.value)
def test_pyca_hpke_kem_matches_reference(suite: kem.Suite) -> None:
    """pyca seals to our PublicKey.to_pyca(); the RFC 9180 reference over X-Wing/ML-KEM opens,
    and the reverse: the reference seals, pyca opens with our SecretKey.to_pyca()."""
    assert suite.hpke_kem.enc_length() == suite.enc_size
    for _ in range(10):
        sk = kem.generate(suite)
        pub = sk.public_key()
        info = b"pqfile interop " + os.urandom(8)
        plaintext = os.urandom(32)
        sealed = _pyca_suite(suite).encrypt(plaintext, pub.to_pyca(), info=info)
        assert len(sealed) == suite.enc_size + 32 + 16
        assert _ref_open(suite, sk.seed, sealed, info) == plaintext
        sealed = _ref_seal(suite, pub.raw, plaintext, info)
        assert _pyca_suite(suite).decrypt(sealed, sk.to_pyca(), info=info) == plaintext


# ---------------------------------------------------------------------------------------
# Exact-length rejection
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("suite", list(kem.Suite), ids=lambda s: s.value)
def test_public_key_every_wrong_length_rejected(suite: kem.Suite) -> None:
    good = kem.generate(suite).public_key().raw
    size = suite.public_key_size
    assert len(good) == size
    for n in range(2 * size + 2):
        if n == size:
            continue
        candidate = (good * 3)[:n]
        with pytest.raises(KeyFormatError):
            kem.public_key_from_bytes(suite, candidate)
    assert kem.public_key_from_bytes(suite, good).raw == good


@pytest.mark.parametrize("suite", list(kem.Suite), ids=lambda s: s.value)
def test_seed_every_wrong_length_rejected(suite: kem.Suite) -> None:
    size = suite.seed_size
    for n in range(4 * size + 2):
        if n == size:
            continue
        with pytest.raises(KeyFormatError):
            kem.secret_key_from_seed(suite, os.urandom(n))
    kem.secret_key_from_seed(suite, os.urandom(size))


def test_mlkem_ciphertext_every_wrong_length_rejected() -> None:
    sk = kem.generate(kem.Suite.MLKEM768)
    pyca_key = sk.to_pyca()
    ss, ct = sk.public_key().to_pyca().encapsulate()
    _, dk = ML_KEM_768.key_derive(sk.seed)
    for n in range(2 * MLKEM768_CT + 2):
        if n == MLKEM768_CT:
            continue
        candidate = (ct * 3)[:n]
        with pytest.raises(ValueError):
            pyca_key.decapsulate(candidate)
        with pytest.raises(ValueError):
            ML_KEM_768.decaps(dk, candidate)
    assert pyca_key.decapsulate(ct) == ss


@pytest.mark.parametrize("suite", list(kem.Suite), ids=lambda s: s.value)
def test_hpke_enc_wrong_lengths_rejected(suite: kem.Suite) -> None:
    """pyca's HPKE open refuses (one opaque InvalidTag) any sealed box shorter than
    enc || tag, one byte short, or whose enc was cut."""
    sk = kem.generate(suite)
    sealed = _pyca_suite(suite).encrypt(b"x" * 32, sk.public_key().to_pyca(), info=b"i")
    minimum = suite.enc_size + 16
    for n in [*range(minimum + 1), len(sealed) - 1]:
        with pytest.raises(InvalidTag):
            _pyca_suite(suite).decrypt(sealed[:n], sk.to_pyca(), info=b"i")
    for cut in (1, 31, 32):
        mangled = sealed[: suite.enc_size - cut] + sealed[suite.enc_size :]
        with pytest.raises(InvalidTag):
            _pyca_suite(suite).decrypt(mangled, sk.to_pyca(), info=b"i")


def test_x25519_component_lengths_rejected() -> None:
    for n in (0, 31, 33, 64):
        with pytest.raises(ValueError):
            x25519.X25519PublicKey.from_public_bytes(b"\x09" * n)


# ---------------------------------------------------------------------------------------
# Modulus check: our loader, pyca and kyber-py agree (coefficients near q)
# ---------------------------------------------------------------------------------------
def _encode12(coeffs: list[int]) -> bytes:
    out = bytearray()
    for a, b in zip(coeffs[0::2], coeffs[1::2], strict=True):
        out += bytes([a & 0xFF, (a >> 8) | ((b & 0x0F) << 4), b >> 4])
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(
    bad=st.dictionaries(st.integers(0, 767), st.integers(Q, 4095), max_size=3),
    rho=st.binary(min_size=32, max_size=32),
    base_seed=st.binary(min_size=64, max_size=64),
)
def test_modulus_check_agrees_with_pyca_and_kyberpy(
    bad: dict[int, int], rho: bytes, base_seed: bytes
) -> None:
    # Start from a real key's t-hat (all coefficients < q), then push some to >= q.
    ek, _ = ML_KEM_768.key_derive(base_seed)
    packed = ek[:1152]
    coeffs = []
    for i in range(0, 1152, 3):
        b0, b1, b2 = packed[i], packed[i + 1], packed[i + 2]
        coeffs += [b0 | ((b1 & 0x0F) << 8), (b1 >> 4) | (b2 << 4)]
    for pos, value in bad.items():
        coeffs[pos] = value
    candidate = _encode12(coeffs) + rho
    if bad:
        with pytest.raises(KeyFormatError):
            kem.public_key_from_bytes(kem.Suite.MLKEM768, candidate)
        with pytest.raises(ValueError):
            mlkem.MLKEM768PublicKey.from_public_bytes(candidate)
        with pytest.raises(ValueError):
            ML_KEM_768.encaps(candidate)
    else:
        pub = kem.public_key_from_bytes(kem.Suite.MLKEM768, candidate)
        ss, ct = pub.to_pyca().encapsulate()
        assert len(ct) == MLKEM768_CT and len(ss) == 32
        ML_KEM_768.encaps(candidate)
