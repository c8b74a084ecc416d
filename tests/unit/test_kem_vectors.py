"""Standards conformance of ``pqfile.crypto.kem`` against published test vectors.

- ML-KEM-768 (FIPS 203): NIST ACVP keyGen / encapsulation / decapsulation sample vectors and
  the C2SP CCTV files (modulus, strcmp, unlucky sampling, intermediate values).
- X-Wing (draft-connolly-cfrg-xwing-kem): every vector of ``xwing/test-vectors.json``.

Two independent implementations are checked against each vector wherever the vector allows:
pyca/cryptography (OpenSSL, the production path; it takes only 64-byte seeds d || z) and
kyber-py's FIPS 203 ``ML_KEM_768`` (pure Python, the test oracle; it also takes the expanded
2400-byte decapsulation keys and exposes the deterministic ``_encaps_internal(ek, m)``).
kyber-py's ``Kyber768`` is round-3 Kyber and is never used here.

The vectors are read in place from ``../shared/vectors`` (tests/fixtures/shared_vectors.py):
missing files skip, or fail under ``CI=true``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from kyber_py.ml_kem import ML_KEM_768
from kyber_py.ml_kem.ml_kem import ML_KEM

from pqfile.crypto import kem
from pqfile.errors import KeyFormatError
from tests.fixtures import shared_vectors as sv

MLKEM768_EK = 1184
MLKEM768_DK = 2400
MLKEM768_CT = 1088
X25519_LEN = 32

# ---------------------------------------------------------------------------------------
# X-Wing reference pieces, built from pyca primitives and kyber-py (not from pqfile).
# The vectors pin this layout: a 32-byte seed expanded by SHAKE256 to 96 bytes
# (d || z || sk_X), and the combiner with the label *last*:
#   ss = SHA3-256(ss_M || ss_X || ct_X || pk_X || XWingLabel)
# (draft-connolly-cfrg-xwing-kem -06 and later; the label-first combiner of the early
# drafts does not reproduce them, see test_xwing_vectors_use_label_last_combiner).
# ---------------------------------------------------------------------------------------
XWING_LABEL = b"\\.//^\\"  # 5c 2e 2f 2f 5e 5c


def xwing_combiner(ss_m: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()


def xwing_expand(seed: bytes) -> tuple[bytes, bytes]:
    """(ML-KEM-768 seed d || z, X25519 secret) from a 32-byte X-Wing seed."""
    expanded = hashlib.shake_256(seed).digest(96)
    return expanded[:64], expanded[64:]


def xwing_keys_kyberpy(seed: bytes) -> tuple[bytes, bytes, bytes]:
    """(pk, ML-KEM dk (expanded), X25519 secret), the ML-KEM half derived by kyber-py."""
    mlkem_seed, sk_x = xwing_expand(seed)
    ek, dk = ML_KEM_768.key_derive(mlkem_seed)
    pk_x = x25519.X25519PrivateKey.from_private_bytes(sk_x).public_key().public_bytes_raw()
    return ek + pk_x, dk, sk_x


def xwing_encaps_kyberpy(pk: bytes, eseed: bytes) -> tuple[bytes, bytes]:
    """Deterministic X-Wing encapsulation: (ss, ct) from the 64-byte eseed."""
    assert len(pk) == MLKEM768_EK + X25519_LEN and len(eseed) == 64
    pk_m, pk_x = pk[:MLKEM768_EK], pk[MLKEM768_EK:]
    ss_m, ct_m = ML_KEM_768._encaps_internal(pk_m, eseed[:32])
    ek_x = x25519.X25519PrivateKey.from_private_bytes(eseed[32:])
    ct_x = ek_x.public_key().public_bytes_raw()
    ss_x = ek_x.exchange(x25519.X25519PublicKey.from_public_bytes(pk_x))
    return xwing_combiner(ss_m, ss_x, ct_x, pk_x), ct_m + ct_x


def xwing_decaps_kyberpy(dk_m: bytes, sk_x: bytes, pk: bytes, ct: bytes) -> bytes:
    ct_m, ct_x = ct[:MLKEM768_CT], ct[MLKEM768_CT:]
    ss_m = ML_KEM_768.decaps(dk_m, ct_m)
    ss_x = x25519.X25519PrivateKey.from_private_bytes(sk_x).exchange(
        x25519.X25519PublicKey.from_public_bytes(ct_x)
    )
    return xwing_combiner(ss_m, ss_x, ct_x, pk[MLKEM768_EK:])


def xwing_decaps_ours(sk: kem.SecretKey, ct: bytes) -> bytes:
    """X-Wing decapsulation through our SecretKey's pyca components (the production keys)."""
    assert len(ct) == MLKEM768_CT + X25519_LEN
    mlkem_key, x_key = sk.components()
    assert x_key is not None
    ct_m, ct_x = ct[:MLKEM768_CT], ct[MLKEM768_CT:]
    ss_m = mlkem_key.decapsulate(ct_m)
    ss_x = x_key.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
    return xwing_combiner(ss_m, ss_x, ct_x, sk.public_key().raw[MLKEM768_EK:])


