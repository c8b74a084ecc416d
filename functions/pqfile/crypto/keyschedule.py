"""Body key schedule and header MAC (docs/FORMAT.md sections 1, 5 and 7).

The key-schedule hash is fixed at encryption and recorded in byte 55 of the core header
(:class:`Kdf`): HKDF-SHA256 (``0x00``, every package before the CNSA 2.0 suite) or
HKDF-SHA384 (``0x01``, RFC 5869 with SHA-384, as CNSA 2.0 asks). The header MAC is an HMAC
with the same hash, so its length (32 or 48 bytes) follows from the fixed part.
"""

from __future__ import annotations

import enum

from pqfile.crypto import _pyca
from pqfile.crypto.kem import Suite
from pqfile.errors import MalformedPackageError
from pqfile.format._frozen import Frozen

BODY_LABEL = b"pqfile/v1/body"
COMMIT_LABEL = b"pqfile/v1/commit"
HEADER_MAC_LABEL = b"pqfile/v1/header-mac"
BODY_KEY_SIZE = 32  # AES-256-GCM, whatever the hash
COMMITMENT_SIZE = 32


class Kdf(enum.Enum):
    """The package's key-schedule hash; ``value`` is its id in header byte 55 (FORMAT.md §1)."""

    HKDF_SHA256 = 0x00
    HKDF_SHA384 = 0x01

    @property
    def label(self) -> str:
        """Its name in inspect output and the vectors (``hkdf-sha256``, ``hkdf-sha384``)."""
        return self.name.lower().replace("_", "-")

    @property
    def hash_name(self) -> str:
        """The name of the hash (``sha256``, ``sha384``)."""
        return _HASH_NAMES[self]

    @property
    def digest_size(self) -> int:
        """Hash output length: the header MAC and the ``mac_key`` are this long (32 or 48)."""
        return _DIGEST_SIZES[self]

    @property
    def mac_size(self) -> int:
        return self.digest_size

    def hash(self, data: bytes) -> bytes:
        """The plain hash of ``data`` (the core-header hash in the HPKE ``info``, §4)."""
        return _pyca.digest(self.pyca_hash(), data)

    def pyca_hash(self) -> _pyca.HashAlgorithm:
        return _pyca.SHA384() if self is Kdf.HKDF_SHA384 else _pyca.SHA256()

    @classmethod
    def from_wire_id(cls, kdf_id: int) -> Kdf:
        try:
            return cls(kdf_id)
        except ValueError:
            raise MalformedPackageError(f"unknown KDF id 0x{kdf_id:02x} in package") from None

    @classmethod
    def for_suite(cls, suite: Suite) -> Kdf:
        """What encryption writes: the CNSA 2.0 suite (mlkem1024) SHA-384, the others SHA-256."""
        return cls.HKDF_SHA384 if suite is Suite.MLKEM1024 else cls.HKDF_SHA256


_HASH_NAMES = {Kdf.HKDF_SHA256: "sha256", Kdf.HKDF_SHA384: "sha384"}
_DIGEST_SIZES = {Kdf.HKDF_SHA256: 32, Kdf.HKDF_SHA384: 48}
MAX_MAC_SIZE = max(_DIGEST_SIZES.values())


class BodyKeys(Frozen):
    """The three keys derived from the data key and the per-package salt."""

    _fields = ("body_key", "commitment", "mac_key")
    __slots__ = _fields
    _hidden = frozenset(_fields)
    body_key: bytes
    commitment: bytes
    mac_key: bytes

    def __init__(self, body_key: bytes, commitment: bytes, mac_key: bytes) -> None:
        self._init(body_key, commitment, mac_key)


def _expand(kdf: Kdf, prk: bytes, label: bytes, length: int) -> bytes:
    return _pyca.HKDFExpand(kdf.pyca_hash(), length, label).derive(prk)


def _extract(kdf: Kdf, salt: bytes, data_key: bytes) -> bytes:
    return _pyca.hmac_digest(kdf.pyca_hash(), salt, data_key)  # RFC 5869 HKDF-Extract


def derive_body_keys(data_key: bytes, salt: bytes, kdf: Kdf) -> BodyKeys:
    """FORMAT.md §5: prk = HKDF-Extract(salt, DK); three HKDF-Expand outputs.

    The body key and the commitment are 32 bytes with either hash; the MAC key is as long
    as the hash output (32 for SHA-256, 48 for SHA-384, RFC 2104's recommended key length).
    """
    prk = _extract(kdf, salt, data_key)
    return BodyKeys(
        body_key=_expand(kdf, prk, BODY_LABEL, BODY_KEY_SIZE),
        commitment=_expand(kdf, prk, COMMIT_LABEL, COMMITMENT_SIZE),
        mac_key=_expand(kdf, prk, HEADER_MAC_LABEL, kdf.digest_size),
    )


def header_mac(mac_key: bytes, mac_input: bytes, kdf: Kdf) -> bytes:
    """FORMAT.md §7: HMAC with the package's hash over every header byte before the MAC."""
    return _pyca.hmac_digest(kdf.pyca_hash(), mac_key, mac_input)


def open_body_keys(
    data_key: bytes, salt: bytes, kdf: Kdf, commitment: bytes, mac_input: bytes, mac: bytes
) -> BodyKeys | None:
    """FORMAT.md §10 step 8: the body keys if both the key commitment (§5) and the header
    MAC (§7) match, else None. Both are always checked, each compared in constant time by
    pyca (``verify``), so neither the result nor the time says which one failed."""
    prk = _extract(kdf, salt, data_key)
    ok = _pyca.hkdf_expand_verify(kdf.pyca_hash(), prk, COMMIT_LABEL, commitment)
    mac_key = _expand(kdf, prk, HEADER_MAC_LABEL, kdf.digest_size)
    ok &= _pyca.hmac_verify(kdf.pyca_hash(), mac_key, mac_input, mac)
    keys = BodyKeys(_expand(kdf, prk, BODY_LABEL, BODY_KEY_SIZE), commitment, mac_key)
    return keys if ok else None


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison (for callers outside the header path)."""
    import hmac  # here: loading it also loads the interpreter's own OpenSSL (CLI start-up)

    return hmac.compare_digest(a, b)
