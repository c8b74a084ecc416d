"""KEM suites and key objects (docs/FORMAT.md section "Suites", docs/CONTRACTS.md).

Three suites, all usable with HPKE (RFC 9180) through pyca/cryptography:

- ``Suite.XWING``: X-Wing, MLKEM768-X25519 (draft-connolly-cfrg-xwing-kem, HPKE KEM 0x647a),
  the default. Secret key = the 32-byte X-Wing seed; public key = ML-KEM-768 ek (1184 bytes)
  || X25519 public key (32 bytes).
- ``Suite.MLKEM768``: pure ML-KEM-768 (FIPS 203, HPKE KEM 0x0041). Secret key = the 64-byte
  FIPS 203 seed d || z; public key = ek (1184 bytes).
- ``Suite.MLKEM1024``: pure ML-KEM-1024 (FIPS 203, HPKE KEM 0x0042), the CNSA 2.0 suite.
  Secret key = the 64-byte seed d || z; public key = ek (1568 bytes).

Secret keys are always held as seeds; the expanded keys exist only inside pyca objects.
Inputs are checked by exact length, and encapsulation keys by the FIPS 203 modulus check
(section 7.2, "input checking"), before any cryptography runs.
"""

from __future__ import annotations

import enum
import os

from pqfile.crypto import _pyca
from pqfile.crypto._pyca import hpke, mlkem, x25519
from pqfile.errors import KeyFormatError, UnsupportedSuiteError
from pqfile.format._frozen import Frozen

# FIPS 203 ML-KEM-768 parameters.
MLKEM768_EK_SIZE = 1184
MLKEM768_CT_SIZE = 1088
MLKEM768_SEED_SIZE = 64  # d || z
_MLKEM_Q = 3329
_MLKEM768_K = 3
MLKEM1024_EK_SIZE = 1568
MLKEM1024_CT_SIZE = 1568
_MLKEM1024_K = 4
X25519_KEY_SIZE = 32
XWING_SEED_SIZE = 32
XWING_PUBLIC_KEY_SIZE = MLKEM768_EK_SIZE + X25519_KEY_SIZE  # 1216
XWING_CT_SIZE = MLKEM768_CT_SIZE + X25519_KEY_SIZE  # 1120

KEY_ID_SIZE = 16
_KEY_ID_LABEL = b"pqfile/key-id/v1"


class Suite(enum.Enum):
    """A KEM suite. ``value`` is its name in key files, the database and the CLI."""

    XWING = "xwing"
    MLKEM768 = "mlkem768"
    MLKEM1024 = "mlkem1024"

    @property
    def wire_id(self) -> int:
        """The HPKE KEM identifier, used as the suite id in PQF headers."""
        return _WIRE_IDS[self]

    @property
    def public_key_size(self) -> int:
        return _SIZES[self][0]

    @property
    def seed_size(self) -> int:
        return _SIZES[self][1]

    @property
    def enc_size(self) -> int:
        """Length of the HPKE encapsulated key (the KEM ciphertext)."""
        return _SIZES[self][2]

    @property
    def hpke_kem(self) -> hpke.KEM:
        return _HPKE_KEMS[self]

    @property
    def rank(self) -> int:
        """Strength order for the downgrade guard (FORMAT.md §8): NIST category first, then
        having a classical half: mlkem768 (cat. 3) < xwing (cat. 3 + X25519) < mlkem1024 (5)."""
        return _RANKS[self]

    @classmethod
    def from_name(cls, name: str) -> Suite:
        try:
            return cls(name.lower())
        except ValueError:
            known = ", ".join(s.value for s in cls)
            raise UnsupportedSuiteError(f"unknown suite {name!r} (known: {known})") from None

    @classmethod
    def from_wire_id(cls, wire_id: int) -> Suite:
        for suite, value in _WIRE_IDS.items():
            if value == wire_id:
                return suite
        raise UnsupportedSuiteError(f"unsupported suite id 0x{wire_id:04x}")


