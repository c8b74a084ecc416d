"""Signed tree heads (pqfile.keys.audit_digest): the encoding of docs/KEYS.md "Signed tree
heads", strict decoding of hostile input, and signatures made here with pyca keys."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa

from pqfile.errors import AuditDigestError
from pqfile.keys import audit_digest as d
from pqfile.keys import audit_digest_check as dc

KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
T0 = dt.datetime(2026, 11, 29, 22, 0, 0, 123456, tzinfo=dt.UTC)


def head(**changes: object) -> d.TreeHead:
    fields: dict[str, object] = {
        "tree_size": 42,
        "root_hash": hashlib.sha256(b"root").digest(),
        "first_seq": 30,
        "last_seq": 42,
        "first_at": T0,
        "last_at": T0 + dt.timedelta(minutes=59),
        "previous_digest_hash": hashlib.sha256(b"prev").digest(),
        "signed_at": T0 + dt.timedelta(hours=1),
        "key_id": KEY_ARN,
        "algorithm": d.ECDSA_SHA_384,
    }
    fields.update(changes)
    return d.TreeHead(**fields)  # type: ignore[arg-type]


def micros(value: dt.datetime) -> int:
    return round((value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds() * 1e6)


def test_encoding_is_the_documented_layout() -> None:
    h = head()
    expected = (
        b"PQFSTH"
        + bytes([1])
        + (42).to_bytes(8, "big")
        + h.root_hash
        + (30).to_bytes(8, "big")
        + (42).to_bytes(8, "big")
        + b"\x01"
        + micros(T0).to_bytes(8, "big")
        + micros(T0 + dt.timedelta(minutes=59)).to_bytes(8, "big")
        + h.previous_digest_hash
        + micros(T0 + dt.timedelta(hours=1)).to_bytes(8, "big")
        + bytes([13])
        + b"ECDSA_SHA_384"
        + len(KEY_ARN).to_bytes(2, "big")
        + KEY_ARN.encode()
    )
    assert d.encode(h) == expected
    assert d.digest_hash(expected) == hashlib.sha256(expected).digest()


def test_round_trip_with_and_without_new_rows() -> None:
    for h in (
        head(),
        head(first_seq=43, first_at=None, last_at=None),  # nothing new since the last digest
        head(tree_size=0, last_seq=0, first_seq=1, first_at=None, last_at=None,
             previous_digest_hash=bytes(32), root_hash=hashlib.sha256(b"").digest()),
        head(algorithm=d.ML_DSA_SHAKE_256, key_id="k" * d.MAX_KEY_ID),
    ):  # fmt: skip
        encoded = d.encode(h)
        assert d.decode(encoded) == h
        assert len(encoded) < 4096
        assert d.decode(encoded).as_dict()["root_hash"] == h.root_hash.hex()


@pytest.mark.parametrize(
    "changes",
    [
        {"last_seq": 41},  # last_seq is the tree size
        {"first_seq": 0},
        {"first_seq": 44},
        {"first_at": None},  # new rows need a time range
        {"first_seq": 43},  # no new rows: no time range
        {"first_at": T0 + dt.timedelta(days=1)},  # range backwards
        {"root_hash": b"\x00" * 31},
        {"previous_digest_hash": b""},
        {"algorithm": "RSASSA_PSS_SHA_256"},
        {"key_id": ""},
        {"key_id": "k" * (d.MAX_KEY_ID + 1)},
        {"key_id": "clé"},
        {"key_id": "a\nb"},
        {"signed_at": dt.datetime(2026, 1, 1)},  # naive
        {"signed_at": dt.datetime(1969, 1, 1, tzinfo=dt.UTC)},
        {"version": 2},
    ],
)
def test_invalid_heads_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(AuditDigestError):
        head(**changes)


def test_hostile_encodings_are_one_error() -> None:
    good = d.encode(head())
    bad_inputs = [good[:n] for n in range(len(good))]  # every truncation
    bad_inputs += [good + b"\x00", b"XQFSTH" + good[6:], good[:6] + b"\x02" + good[7:]]
    bad_inputs.append(good[: 6 + 1 + 8 + 32 + 16] + b"\x02" + good[6 + 1 + 8 + 32 + 17 :])
    bad_inputs.append(b"\x00" * 5000)
    # has_range 0 while the sequence range is not empty
    no_range = d.encode(head(first_seq=43, first_at=None, last_at=None))
    bad_inputs.append(
        no_range[: 6 + 1 + 8 + 32] + (30).to_bytes(8, "big") + no_range[6 + 1 + 8 + 32 + 8 :]
    )
    # non-ASCII key id with a consistent length
    bad_inputs.append(good[: -len(KEY_ARN)] + b"\xff" + KEY_ARN.encode()[1:])
    for data in bad_inputs:
        with pytest.raises(AuditDigestError):
            d.decode(data)
    with pytest.raises(AuditDigestError):
        d.decode("text")  # type: ignore[arg-type]


def test_random_mutations_never_escape_as_another_exception() -> None:
    good = d.encode(head())
    rng = random.Random(1404)
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            decoded = d.decode(bytes(data))
        except AuditDigestError:
            continue
        assert d.encode(decoded) == bytes(data)  # accepted only in canonical form


# --- signatures --------------------------------------------------------------------------


def der(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_ecdsa_p384_signature_verifies_and_forgeries_are_refused() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    encoded = d.encode(head())
    signature = key.sign(encoded, ec.ECDSA(hashes.SHA384()))  # what KMS RAW + ECDSA_SHA_384 does
    public = der(key.public_key())
    d.verify_signature(encoded, signature, d.ECDSA_SHA_384, public)
    other = der(ec.generate_private_key(ec.SECP384R1()).public_key())
    p256 = der(ec.generate_private_key(ec.SECP256R1()).public_key())
    forged_digest = d.encode(head(tree_size=41, last_seq=41))
    for args in (
        (forged_digest, signature, d.ECDSA_SHA_384, public),
        (encoded, signature[:-1] + bytes([signature[-1] ^ 1]), d.ECDSA_SHA_384, public),
        (encoded, signature, d.ECDSA_SHA_384, other),
        (encoded, signature, d.ECDSA_SHA_384, p256),
        (encoded, signature, d.ML_DSA_SHAKE_256, public),
        (encoded, signature, "ECDSA_SHA_256", public),
        (encoded, signature, d.ECDSA_SHA_384, b"not a key"),
    ):
        with pytest.raises(AuditDigestError):
            d.verify_signature(*args)


def test_ml_dsa_65_signature_verifies_and_forgeries_are_refused() -> None:
    key = mldsa.MLDSA65PrivateKey.generate()
    encoded = d.encode(head(algorithm=d.ML_DSA_SHAKE_256))
    signature = key.sign(encoded)  # FIPS 204 ML-DSA.Sign, empty context, message as is
    public = der(key.public_key())
    d.verify_signature(encoded, signature, d.ML_DSA_SHAKE_256, public)
    other = der(mldsa.MLDSA65PrivateKey.generate().public_key())
    forged_digest = d.encode(head(algorithm=d.ML_DSA_SHAKE_256, root_hash=bytes(32)))
    for args in (
        (forged_digest, signature, d.ML_DSA_SHAKE_256, public),
        (encoded, bytes([signature[0] ^ 1]) + signature[1:], d.ML_DSA_SHAKE_256, public),
        (encoded, signature, d.ML_DSA_SHAKE_256, other),
        (encoded, signature, d.ECDSA_SHA_384, public),
        (encoded, signature[:100], d.ML_DSA_SHAKE_256, public),
    ):
        with pytest.raises(AuditDigestError):
            d.verify_signature(*args)


def test_public_key_from_pem_or_der() -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert d.public_key_der(pem) == der(key) == d.public_key_der(der(key))
    with pytest.raises(AuditDigestError):
        d.public_key_der(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")


# --- the S3 object ---------------------------------------------------------------------


def test_signed_digest_json_round_trip_and_verify() -> None:
    key = mldsa.MLDSA65PrivateKey.generate()
    h = head(algorithm=d.ML_DSA_SHAKE_256)
    encoded = d.encode(h)
    signed = d.SignedDigest(encoded, key.sign(encoded), d.ML_DSA_SHAKE_256, KEY_ARN)
    text = signed.to_json()
    assert json.loads(text) == {
        "digest": base64.b64encode(encoded).decode(),
        "signature": base64.b64encode(signed.signature).decode(),
        "algorithm": "ML_DSA_SHAKE_256",
        "key_id": KEY_ARN,
    }
    back = d.SignedDigest.from_json(text)
    assert back == signed
    assert back.verify(der(key.public_key())) == h
    assert back.digest_hash == hashlib.sha256(encoded).digest()
    assert d.object_key(42) == "digests/00000000000000000042.json"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: "not json {",
        lambda o: json.dumps([o]),
        lambda o: json.dumps({**o, "extra": "x"}),
        lambda o: json.dumps({k: v for k, v in o.items() if k != "signature"}),
        lambda o: json.dumps({**o, "digest": "!!!"}),
        lambda o: json.dumps({**o, "signature": ""}),
        lambda o: json.dumps({**o, "signature": 5}),
        lambda o: json.dumps({**o, "algorithm": "ML_DSA_SHAKE_256"}),  # differs from the head
        lambda o: json.dumps({**o, "key_id": "another"}),
        lambda o: json.dumps({**o, "digest": base64.b64encode(b"PQFSTH").decode()}),
        lambda o: "[" * 100000,
        lambda o: json.dumps({**o, "pad": "x" * 40000}),
    ],
)
def test_hostile_digest_objects_are_one_error(mutate: object) -> None:
    encoded = d.encode(head())
    obj = {
        "digest": base64.b64encode(encoded).decode(),
        "signature": base64.b64encode(b"s" * 100).decode(),
        "algorithm": d.ECDSA_SHA_384,
        "key_id": KEY_ARN,
    }
    with pytest.raises(AuditDigestError):
        d.SignedDigest.from_json(mutate(obj))  # type: ignore[operator]


def test_struct_layout_sizes() -> None:
    assert struct.calcsize(">BQ") == 9  # version and tree size: no padding


# --- check_digests: the table against its digests (pure; PostgreSQL in the integration test)


def _history(sizes: list[int], total: int) -> tuple[list[bytes], list[dt.datetime], Any, list[Any]]:
    from pqfile.keys.audit_tree import tree_root

    row_hashes = [hashlib.sha256(b"row %d" % i).digest() for i in range(total)]
    times = [T0 + dt.timedelta(seconds=i) for i in range(total)]
    key = ec.generate_private_key(ec.SECP384R1())
    objects, previous, prev_size = [], d.GENESIS_DIGEST_HASH, 0
    for size in sizes:
        h = head(tree_size=size, last_seq=size, first_seq=prev_size + 1,
                 root_hash=tree_root(row_hashes[:size]), first_at=times[prev_size],
                 last_at=times[size - 1], previous_digest_hash=previous)  # fmt: skip
        encoded = d.encode(h)
        signed = d.SignedDigest(encoded, key.sign(encoded, ec.ECDSA(hashes.SHA384())),
                                d.ECDSA_SHA_384, KEY_ARN)  # fmt: skip
        objects.append((f"d{size}", signed.to_json()))
        previous, prev_size = d.digest_hash(encoded), size
    return row_hashes, times, key, objects


def _kinds(report: dc.DigestsReport) -> list[tuple[str, int | None]]:
    return [(p.kind, p.tree_size) for p in report.problems]


def test_check_digests_intact_beyond_times_and_malformed() -> None:
    rows, times, key, objects = _history([4, 9, 12], 14)
    public = der(key.public_key())
    report = dc.check_digests(rows, times, objects, public)
    assert report.ok and (report.digests, report.latest_tree_size, report.unsigned_rows) == (
        3,
        12,
        2,
    )
    # Rows deleted from the end: the last digest signed more than the table has.
    assert _kinds(dc.check_digests(rows[:10], times[:10], objects, public)) == [("beyond", 12)]
    # A timestamp changed (and the hash with it, by someone recomputing) shows as a root
    # change; a timestamp alone differing from the digest's range is "times".
    moved = list(times)
    moved[4] = moved[4] + dt.timedelta(hours=1)
    assert _kinds(dc.check_digests(rows, moved, objects, public)) == [("times", 9)]
    report = dc.check_digests(rows, times, [*objects, ("junk", b"{}")], public)
    assert _kinds(report) == [("malformed", None)] and report.digests == 3


def test_check_digests_fork_and_rewritten_row() -> None:
    rows, times, key, objects = _history([4, 9], 9)
    public = der(key.public_key())
    other_rows = list(rows)
    other_rows[6] = hashlib.sha256(b"rewritten").digest()
    assert _kinds(dc.check_digests(other_rows, times, objects, public)) == [("root", 9)]
    # Another digest of size 9 with another root, properly signed and linked: a fork.
    _, _, _, forked = _history([4, 9], 9)
    forged = d.SignedDigest.from_json(forked[1][1])
    h = forged.head
    link = d.SignedDigest.from_json(objects[0][1]).digest_hash
    again = head(tree_size=9, last_seq=9, first_seq=5, root_hash=bytes(32),
                 first_at=h.first_at, last_at=h.last_at, previous_digest_hash=link)  # fmt: skip
    encoded = d.encode(again)
    fork = d.SignedDigest(encoded, key.sign(encoded, ec.ECDSA(hashes.SHA384())),
                          d.ECDSA_SHA_384, KEY_ARN)  # fmt: skip
    kinds = _kinds(dc.check_digests(rows, times, [*objects, ("fork", fork.to_json())], public))
    assert ("fork", 9) in kinds and ("root", 9) in kinds


def test_receipt_answers_are_parsed_strictly() -> None:
    from pqfile.errors import AuditProofError

    good = {"seq": 2, "row_hash": "00" * 32, "row_hash_matches_row": True, "row": {},
            "tree_size": 3, "root_hash": "11" * 32, "proof": ["22" * 32]}  # fmt: skip
    d.InclusionReceipt.from_dict(good)
    for bad in (
        [],
        {**good, "seq": 4},
        {**good, "seq": True},
        {**good, "proof": "22" * 32},
        {**good, "proof": ["zz" * 32]},
        {**good, "proof": ["22" * 31]},
        {**good, "proof": ["22" * 32] * 65},
        {**good, "row_hash_matches_row": "yes"},
        {k: v for k, v in good.items() if k != "root_hash"},
    ):
        with pytest.raises(AuditProofError):
            d.InclusionReceipt.from_dict(bad)
