"""pqfile.usecases.audit_digest with in-memory ports (a real ECDSA P-384 key, as KMS signs),
and its settings. The end-to-end run on PostgreSQL and the emulator is
tests/integration/test_audit_digest.py."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pqfile.config import AuditDigestSettings, ConfigurationError
from pqfile.keys.audit_digest import GENESIS_DIGEST_HASH, SignedDigest, object_key
from pqfile.keys.audit_tree import tree_root
from pqfile.ports.audit_digests import AuditLeaves
from pqfile.usecases.audit_digest import AuditDigester

T0 = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/digest"


class Log:
    def __init__(self) -> None:
        self.hashes: list[bytes] = []

    def add(self, count: int) -> None:
        for _ in range(count):
            self.hashes.append(hashlib.sha256(len(self.hashes).to_bytes(8, "big")).digest())

    def at(self, seq: int) -> dt.datetime:
        return T0 + dt.timedelta(seconds=seq)

    def leaves(self, since_seq: int) -> AuditLeaves:
        size = len(self.hashes)
        new = size > since_seq
        return AuditLeaves(
            row_hashes=tuple(self.hashes),
            since_seq=since_seq,
            first_at=self.at(since_seq + 1) if new else None,
            last_at=self.at(size) if new else None,
        )


class Signer:
    key_id = KEY_ARN
    algorithm = "ECDSA_SHA_384"

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP384R1())
        self.signed = 0

    def sign(self, message: bytes) -> bytes:
        assert len(message) <= 4096
        self.signed += 1
        return self.private.sign(message, ec.ECDSA(hashes.SHA384()))

    def public_der(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class Store:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.stale = False  # latest() answers as a run that started before the last write

    def latest(self) -> SignedDigest | None:
        if self.stale or not self.objects:
            return None
        return SignedDigest.from_json(self.objects[max(self.objects)])

    def put_new(self, key: str, body: bytes) -> bool:
        if key in self.objects:
            return False
        self.objects[key] = body
        return True


@pytest.fixture
def parts() -> tuple[Log, Signer, Store, AuditDigester]:
    log, signer, store = Log(), Signer(), Store()
    return log, signer, store, AuditDigester(log, signer, store, clock=lambda: T0)


def test_an_empty_log_is_not_signed(parts: tuple[Log, Signer, Store, AuditDigester]) -> None:
    _, signer, store, digester = parts
    outcome = digester.run()
    assert outcome.ok and not outcome.written
    assert outcome.skipped == "nothing new: the audit log has no rows yet"
    assert store.objects == {} and signer.signed == 0


def test_successive_digests_link_and_cover_the_new_rows(
    parts: tuple[Log, Signer, Store, AuditDigester],
) -> None:
    log, signer, store, digester = parts
    log.add(5)
    first = digester.run()
    log.add(3)
    second = digester.run()
    assert (first.written, second.written) == (True, True)
    assert second.previous_tree_size == 5
    one = SignedDigest.from_json(store.objects[object_key(5)])
    two = SignedDigest.from_json(store.objects[object_key(8)])
    h1, h2 = one.verify(signer.public_der()), two.verify(signer.public_der())
    assert h1.previous_digest_hash == GENESIS_DIGEST_HASH
    assert h2.previous_digest_hash == one.digest_hash
    assert (h1.first_seq, h1.last_seq, h2.first_seq, h2.last_seq) == (1, 5, 6, 8)
    assert (h2.first_at, h2.last_at) == (log.at(6), log.at(8))
    assert h2.root_hash == tree_root(log.hashes) and h1.root_hash == tree_root(log.hashes[:5])
    assert h2.key_id == KEY_ARN and h2.algorithm == "ECDSA_SHA_384"

    again = digester.run()
    assert not again.written and again.ok and signer.signed == 2
    assert again.skipped == "nothing new: the latest digest already covers 8 rows"


def test_a_retry_that_finds_its_digest_written_writes_nothing(
    parts: tuple[Log, Signer, Store, AuditDigester],
) -> None:
    log, _, store, digester = parts
    log.add(2)
    assert digester.run().written
    body = store.objects[object_key(2)]
    store.stale = True
    outcome = digester.run()
    assert outcome.ok and not outcome.written
    assert outcome.skipped == f"{object_key(2)} was already written (a retry or another run)"
    assert store.objects == {object_key(2): body}


@pytest.mark.parametrize(
    ("change", "added", "reason"),
    [
        (lambda hashes: hashes.__setitem__(0, bytes(32)), 2, "no longer have the root"),
        (lambda hashes: hashes.pop(), 0, "holds 3 rows, fewer than the 4"),
    ],
    ids=["rewritten", "shrunk"],
)
def test_a_log_that_no_longer_matches_the_latest_digest_is_refused(
    parts: tuple[Log, Signer, Store, AuditDigester], change, added: int, reason: str
) -> None:
    log, signer, store, digester = parts
    log.add(4)
    digester.run()
    change(log.hashes)
    log.add(added)
    outcome = digester.run()
    assert not outcome.ok and not outcome.written and reason in (outcome.skipped or "")
    assert list(store.objects) == [object_key(4)] and signer.signed == 1


def test_settings_name_the_bucket_key_and_a_known_algorithm() -> None:
    settings = AuditDigestSettings.from_env({
        "PQFILE_DIGEST_BUCKET": "b", "PQFILE_DIGEST_KEY_ARN": KEY_ARN,
        "PQFILE_DIGEST_SIGNING_ALGORITHM": "ML_DSA_SHAKE_256",
    })  # fmt: skip
    assert (settings.bucket, settings.key_arn, settings.algorithm) == (
        "b", KEY_ARN, "ML_DSA_SHAKE_256")  # fmt: skip
    assert AuditDigestSettings.from_env({}).algorithm == "ECDSA_SHA_384"
    with pytest.raises(ConfigurationError, match="PQFILE_DIGEST_SIGNING_ALGORITHM"):
        AuditDigestSettings.from_env({"PQFILE_DIGEST_SIGNING_ALGORITHM": "RSASSA_PSS_SHA_256"})
    with pytest.raises(ConfigurationError, match="PQFILE_DIGEST_BUCKET is not set"):
        AuditDigestSettings.from_env({"PQFILE_DIGEST_KEY_ARN": KEY_ARN}).require()