_WIRE_IDS = {Suite.XWING: 0x647A, Suite.MLKEM768: 0x0041, Suite.MLKEM1024: 0x0042}
# suite -> (public key size, seed size, HPKE enc size)
_SIZES = {
    Suite.XWING: (XWING_PUBLIC_KEY_SIZE, XWING_SEED_SIZE, XWING_CT_SIZE),
    Suite.MLKEM768: (MLKEM768_EK_SIZE, MLKEM768_SEED_SIZE, MLKEM768_CT_SIZE),
    Suite.MLKEM1024: (MLKEM1024_EK_SIZE, MLKEM768_SEED_SIZE, MLKEM1024_CT_SIZE),
}
_HPKE_KEMS = {
    Suite.XWING: hpke.KEM.MLKEM768_X25519,
    Suite.MLKEM768: hpke.KEM.MLKEM768,
    Suite.MLKEM1024: hpke.KEM.MLKEM1024,
}
_RANKS = {Suite.MLKEM768: 0, Suite.XWING: 1, Suite.MLKEM1024: 2}
DEFAULT_SUITE = Suite.XWING


def _check_mlkem_ek(ek: bytes, k: int = _MLKEM768_K) -> None:
    """FIPS 203 section 7.2: ByteEncode12(ByteDecode12(ek[:384k])) == ek[:384k].

    Equivalent to: every 12-bit coefficient of t-hat is below q = 3329.
    """
    name = f"ML-KEM-{256 * k}"
    size = 384 * k + 32
    if len(ek) != size:
        raise KeyFormatError(f"{name} encapsulation key must be {size} bytes, got {len(ek)}")
    packed = ek[: 384 * k]
    for i in range(0, len(packed), 3):
        b0, b1, b2 = packed[i], packed[i + 1], packed[i + 2]
        if (b0 | ((b1 & 0x0F) << 8)) >= _MLKEM_Q or ((b1 >> 4) | (b2 << 4)) >= _MLKEM_Q:
            raise KeyFormatError(f"{name} encapsulation key fails the FIPS 203 modulus check")


_MLKEMPrivate = mlkem.MLKEM768PrivateKey | mlkem.MLKEM1024PrivateKey
# What pyca's hpke.Suite.decrypt takes for a secret key of each suite.
PycaSecretKey = _MLKEMPrivate | hpke.MLKEM768X25519PrivateKey


class PublicKey(Frozen):
    """A recipient's public key. Build it with :func:`public_key_from_bytes`."""

    _fields = ("suite", "raw")
    __slots__ = _fields
    suite: Suite
    raw: bytes

    def __init__(self, suite: Suite, raw: bytes) -> None:
        self._init(suite, raw)

    @property
    def key_id_bytes(self) -> bytes:
        """First 16 bytes of SHA-256(label || wire id || raw public key)."""
        digest = _pyca.digest(
            _pyca.SHA256(), _KEY_ID_LABEL + self.suite.wire_id.to_bytes(2, "big") + self.raw
        )
        return digest[:KEY_ID_SIZE]

    @property
    def key_id(self) -> str:
        return self.key_id_bytes.hex()

    def to_pyca(
        self,
    ) -> mlkem.MLKEM768PublicKey | mlkem.MLKEM1024PublicKey | hpke.MLKEM768X25519PublicKey:
        """The object pyca's ``hpke.Suite.encrypt`` accepts."""
        if self.suite is Suite.MLKEM768:
            return _pyca.mlkem768_public(self.raw)
        if self.suite is Suite.MLKEM1024:
            return _pyca.mlkem1024_public(self.raw)
        return hpke.MLKEM768X25519PublicKey(
            _pyca.mlkem768_public(self.raw[:MLKEM768_EK_SIZE]),
            _pyca.x25519_public(self.raw[MLKEM768_EK_SIZE:]),
        )


