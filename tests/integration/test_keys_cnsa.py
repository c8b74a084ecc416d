"""The CNSA suite `mlkem1024` in the key pool, on a real PostgreSQL (migration 0012) and KMS
on moto: keys are created, attested, selected and unwrapped like the other suites; the
wrapped seed's KMS encryption context binds the suite; the database checks the key id
(wire id 0x0042) and the 1568-byte public key."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pqfile.adapters.kms import KmsSeedProtector
from pqfile.adapters.kms_mac import KmsKeyAttestor
from pqfile.adapters.postgres.connection import Database, InvariantError
from pqfile.adapters.postgres.keystore import PostgresKeyStore
from pqfile.crypto import envelope, kem
from pqfile.errors import CustodyError
from pqfile.keys.attestation import AttestationError, AttestationVerifier
from pqfile.keys.custody import seed_context
from pqfile.keys.policy import PoolPolicy
from tests.fixtures.postgres import MAINTAIN, RETRIEVE, SELECT_KEY, role_url

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]

_KEY_CREATE = (
    "SELECT key_create(:id, :suite, :pk, :ws, :arn, :att, CAST(2592000 AS double precision), "
    "NULL, NULL)"
)


@pytest.fixture
def pool(
    db_url: str, protector: KmsSeedProtector, attestor: KmsKeyAttestor
) -> Iterator[Callable[[str], PostgresKeyStore]]:
    opened: list[Database] = []

    def make(role: str) -> PostgresKeyStore:
        db = Database.from_url(role_url(db_url, role))
        opened.append(db)
        policy = PoolPolicy(target_active=6, floor_active=3)
        return PostgresKeyStore(db, protector, attestor=attestor, policy=policy, actor="test")

    yield make
    for db in opened:
        db.close()


def test_mlkem1024_keys_are_created_selected_and_unwrapped(
    pool: Callable[[str], PostgresKeyStore], protector: KmsSeedProtector, db_url: str
) -> None:
    created = pool(MAINTAIN).refill(kem.Suite.MLKEM1024)
    assert len(created) == 6 and {k.suite for k in created} == {"mlkem1024"}
    assert all(len(k.public_key) == kem.MLKEM1024_EK_SIZE for k in created)
    # The other suites' pools are separate: nothing of theirs was created.
    assert pool(SELECT_KEY).storage.keys.count_active("xwing") == 0
    selected = pool(SELECT_KEY).select_encryption_key(kem.Suite.MLKEM1024, 10)
    assert selected.suite is kem.Suite.MLKEM1024
    assert selected.key_id in {k.key_id for k in created}
    # A package to that key decrypts with the seed the retrieve role unwraps from KMS.
    package = envelope.encrypt_bytes(b"cnsa", selected, document_id="doc-1")
    secret = pool(RETRIEVE).load_decryption_key(selected.key_id)
    assert secret.suite is kem.Suite.MLKEM1024
    assert envelope.decrypt_bytes(package, secret) == b"cnsa"
    # The database computes the same key id (H(label || 0x0042 || public key)).
    owner = Database.from_url(db_url)
    try:
        rows = owner.run(
            "SELECT pqfile_key_id('mlkem1024', public_key) = id, "
            "pqfile_key_id('mlkem768', public_key) = id FROM encryption_keys"
        )
    finally:
        owner.close()
    assert rows and all(row == [True, False] for row in rows)


def test_the_seed_context_binds_the_suite(
    pool: Callable[[str], PostgresKeyStore], protector: KmsSeedProtector, db_url: str
) -> None:
    (key,) = pool(MAINTAIN).create_keys("mlkem1024", 1)
    owner = Database.from_url(db_url)
    try:
        ((wrapped,),) = owner.run("SELECT wrapped_seed FROM encryption_keys WHERE id = :id",
                                  id=key.key_id)  # fmt: skip
    finally:
        owner.close()
    context = seed_context(key.key_id, "mlkem1024")
    assert context["pqfile:suite"] == "mlkem1024"
    seed = protector.unwrap(bytes(wrapped), context)
    assert kem.secret_key_from_seed(kem.Suite.MLKEM1024, seed).public_key().key_id == key.key_id
    # KMS refuses the same ciphertext under any other suite: a row relabelled to another
    # suite (or a seed moved to another suite's row) never unwraps.
    for other in ("xwing", "mlkem768"):
        with pytest.raises(CustodyError):
            protector.unwrap(bytes(wrapped), seed_context(key.key_id, other))


def test_the_attestation_names_the_suite(
    pool: Callable[[str], PostgresKeyStore], attestor: KmsKeyAttestor
) -> None:
    (key,) = pool(MAINTAIN).create_keys(kem.Suite.MLKEM1024, 1)
    record = pool(SELECT_KEY).get_key(key.key_id)
    AttestationVerifier(attestor.verify).check(
        "mlkem1024", record.key_id, record.public_key, record.attestation
    )
    # (A fresh verifier: one remembers the keys it verified, by key id and MAC.)
    with pytest.raises(AttestationError):
        AttestationVerifier(attestor.verify).check(
            "mlkem768", record.key_id, record.public_key, record.attestation
        )


def test_key_create_checks_mlkem1024_keys(db_url: str, protector: KmsSeedProtector) -> None:
    secret = kem.generate(kem.Suite.MLKEM1024)
    public = secret.public_key()
    wrapped, arn = protector.wrap(secret.seed, seed_context(public.key_id, "mlkem1024"))
    key = {"id": public.key_id, "suite": "mlkem1024", "pk": public.raw, "ws": wrapped,
           "arn": arn}  # fmt: skip
    mlkem768_id = kem.PublicKey(kem.Suite.MLKEM768, public.raw).key_id
    maintain = Database.from_url(role_url(db_url, MAINTAIN))
    try:
        for bad, why in (
            ({**key, "id": mlkem768_id}, r"not H\(public key\)"),  # another suite's wire id
            ({**key, "pk": public.raw[: kem.MLKEM768_EK_SIZE]}, "wrong length"),
            ({**key, "suite": "mlkem768"}, "wrong length"),
            ({**key, "suite": "mlkem1025"}, "unknown suite"),
        ):
            with pytest.raises(InvariantError, match=why):
                maintain.run(_KEY_CREATE, att=bytes(32), **bad)
        assert maintain.run(_KEY_CREATE, att=bytes(32), **key) == [[public.key_id]]
    finally:
        maintain.close()
