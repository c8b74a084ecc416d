"""The format and crypto records are frozen values without ``dataclasses`` (issue 15: CLI
start-up): equal by value, hashable, immutable, picklable, and their repr shows no secret."""

from __future__ import annotations

import copy
import io
import os
import pickle

import pytest

from pqfile.crypto import envelope
from pqfile.crypto.kem import Suite, generate
from pqfile.crypto.keyschedule import Kdf, derive_body_keys


def test_records_compare_hash_copy_and_pickle_by_value() -> None:
    secret = generate(Suite.XWING)
    sink = io.BytesIO()
    result = envelope.encrypt_stream(io.BytesIO(b"x" * 10), sink, secret.public_key())
    header = envelope.read_header(sink.getvalue())
    records = [
        secret,
        secret.public_key(),
        header,
        result,
        derive_body_keys(os.urandom(32), os.urandom(32), Kdf.HKDF_SHA256),
        envelope.Randomness.fresh(),
    ]
    for record in records:
        for clone in (copy.copy(record), copy.deepcopy(record), pickle.loads(pickle.dumps(record))):
            assert clone == record and clone is not record
            assert hash(clone) == hash(record)
    assert result.header == header
    assert header.with_mac(header.mac) == header
    assert header.with_mac(bytes(32)) != header
    assert secret != secret.public_key()
    assert len({secret.public_key(), secret.public_key()}) == 1


def test_records_refuse_assignment() -> None:
    secret = generate()
    with pytest.raises(AttributeError):
        secret.seed = bytes(32)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del secret.suite  # type: ignore[misc]
    with pytest.raises(AttributeError):
        secret.other = 1  # type: ignore[attr-defined]


def test_repr_shows_no_secret() -> None:
    secret = generate()
    assert secret.seed.hex() not in repr(secret) and "seed" not in repr(secret)
    assert repr(secret) == "SecretKey(suite=<Suite.XWING: 'xwing'>)"
    keys = derive_body_keys(b"k" * 32, b"s" * 32, Kdf.HKDF_SHA256)
    assert repr(keys) == "BodyKeys()"
    randomness = envelope.Randomness.fresh()
    assert randomness.data_key.hex() not in repr(randomness)
    sink = io.BytesIO()
    envelope.encrypt_stream(io.BytesIO(b""), sink, secret.public_key(), context={"a": "b"})
    header = envelope.read_header(sink.getvalue())
    shown = repr(header)
    for hidden in ("salt", "nonce_prefix", "commitment", "enc", "wrapped_key", "mac"):
        assert f"{hidden}=" not in shown
    assert "key_id_bytes=" in shown and "suite=" in shown
