"""crypto/_pyca.py reaches pyca's Rust classes directly (issue 15: CLI start-up). These
tests hold it to pyca's public API: the same classes, objects the public ABCs accept, the
same bytes, and the same refusals; a pyca release that moves these names fails here."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from pqfile.crypto import _pyca
from pqfile.crypto.kem import Suite, generate


def test_aliases_are_pycas_public_classes() -> None:
    assert _pyca.AESGCM is AESGCM
    assert _pyca.HKDFExpand is HKDFExpand
    assert _pyca.hpke.Suite is hpke.Suite
    assert _pyca.hpke.MLKEM768X25519PublicKey is hpke.MLKEM768X25519PublicKey


def test_mlkem_keys_equal_the_public_constructors() -> None:
    seed = os.urandom(64)
    ours = _pyca.mlkem768_from_seed(seed)
    theirs = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
    assert isinstance(ours, mlkem.MLKEM768PrivateKey)
    raw = theirs.public_key().public_bytes_raw()
    assert ours.public_key().public_bytes_raw() == raw
    pub = _pyca.mlkem768_public(raw)
    assert isinstance(pub, mlkem.MLKEM768PublicKey)
    assert pub == mlkem.MLKEM768PublicKey.from_public_bytes(raw)
    ss, ct = pub.encapsulate()
    assert theirs.decapsulate(ct) == ss

    big = _pyca.mlkem1024_from_seed(seed)
    assert isinstance(big, mlkem.MLKEM1024PrivateKey)
    raw1024 = mlkem.MLKEM1024PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw()
    assert big.public_key().public_bytes_raw() == raw1024
    assert isinstance(_pyca.mlkem1024_public(raw1024), mlkem.MLKEM1024PublicKey)
    with pytest.raises(ValueError):
        _pyca.mlkem768_public(raw[:-1])


def test_x25519_keys_equal_the_public_constructors() -> None:
    raw = os.urandom(32)
    ours = _pyca.x25519_private(raw)
    theirs = x25519.X25519PrivateKey.from_private_bytes(raw)
    assert isinstance(ours, x25519.X25519PrivateKey)
    public = theirs.public_key().public_bytes_raw()
    assert ours.public_key().public_bytes_raw() == public
    peer = _pyca.x25519_generate()
    assert isinstance(peer, x25519.X25519PrivateKey)
    assert peer.exchange(_pyca.x25519_public(public)) == theirs.exchange(peer.public_key())
    with pytest.raises(ValueError):
        _pyca.x25519_public(public[:31])


def test_hpke_seals_to_our_objects_and_opens_with_them() -> None:
    secret = generate(Suite.XWING)
    suite = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    sealed = suite.encrypt(b"k" * 32, secret.public_key().to_pyca(), info=b"i")
    assert suite.decrypt(sealed, secret.to_pyca(), info=b"i") == b"k" * 32


def test_hashes_and_hmac_equal_the_standard_library() -> None:
    data, key = os.urandom(1000), os.urandom(40)
    assert _pyca.digest(_pyca.SHA256(), data) == hashlib.sha256(data).digest()
    assert _pyca.digest(_pyca.SHA384(), data) == hashlib.sha384(data).digest()
    assert _pyca.shake256(data, 96) == hashlib.shake_256(data).digest(96)
    for algorithm, name in ((_pyca.SHA256(), "sha256"), (_pyca.SHA384(), "sha384")):
        mac = hmac.new(key, data, name).digest()
        assert _pyca.hmac_digest(algorithm, key, data) == mac
        assert _pyca.hmac_verify(algorithm, key, data, mac)
        assert not _pyca.hmac_verify(algorithm, key, data, mac[:-1] + bytes([mac[-1] ^ 1]))
        assert not _pyca.hmac_verify(algorithm, key, data, mac[:-1])


def test_hkdf_expand_verify() -> None:
    prk = os.urandom(32)
    okm = HKDFExpand(hashes.SHA256(), 32, b"label").derive(prk)
    assert _pyca.hkdf_expand_verify(_pyca.SHA256(), prk, b"label", okm)
    assert not _pyca.hkdf_expand_verify(_pyca.SHA256(), prk, b"label", bytes(32))
    assert not _pyca.hkdf_expand_verify(_pyca.SHA256(), prk, b"other", okm)


def test_support_checks_follow_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ML-KEM support, or in FIPS mode for X25519, the same refusal pyca gives."""

    class NoMlkem:
        CRYPTOGRAPHY_IS_AWSLC = False
        CRYPTOGRAPHY_IS_BORINGSSL = False
        CRYPTOGRAPHY_OPENSSL_350_OR_GREATER = False

        @staticmethod
        def is_fips_enabled() -> bool:
            return True

    monkeypatch.setattr(_pyca, "_rust", NoMlkem)
    with pytest.raises(_pyca.UnsupportedAlgorithm):
        _pyca.mlkem768_public(bytes(1184))
    with pytest.raises(_pyca.UnsupportedAlgorithm):
        _pyca.mlkem1024_from_seed(bytes(64))
    with pytest.raises(_pyca.UnsupportedAlgorithm):
        _pyca.x25519_generate()



