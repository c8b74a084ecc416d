"""Public key checks (docs/FORMAT.md §1, "Public key checks"): an X-Wing key whose X25519
half is a low-order point is refused when it is loaded, however it arrives, and a package
whose X25519 ciphertext half is a low-order point does not decrypt."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pqfile.cli import main
from pqfile.crypto import envelope, keyfiles, wrap
from pqfile.crypto.kem import MLKEM768_EK_SIZE, PublicKey, Suite, generate, public_key_from_bytes
from pqfile.errors import DecryptionError, KeyFormatError

_P = 2**255 - 19
# RFC 7748 u-coordinates of the points of order 1, 2, 4 and 8 (curve and twist), in the
# canonical range and as their non-canonical aliases p, p + 1; each also with bit 255 set,
# which X25519 ignores.
_SMALL_ORDER_U = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    _P - 1,
    _P,
    _P + 1,
]
LOW_ORDER_POINTS = [
    (u + high).to_bytes(32, "little") for u in _SMALL_ORDER_U for high in (0, 1 << 255)
]


def _xwing_public_with(x_half: bytes) -> bytes:
    return generate(Suite.XWING).public_key().raw[:MLKEM768_EK_SIZE] + x_half


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8] + p.hex()[-2:])
def test_low_order_x25519_half_is_refused_raw_and_pem(point: bytes) -> None:
    raw = _xwing_public_with(point)
    with pytest.raises(KeyFormatError, match="low-order"):
        public_key_from_bytes(Suite.XWING, raw)
    # PEM and DER end in the same check (PublicKey() itself does no checking)
    pem = keyfiles.public_key_to_pem(PublicKey(Suite.XWING, raw))
    with pytest.raises(KeyFormatError, match="low-order"):
        keyfiles.public_key_from_pem(pem)


def test_ordinary_x25519_halves_still_load() -> None:
    # u = 9 (the base point), and fresh keys: the check costs one exchange, no false alarms
    public_key_from_bytes(Suite.XWING, _xwing_public_with((9).to_bytes(32, "little")))
    for _ in range(50):
        public_key_from_bytes(Suite.XWING, generate(Suite.XWING).public_key().raw)


def test_cli_encrypt_to_a_low_order_key_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = keyfiles.public_key_to_pem(PublicKey(Suite.XWING, _xwing_public_with(bytes(32))))
    (tmp_path / "bad.pub").write_bytes(pem)
    (tmp_path / "in").write_bytes(b"secret")
    rc = main(["encrypt", "-r", str(tmp_path / "bad.pub"), "--in", str(tmp_path / "in"),
               "--out", str(tmp_path / "out.pqf")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "low-order" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pub", "in"]


def test_the_pools_stored_bytes_are_checked_too() -> None:
    import dataclasses

    from pqfile.keys.policy import PoolPolicy
    from pqfile.keys.pool import KeyPool
    from tests.functional.fakes import FakeAttestor, FakeKeyStorage, FakeProtector

    pool = KeyPool(FakeKeyStorage(), FakeProtector(), attestor=FakeAttestor(),
                   policy=PoolPolicy(target_active=1, floor_active=1), actor="test")  # fmt: skip
    (record,) = pool.refill("xwing")
    repo = pool.storage.keys
    stored = repo.records[record.key_id]  # type: ignore[attr-defined]
    bad = dataclasses.replace(stored, public_key=stored.public_key[:MLKEM768_EK_SIZE] + bytes(32))
    repo.records[record.key_id] = bad  # type: ignore[attr-defined]
    with pytest.raises(KeyFormatError, match="low-order"):
        pool.public_key(record.key_id)


# --- the decrypt side ---------------------------------------------------------------------
# RFC 9180 base mode by hand (HKDF-SHA256, AES-256-GCM) over an X-Wing shared secret we
# compute ourselves, so a ciphertext with a low-order X25519 half can be sealed the way a
# lenient X-Wing implementation (one that accepts an all-zero X25519 secret) would open it.

_XWING_LABEL = b"\\.//^\\"
_SUITE_ID = b"HPKE" + (0x647A).to_bytes(2, "big") + (1).to_bytes(2, "big") + (2).to_bytes(2, "big")


def _extract(salt: bytes, label: bytes, ikm: bytes) -> bytes:
    h = hmac.HMAC(salt or bytes(32), hashes.SHA256())
    h.update(b"HPKE-v1" + _SUITE_ID + label + ikm)
    return h.finalize()


def _expand(prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    h = hmac.HMAC(prk, hashes.SHA256())  # one block suffices for length <= 32
    h.update(length.to_bytes(2, "big") + b"HPKE-v1" + _SUITE_ID + label + info + b"\x01")
    return h.finalize()[:length]


def _hpke_seal_base(shared_secret: bytes, info: bytes, plaintext: bytes) -> bytes:
    context = b"\x00" + _extract(b"", b"psk_id_hash", b"") + _extract(b"", b"info_hash", info)
    secret = _extract(shared_secret, b"secret", b"")
    key = _expand(secret, b"key", context, 32)
    nonce = _expand(secret, b"base_nonce", context, 12)
    return AESGCM(key).encrypt(nonce, plaintext, b"")


def _xwing_encapsulate(public: bytes, ct_x: bytes, ss_x: bytes) -> tuple[bytes, bytes]:
    """draft-connolly-cfrg-xwing-kem Encapsulate with a chosen X25519 half."""
    ss_m, ct_m = mlkem.MLKEM768PublicKey.from_public_bytes(public[:MLKEM768_EK_SIZE]).encapsulate()
    pk_x = public[MLKEM768_EK_SIZE:]
    ss = hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + _XWING_LABEL).digest()
    return ct_m + ct_x, ss


def test_hand_made_hpke_opens_with_an_honest_x25519_half() -> None:
    # the control: the construction below is right, so its refusal means what it says
    sk = generate(Suite.XWING)
    public = sk.public_key().raw
    eph = x25519.X25519PrivateKey.generate()
    ct_x = eph.public_key().public_bytes_raw()
    ss_x = eph.exchange(x25519.X25519PublicKey.from_public_bytes(public[MLKEM768_EK_SIZE:]))
    enc, ss = _xwing_encapsulate(public, ct_x, ss_x)
    wrapped = _hpke_seal_base(ss, b"info", b"k" * 32)
    assert wrap.hpke_unwrap(enc, wrapped, sk, b"info") == b"k" * 32


@pytest.mark.parametrize("point", LOW_ORDER_POINTS[:4], ids=lambda p: p.hex()[:8] + p.hex()[-2:])
def test_decrypt_refuses_a_low_order_x25519_ciphertext_half(point: bytes) -> None:
    # A lenient implementation computes ss_X = 0^32 here and opens the data key; OpenSSL
    # refuses the all-zero X25519 result, pyca reports it as a failed open, we as the
    # opaque DecryptionError.
    sk = generate(Suite.XWING)
    enc, ss = _xwing_encapsulate(sk.public_key().raw, point, bytes(32))
    wrapped = _hpke_seal_base(ss, b"info", b"k" * 32)
    with pytest.raises(DecryptionError):
        wrap.hpke_unwrap(enc, wrapped, sk, b"info")


def test_a_package_with_a_low_order_ciphertext_half_does_not_decrypt() -> None:
    sk = generate(Suite.XWING)
    package = bytearray(envelope.encrypt_bytes(b"plain", sk.public_key()))
    # the X25519 half of HPKE enc: stanza = key id (16) || enc (1120) || ...
    header = envelope.read_header(bytes(package))
    start = header.size - 32 - 48 - 32  # MAC, wrapped key, then the last 32 bytes of enc
    assert bytes(package[start : start + 32]) == header.enc[-32:]
    package[start : start + 32] = bytes(32)
    with pytest.raises(DecryptionError):
        envelope.decrypt_bytes(package, sk)
