"""HPKE wrap and unwrap of the data key (docs/FORMAT.md section 4).

One tiny interface, as in age: ``hpke_wrap`` seals a data key to a recipient,
``hpke_unwrap`` opens it. Only pyca's public HPKE API is used (base mode, empty AAD).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from pqfile.crypto._pyca import InvalidTag, hpke
from pqfile.crypto.kem import PublicKey, PycaSecretKey, SecretKey, Suite
from pqfile.crypto.keyschedule import Kdf
from pqfile.errors import DecryptionError
from pqfile.format.header import DATA_KEY_SIZE, WRAPPED_KEY_SIZE

WRAP_LABEL = b"pqfile/v1/wrap"

# (data key, recipient, info) -> (enc, wrapped data key). Swappable for deterministic vectors.
WrapFunction = Callable[[bytes, PublicKey, bytes], tuple[bytes, bytes]]


def hpke_kdf(suite: Suite) -> hpke.KDF:
    """The HPKE KDF follows the KEM suite: HKDF-SHA384 for mlkem1024 (CNSA 2.0), else SHA-256.

    It belongs to the recipient's suite, not to the package: a rewrap into another suite
    changes it, while the package's own KDF (header byte 55) stays.
    """
    return hpke.KDF.HKDF_SHA384 if suite is Suite.MLKEM1024 else hpke.KDF.HKDF_SHA256


@cache
def hpke_suite(suite: Suite) -> hpke.Suite:
    """HPKE with the suite's KEM, its KDF and AES-256-GCM (FORMAT.md §4)."""
    return hpke.Suite(suite.hpke_kem, hpke_kdf(suite), hpke.AEAD.AES_256_GCM)


def hpke_info(core_header: bytes, key_id: bytes, kdf: Kdf) -> bytes:
    """info = "pqfile/v1/wrap" || H(core header) || key id (FORMAT.md §4).

    H is the package's hash (header byte 55): SHA-256 (62-byte info) or SHA-384 (78 bytes).
    """
    return WRAP_LABEL + kdf.hash(core_header) + key_id


def hpke_wrap(data_key: bytes, recipient: PublicKey, info: bytes) -> tuple[bytes, bytes]:
    """Seal the data key to the recipient; returns (enc, ciphertext)."""
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError("data key must be 32 bytes")
    sealed = hpke_suite(recipient.suite).encrypt(data_key, recipient.to_pyca(), info=info)
    enc_size = recipient.suite.enc_size
    enc, wrapped = sealed[:enc_size], sealed[enc_size:]
    if len(wrapped) != WRAPPED_KEY_SIZE:  # pragma: no cover - pyca contract
        raise RuntimeError("unexpected HPKE ciphertext length")
    return enc, wrapped


def hpke_unwrap(
    enc: bytes,
    wrapped: bytes,
    identity: SecretKey,
    info: bytes,
    pyca_identity: PycaSecretKey | None = None,
) -> bytes:
    """Open the data key; any failure is the opaque DecryptionError. ``pyca_identity`` is
    ``identity.to_pyca()`` when the caller has it already (SecretKey.with_pyca)."""
    key = identity.to_pyca() if pyca_identity is None else pyca_identity
    try:
        data_key = hpke_suite(identity.suite).decrypt(enc + wrapped, key, info=info)
    except (InvalidTag, ValueError):
        raise DecryptionError() from None
    if len(data_key) != DATA_KEY_SIZE:
        raise DecryptionError()
    return data_key