def xwing_encaps_pyca(pk: bytes) -> tuple[bytes, bytes]:
    """Randomised X-Wing encapsulation with pyca primitives only."""
    pk_m, pk_x = pk[:MLKEM768_EK], pk[MLKEM768_EK:]
    ss_m, ct_m = mlkem.MLKEM768PublicKey.from_public_bytes(pk_m).encapsulate()
    ek_x = x25519.X25519PrivateKey.generate()
    ct_x = ek_x.public_key().public_bytes_raw()
    ss_x = ek_x.exchange(x25519.X25519PublicKey.from_public_bytes(pk_x))
    return xwing_combiner(ss_m, ss_x, ct_x, pk_x), ct_m + ct_x


# ---------------------------------------------------------------------------------------
# Vector loading
# ---------------------------------------------------------------------------------------
def _h(value: str) -> bytes:
    return bytes.fromhex(value)


def _acvp_groups(relative: str, **match: str) -> list[dict[str, Any]]:
    data = sv.load_json(relative)
    groups = [
        g
        for g in data["testGroups"]
        if g["parameterSet"] == "ML-KEM-768" and all(g.get(k) == v for k, v in match.items())
    ]
    assert groups, f"no ML-KEM-768 group matching {match} in {relative}"
    return groups


def _acvp_cases(relative: str, **match: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(g, t) for g in _acvp_groups(relative, **match) for t in g["tests"]]


# Parametrise by index so that collection never needs the files (a missing file then skips
# or fails inside the test, with the path in the message). Counts are asserted below.
N_KEYGEN = 25
N_ENCAP = 25
N_DECAP = 10
N_XWING = 3


def test_vector_counts() -> None:
    """Every ML-KEM-768 ACVP case and every X-Wing vector is covered by the parametrisation."""
    assert len(_acvp_cases(sv.MLKEM_KEYGEN)) == N_KEYGEN
    assert len(_acvp_cases(sv.MLKEM_ENCAPDECAP, function="encapsulation")) == N_ENCAP
    assert len(_acvp_cases(sv.MLKEM_ENCAPDECAP, function="decapsulation")) == N_DECAP
    assert len(sv.load_json(sv.XWING)) == N_XWING


# ---------------------------------------------------------------------------------------
# ML-KEM-768: ACVP keyGen
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("i", range(N_KEYGEN))
def test_acvp_keygen(i: int) -> None:
    _, t = _acvp_cases(sv.MLKEM_KEYGEN)[i]
    d, z, ek, dk = _h(t["d"]), _h(t["z"]), _h(t["ek"]), _h(t["dk"])

    # pyca (production): the 64-byte seed d || z reproduces ek, and is what it stores.
    pyca_key = mlkem.MLKEM768PrivateKey.from_seed_bytes(d + z)
    assert pyca_key.public_key().public_bytes_raw() == ek
    assert pyca_key.private_bytes_raw() == d + z

    # Our API over the same seed.
    sk = kem.secret_key_from_seed(kem.Suite.MLKEM768, d + z)
    assert sk.public_key().raw == ek
    assert kem.public_key_from_bytes(kem.Suite.MLKEM768, ek).raw == ek

    # kyber-py (oracle): both entry points reproduce ek and the expanded dk.
    assert ML_KEM_768._keygen_internal(d, z) == (ek, dk)
    assert ML_KEM_768.key_derive(d + z) == (ek, dk)


