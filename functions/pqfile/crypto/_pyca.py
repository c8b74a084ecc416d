"""The pyca/cryptography primitives the PQF core uses, bound at their Rust layer.

pyca's public classes are thin Python shells over its Rust bindings: ``AESGCM``,
``HKDFExpand``, ``hpke.Suite``, ``Hash`` and ``HMAC`` *are* the Rust classes, and
``MLKEM768PublicKey.from_public_bytes`` (likewise for ML-KEM-1024 and X25519) only asks the
OpenSSL backend whether the algorithm is supported, then calls the Rust constructor. Going
through those shells costs a command-line start-up about 15 ms (issue 15): importing
``cryptography.hazmat.primitives.ciphers.aead`` loads every cipher and mode, and the first
``from_public_bytes`` loads the cffi OpenSSL backend with RSA, EC and padding. Here the same
Rust objects are reached directly, with the same support checks
(``backends/openssl/backend.py``: ``mlkem_supported``, ``x25519_supported``); what comes
back is exactly what the public API returns (``tests/unit/test_pyca_bindings.py`` checks it
against that API, so a pyca upgrade that moves these names fails there first).

pyca's Python modules for ML-KEM, X25519 and hashes (with ``cryptography.utils`` and
``typing``) load anyway on the file commands: pyca's Rust code imports them itself when it
builds an X-Wing HPKE key and when a hash checks its algorithm (that test pins it too), so
importing them here for the type names costs those commands nothing.

The hash and HMAC of the header MAC, the key id and the HPKE info also come from pyca
(rather than ``hashlib``/``hmac``, which would load a second OpenSSL library).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidKey, InvalidSignature, InvalidTag
from cryptography.exceptions import UnsupportedAlgorithm as UnsupportedAlgorithm
from cryptography.hazmat.bindings._rust import openssl as _rust
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.hashes import SHA256, SHA384, SHAKE256, HashAlgorithm

__all__ = [
    "AESGCM",
    "SHA256",
    "SHA384",
    "HKDFExpand",
    "HashAlgorithm",
    "InvalidTag",
    "digest",
    "hkdf_expand_verify",
    "hmac_digest",
    "hmac_verify",
    "hpke",
    "mlkem",
    "mlkem768_from_seed",
    "mlkem768_public",
    "mlkem1024_from_seed",
    "mlkem1024_public",
    "shake256",
    "x25519",
    "x25519_generate",
    "x25519_private",
    "x25519_public",
]

AESGCM = _rust.aead.AESGCM
HKDFExpand = _rust.kdf.HKDFExpand
hpke = _rust.hpke


def _mlkem_supported() -> None:
    if not (
        _rust.CRYPTOGRAPHY_IS_AWSLC
        or _rust.CRYPTOGRAPHY_IS_BORINGSSL
        or _rust.CRYPTOGRAPHY_OPENSSL_350_OR_GREATER
    ):
        raise UnsupportedAlgorithm("ML-KEM is not supported by this OpenSSL")


def _x25519_supported() -> None:
    if _rust.is_fips_enabled():
        raise UnsupportedAlgorithm("X25519 is not supported in FIPS mode")


def mlkem768_public(raw: bytes) -> mlkem.MLKEM768PublicKey:
    _mlkem_supported()
    return _rust.mlkem.from_mlkem768_public_bytes(raw)


def mlkem1024_public(raw: bytes) -> mlkem.MLKEM1024PublicKey:
    _mlkem_supported()
    return _rust.mlkem.from_mlkem1024_public_bytes(raw)


def mlkem768_from_seed(seed: bytes) -> mlkem.MLKEM768PrivateKey:
    _mlkem_supported()
    return _rust.mlkem.from_mlkem768_seed_bytes(seed)


def mlkem1024_from_seed(seed: bytes) -> mlkem.MLKEM1024PrivateKey:
    _mlkem_supported()
    return _rust.mlkem.from_mlkem1024_seed_bytes(seed)


def x25519_public(raw: bytes) -> x25519.X25519PublicKey:
    _x25519_supported()
    return _rust.x25519.from_public_bytes(raw)


def x25519_private(raw: bytes) -> x25519.X25519PrivateKey:
    _x25519_supported()
    return _rust.x25519.from_private_bytes(raw)


def x25519_generate() -> x25519.X25519PrivateKey:
    _x25519_supported()
    return _rust.x25519.generate_key()


def digest(algorithm: HashAlgorithm, data: bytes) -> bytes:
    """The hash of ``data`` (pyca ``Hash``)."""
    h = _rust.hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def shake256(data: bytes, length: int) -> bytes:
    """SHAKE256(data) to ``length`` bytes (FIPS 202)."""
    return digest(SHAKE256(length), data)


def hmac_digest(algorithm: HashAlgorithm, key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104) of ``data`` under ``key``."""
    h = _rust.hmac.HMAC(key, algorithm)
    h.update(data)
    return h.finalize()


def hmac_verify(algorithm: HashAlgorithm, key: bytes, data: bytes, expected: bytes) -> bool:
    """Whether HMAC(key, data) equals ``expected``, compared in constant time by pyca."""
    h = _rust.hmac.HMAC(key, algorithm)
    h.update(data)
    try:
        h.verify(expected)
    except InvalidSignature:
        return False
    return True


def hkdf_expand_verify(
    algorithm: HashAlgorithm, prk: bytes, info: bytes, expected: bytes
) -> bool:
    """Whether HKDF-Expand(prk, info, len(expected)) equals ``expected`` (constant time)."""
    try:
        HKDFExpand(algorithm, len(expected), info).verify(prk, expected)
    except InvalidKey:
        return False
    return True