class SecretKey(Frozen):
    """A secret key, held as its seed. ``repr`` never shows the seed."""

    _fields = ("suite", "seed")
    __slots__ = _fields
    _hidden = frozenset({"seed"})
    suite: Suite
    seed: bytes

    def __init__(self, suite: Suite, seed: bytes) -> None:
        self._init(suite, seed)

    def _components(self) -> tuple[_MLKEMPrivate, x25519.X25519PrivateKey | None]:
        if self.suite is Suite.MLKEM768:
            return _pyca.mlkem768_from_seed(self.seed), None
        if self.suite is Suite.MLKEM1024:
            return _pyca.mlkem1024_from_seed(self.seed), None
        # draft-connolly-cfrg-xwing-kem: expanded = SHAKE256(seed, 96 bytes); ML-KEM-768
        # KeyGen_internal(d = expanded[0:32], z = expanded[32:64]); sk_X = expanded[64:96].
        expanded = _pyca.shake256(self.seed, 96)
        return (
            _pyca.mlkem768_from_seed(expanded[:64]),
            _pyca.x25519_private(expanded[64:96]),
        )

    def to_pyca(self) -> PycaSecretKey:
        """The object pyca's ``hpke.Suite.decrypt`` accepts."""
        return self._to_pyca(*self._components())

    def with_pyca(self) -> tuple[PublicKey, PycaSecretKey]:
        """(:meth:`public_key`, :meth:`to_pyca`) from one key expansion: opening a package
        needs both, and each expands the seed (SHAKE256, ML-KEM KeyGen, X25519)."""
        mlkem_key, x_key = self._components()
        return self._public_key(mlkem_key, x_key), self._to_pyca(mlkem_key, x_key)

    @staticmethod
    def _to_pyca(mlkem_key: _MLKEMPrivate, x_key: x25519.X25519PrivateKey | None) -> PycaSecretKey:
        if x_key is None:
            return mlkem_key
        if not isinstance(mlkem_key, mlkem.MLKEM768PrivateKey):  # pragma: no cover - X-Wing
            raise TypeError("X-Wing holds an ML-KEM-768 key")
        return hpke.MLKEM768X25519PrivateKey(mlkem_key, x_key)

    def components(self) -> tuple[_MLKEMPrivate, x25519.X25519PrivateKey | None]:
        """The ML-KEM key and, for X-Wing, the X25519 key (for tests and tooling)."""
        return self._components()

    def public_key(self) -> PublicKey:
        return self._public_key(*self._components())

    def _public_key(
        self, mlkem_key: _MLKEMPrivate, x_key: x25519.X25519PrivateKey | None
    ) -> PublicKey:
        raw = mlkem_key.public_key().public_bytes_raw()
        if x_key is not None:
            raw += x_key.public_key().public_bytes_raw()
        return PublicKey(self.suite, raw)


def generate(suite: Suite = DEFAULT_SUITE) -> SecretKey:
    """A fresh secret key from the operating system's CSPRNG."""
    return SecretKey(suite, os.urandom(suite.seed_size))


def secret_key_from_seed(suite: Suite, seed: bytes) -> SecretKey:
    """A secret key from its seed; the length must be exact."""
    seed = bytes(seed)
    if len(seed) != suite.seed_size:
        raise KeyFormatError(
            f"{suite.value} secret seed must be {suite.seed_size} bytes, got {len(seed)}"
        )
    return SecretKey(suite, seed)


def public_key_from_bytes(suite: Suite, raw: bytes) -> PublicKey:
    """A public key from its raw encoding: exact length, the FIPS 203 modulus check, and for
    X-Wing an X25519 half that is not a low-order point."""
    raw = bytes(raw)
    if len(raw) != suite.public_key_size:
        raise KeyFormatError(
            f"{suite.value} public key must be {suite.public_key_size} bytes, got {len(raw)}"
        )
    if suite is Suite.MLKEM1024:
        _check_mlkem_ek(raw, _MLKEM1024_K)
    else:
        _check_mlkem_ek(raw[:MLKEM768_EK_SIZE])
    try:
        key = PublicKey(suite, raw)
        key.to_pyca()  # let OpenSSL reject anything else it dislikes, now rather than later
    except ValueError as exc:
        raise KeyFormatError(f"invalid {suite.value} public key") from exc
    if suite is Suite.XWING:
        _check_x25519_not_low_order(raw[MLKEM768_EK_SIZE:])
    return key


def _check_x25519_not_low_order(point: bytes) -> None:
    """Refuse an X25519 public key of small order (FORMAT.md §1, "Public key checks").

    A trial exchange with a fresh ephemeral scalar: X25519 scalars are multiples of the
    cofactor 8, so the result is all zeros exactly when the point has order 1, 2, 4 or 8 (on
    the curve or its twist), whatever its encoding (RFC 7748 masks bit 255 and reduces mod
    p). OpenSSL raises on that all-zero result, as it would later during encapsulation.
    """
    ephemeral = _pyca.x25519_generate()
    try:
        ephemeral.exchange(_pyca.x25519_public(point))
    except ValueError:
        raise KeyFormatError(
            "invalid xwing public key: its X25519 half is a low-order point"
        ) from None