# ---------------------------------------------------------------------------------------
# ML-KEM-768: ACVP encapsulation (deterministic, through kyber-py's internals)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("i", range(N_ENCAP))
def test_acvp_encapsulation(i: int) -> None:
    _, t = _acvp_cases(sv.MLKEM_ENCAPDECAP, function="encapsulation")[i]
    ek, dk, m, c, k = _h(t["ek"]), _h(t["dk"]), _h(t["m"]), _h(t["c"]), _h(t["k"])

    assert ML_KEM_768._encaps_internal(ek, m) == (k, c)
    # The same case decapsulates back to k (kyber-py: this vector only gives expanded dk).
    assert ML_KEM_768.decaps(dk, c) == k
    # Our loader accepts the (valid) encapsulation key, and pyca agrees on it.
    pub = kem.public_key_from_bytes(kem.Suite.MLKEM768, ek)
    assert pub.to_pyca().public_bytes_raw() == ek


# ---------------------------------------------------------------------------------------
# ML-KEM-768: ACVP decapsulation, including the modified (implicitly rejected) ciphertexts
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("i", range(N_DECAP))
def test_acvp_decapsulation(i: int) -> None:
    g, t = _acvp_cases(sv.MLKEM_ENCAPDECAP, function="decapsulation")[i]
    dk, ek, c, k = _h(g["dk"]), _h(g["ek"]), _h(t["c"]), _h(t["k"])
    assert len(c) == MLKEM768_CT
    assert ML_KEM_768.decaps(dk, c) == k
    # The group's ek is the one embedded in dk, and passes our loader.
    assert dk[1152 : 1152 + MLKEM768_EK] == ek
    kem.public_key_from_bytes(kem.Suite.MLKEM768, ek)


def test_acvp_decapsulation_covers_modified_ciphertexts() -> None:
    reasons = {t["reason"] for _, t in _acvp_cases(sv.MLKEM_ENCAPDECAP, function="decapsulation")}
    assert "no modification" in reasons, reasons
    assert "modify ciphertext" in reasons, reasons


# ---------------------------------------------------------------------------------------
# ML-KEM-768: C2SP CCTV
# ---------------------------------------------------------------------------------------
def test_cctv_modulus_every_key_rejected() -> None:
    """Every CCTV 'modulus' encapsulation key fails the FIPS 203 modulus check everywhere."""
    lines = sv.read_lines(sv.CCTV_MODULUS)
    assert len(lines) == 780
    x_pub = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
    for n, line in enumerate(lines):
        ek = bytes.fromhex(line)
        assert len(ek) == MLKEM768_EK, n
        with pytest.raises(KeyFormatError):
            kem.public_key_from_bytes(kem.Suite.MLKEM768, ek)
        with pytest.raises(KeyFormatError):
            kem.public_key_from_bytes(kem.Suite.XWING, ek + x_pub)
        with pytest.raises(ValueError):
            mlkem.MLKEM768PublicKey.from_public_bytes(ek)
        with pytest.raises(ValueError):
            ML_KEM_768.encaps(ek)


# The CCTV intermediate and unlucky-sample files predate final FIPS 203 (their README:
# "Changes from the FIPS 203 draft"): their key generation is the ipd one, G(d) without the
# domain-separating byte k, so d || z does not give their ek under final FIPS 203. Their
# encapsulation (ek, m -> K, c) and decapsulation (dk, c -> K) are unchanged in the final
# standard and are checked as such; the ipd key generation is reproduced only to prove
# that this is the one difference.


def _ipd_keygen(monkeypatch: pytest.MonkeyPatch, d: bytes, z: bytes) -> tuple[bytes, bytes]:
    original = ML_KEM._G

    def g_without_k(s: bytes) -> tuple[bytes, bytes]:
        return original(s[:32] if len(s) == 33 else s)

    with monkeypatch.context() as m:
        m.setattr(ML_KEM, "_G", staticmethod(g_without_k))
        return ML_KEM_768._keygen_internal(d, z)