# Which of pyca's Python modules (and `typing`) each step makes pyca's Rust code import.
PYCA_LOADS = """
import json, sys
from cryptography.hazmat.bindings._rust import openssl as o
loaded = {}
def step(name, before):
    loaded[name] = sorted(m for m in set(sys.modules) - before
                          if m.startswith("cryptography.") or m == "typing")
before = set(sys.modules)
mlkem_key = o.mlkem.from_mlkem768_seed_bytes(bytes(64))
x25519_key = o.x25519.from_private_bytes(bytes(32))
step("rust keys", before)
before = set(sys.modules)
o.hpke.MLKEM768X25519PrivateKey(mlkem_key, x25519_key)
step("x-wing key", before)
class NotAHash:
    name, digest_size, block_size = "sha256", 32, 64
try:
    o.hashes.Hash(NotAHash())
except TypeError as exc:
    loaded["hash refusal"] = [str(exc)]
print(json.dumps(loaded))
"""


def test_pycas_rust_imports_its_python_modules_for_x_wing_keys_and_hashes() -> None:
    """Why `pqfile encrypt`/`decrypt` load pyca's ML-KEM, X25519 and hash modules (and with
    them `typing`, about a third of the command) although crypto/_pyca.py binds the Rust
    classes: the Rust constructor of the X-Wing key (``hpke.MLKEM768X25519PublicKey`` /
    ``PrivateKey``, which every seal and open needs) checks its parts against the Python
    ML-KEM and X25519 classes and imports them, and Hash/HMAC/HKDF check their algorithm
    against ``hashes.HashAlgorithm`` (issue 15, BENCHMARKS.md "CLI latency and batch"). If a
    pyca release stops doing so, this fails: those modules can then leave the file
    commands' path (tests/unit/test_cli_fastargs.py PYCA_OWN)."""
    import json
    import subprocess
    import sys

    path = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run(
        [sys.executable, "-S", "-c", PYCA_LOADS], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    assert loaded["rust keys"] == []
    assert {
        "cryptography.hazmat.primitives.asymmetric.mlkem",
        "cryptography.hazmat.primitives.asymmetric.x25519",
        "typing",
    } <= set(loaded["x-wing key"])
    assert loaded["hash refusal"] == ["Expected instance of hashes.HashAlgorithm."]


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.value)
def test_with_pyca_is_public_key_and_to_pyca_from_one_expansion(suite: Suite) -> None:
    secret = generate(suite)
    public, pyca_secret = secret.with_pyca()
    assert public == secret.public_key()
    assert type(pyca_secret) is type(secret.to_pyca())
    hpke_suite = hpke.Suite(
        {Suite.XWING: hpke.KEM.MLKEM768_X25519, Suite.MLKEM768: hpke.KEM.MLKEM768,
         Suite.MLKEM1024: hpke.KEM.MLKEM1024}[suite],
        hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM,
    )  # fmt: skip
    sealed = hpke_suite.encrypt(b"k" * 32, public.to_pyca(), info=b"i")
    assert hpke_suite.decrypt(sealed, pyca_secret, info=b"i") == b"k" * 32