@pytest.mark.parametrize("relative", [sv.CCTV_UNLUCKY, sv.CCTV_INTERMEDIATE])
def test_cctv_ipd_keys_encaps_decaps(relative: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (r,) = sv.read_cctv_kv(relative)
    ek, dk = r["ek"], r["dk"]
    # Deterministic encapsulation and decapsulation reproduce the vector.
    assert ML_KEM_768._encaps_internal(ek, r["m"]) == (r["K"], r["c"])
    assert ML_KEM_768.decaps(dk, r["c"]) == r["K"]
    # Our loader accepts ek; pyca encapsulates to it (for the unlucky file this runs
    # pyca's SampleNTT over the unlucky rho) and the oracle decapsulates the same secret.
    pub = kem.public_key_from_bytes(kem.Suite.MLKEM768, ek)
    for _ in range(3):
        ss, ct = pub.to_pyca().encapsulate()
        assert ML_KEM_768.decaps(dk, ct) == ss
    # Key generation: final FIPS 203 (pyca and kyber-py agree) differs from the ipd one.
    seed = r["d"] + r["z"]
    final_ek = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw()
    assert (
        final_ek
        == ML_KEM_768.key_derive(seed)[0]
        == (kem.secret_key_from_seed(kem.Suite.MLKEM768, seed).public_key().raw)
    )
    assert final_ek != ek
    assert _ipd_keygen(monkeypatch, r["d"], r["z"]) == (ek, dk)


def test_cctv_strcmp_implicit_rejection() -> None:
    """A ciphertext that a strcmp() comparison would wrongly accept gets the rejection key."""
    (r,) = sv.read_cctv_kv(sv.CCTV_STRCMP)
    assert len(r["dk"]) == MLKEM768_DK and len(r["c"]) == MLKEM768_CT
    assert ML_KEM_768.decaps(r["dk"], r["c"]) == r["K"]
    # The implicit-rejection key is J(z || c) (FIPS 203 Algorithm 18, K-bar).
    z = r["dk"][-32:]
    assert hashlib.shake_256(z + r["c"]).digest(32) == r["K"]


def test_cctv_intermediate_hash_of_ek() -> None:
    (r,) = sv.read_cctv_kv(sv.CCTV_INTERMEDIATE)
    assert hashlib.sha3_256(r["ek"]).digest() == r["H(ek)"]
    assert r["dk"][-64:] == r["H(ek)"] + r["z"]  # dk = dkPKE || ek || H(ek) || z


# ---------------------------------------------------------------------------------------
# X-Wing: every vector
# ---------------------------------------------------------------------------------------
def _xwing(i: int) -> dict[str, bytes]:
    return {k: _h(v) for k, v in sv.load_json(sv.XWING)[i].items()}


@pytest.mark.parametrize("i", range(N_XWING))
def test_xwing_keys_from_seed(i: int) -> None:
    v = _xwing(i)
    assert v["sk"] == v["seed"]  # the secret key *is* the 32-byte seed
    sk = kem.secret_key_from_seed(kem.Suite.XWING, v["seed"])
    assert sk.public_key().raw == v["pk"]
    assert kem.public_key_from_bytes(kem.Suite.XWING, v["pk"]).raw == v["pk"]
    # Independent derivation: SHAKE256 expansion + kyber-py + pyca X25519.
    pk, _, _ = xwing_keys_kyberpy(v["seed"])
    assert pk == v["pk"]


@pytest.mark.parametrize("i", range(N_XWING))
def test_xwing_decapsulation(i: int) -> None:
    v = _xwing(i)
    sk = kem.secret_key_from_seed(kem.Suite.XWING, v["seed"])
    assert xwing_decaps_ours(sk, v["ct"]) == v["ss"]
    _, dk_m, sk_x = xwing_keys_kyberpy(v["seed"])
    assert xwing_decaps_kyberpy(dk_m, sk_x, v["pk"], v["ct"]) == v["ss"]


@pytest.mark.parametrize("i", range(N_XWING))
def test_xwing_encapsulation_from_eseed(i: int) -> None:
    v = _xwing(i)
    assert xwing_encaps_kyberpy(v["pk"], v["eseed"]) == (v["ss"], v["ct"])


def test_xwing_vectors_use_label_last_combiner() -> None:
    """Documents which draft the vectors match: the label-first combiner does not."""
    v = _xwing(0)
    sk = kem.secret_key_from_seed(kem.Suite.XWING, v["seed"])
    mlkem_key, x_key = sk.components()
    assert x_key is not None
    ct_m, ct_x = v["ct"][:MLKEM768_CT], v["ct"][MLKEM768_CT:]
    ss_m = mlkem_key.decapsulate(ct_m)
    ss_x = x_key.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
    pk_x = v["pk"][MLKEM768_EK:]
    label_first = hashlib.sha3_256(XWING_LABEL + ss_m + ss_x + ct_x + pk_x).digest()
    assert label_first != v["ss"]
    assert xwing_combiner(ss_m, ss_x, ct_x, pk_x) == v["ss"]
