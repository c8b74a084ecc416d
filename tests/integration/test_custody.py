"""Custody: no database dump decrypts anything; wrapped seeds are bound to their row by the
KMS encryption context; revoked keys are never unwrapped; the cache spares KMS calls only."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Mapping

import pytest
from devstack.postgres import PostgresHandle

from pqfile.adapters.kms import KmsSeedProtector
from pqfile.adapters.kms_mac import KmsKeyAttestor
from pqfile.adapters.postgres.connection import Database, parse_database_url
from pqfile.adapters.postgres.keystore import PostgresKeyStore
from pqfile.crypto import kem
from pqfile.errors import CustodyError, KeyNotFoundError, KeyNotUsableError
from pqfile.keys.cache import UnwrappedKeyCache
from pqfile.keys.custody import seed_context
from pqfile.keys.model import Purpose
from tests.fixtures.postgres import MAINTAIN, OPERATOR, RETRIEVE, SELECT_KEY, role_url

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]


class CountingProtector:
    def __init__(self, inner: KmsSeedProtector) -> None:
        self.inner = inner
        self.unwraps = 0

    def wrap(self, seed: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        return self.inner.wrap(seed, context)

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        self.unwraps += 1
        return self.inner.unwrap(wrapped, context)


def _maintain(
    db_url: str, protector: KmsSeedProtector, attestor: KmsKeyAttestor
) -> PostgresKeyStore:
    return PostgresKeyStore(
        Database.from_url(role_url(db_url, MAINTAIN)), protector, attestor=attestor
    )


def _operator(db_url: str, protector: KmsSeedProtector) -> PostgresKeyStore:
    return PostgresKeyStore(Database.from_url(role_url(db_url, OPERATOR)), protector)


def _pg_dump(server: PostgresHandle, url: str) -> bytes:
    """The server's own pg_dump (the embedded server's when discovery chose it; a system
    pg_dump older than the server refuses to dump it)."""
    params = parse_database_url(url)
    pg_dump = server.program("pg_dump")
    assert pg_dump, f"no pg_dump beside the {server.source} server, nor on this machine"
    return subprocess.run(
        [
            pg_dump,
            "--no-owner",
            "-h",
            params.host,
            "-p",
            str(params.port),
            "-U",
            params.user,
            str(params.database),
        ],
        check=True,
        capture_output=True,
    ).stdout


def test_database_dump_contains_no_seed(
    postgres_server: PostgresHandle,
    db_url: str,
    protector: KmsSeedProtector,
    attestor: KmsKeyAttestor,
) -> None:
    admin = _maintain(db_url, protector, attestor)
    created = admin.create_keys("xwing", 5) + admin.create_keys("mlkem768", 5)
    dump = _pg_dump(postgres_server, db_url)
    assert b"COPY public.encryption_keys" in dump and len(dump) > 10_000
    owner = Database.from_url(db_url)
    rows = owner.run("SELECT id, suite, wrapped_seed FROM encryption_keys")
    assert len(rows) == 10
    for key_id, suite, wrapped in rows:
        seed = protector.unwrap(bytes(wrapped), seed_context(key_id, suite))
        assert (
            kem.secret_key_from_seed(kem.Suite.from_name(suite), seed).public_key().key_id == key_id
        )
        for encoding in (
            seed,
            seed.hex().encode(),
            seed.hex().upper().encode(),
            base64.b64encode(seed),
            base64.b64encode(seed).rstrip(b"="),
            seed[:16].hex().encode(),  # even half a seed must not appear
        ):
            assert encoding not in dump
        # wrapped seeds are there (as bytea hex): the search above would have found raw data
        assert bytes(wrapped).hex().encode() in dump
    owner.close()
    assert {k.key_id for k in created} == {r[0] for r in rows}


def test_swapped_wrapped_seeds_do_not_unwrap(
    db_url: str, protector: KmsSeedProtector, attestor: KmsKeyAttestor
) -> None:
    admin = _maintain(db_url, protector, attestor)
    a, b = admin.create_keys("xwing", 2)
    retrieve = PostgresKeyStore(Database.from_url(role_url(db_url, RETRIEVE)), protector)
    assert retrieve.load_secret_key(a.key_id).public_key().key_id == a.key_id
    # A database superuser swaps the wrapped seeds (bypassing the immutability trigger).
    owner = Database.from_url(db_url)
    with owner.transaction() as s:
        s.script("SET LOCAL session_replication_role = replica")
        s.run(
            "UPDATE encryption_keys SET wrapped_seed = CASE id "
            "WHEN :a THEN (SELECT wrapped_seed FROM encryption_keys WHERE id = :b) "
            "ELSE (SELECT wrapped_seed FROM encryption_keys WHERE id = :a) END "
            "WHERE id IN (:a, :b)",
            a=a.key_id,
            b=b.key_id,
        )
    owner.close()
    fresh = PostgresKeyStore(Database.from_url(role_url(db_url, RETRIEVE)), protector)
    for key in (a, b):
        with pytest.raises(CustodyError) as info:
            fresh.load_secret_key(key.key_id)
        assert "InvalidCiphertext" in str(info.value) or "refused" in str(info.value)


def test_revoked_key_is_never_selected_nor_unwrapped(
    db_url: str, protector: KmsSeedProtector, attestor: KmsKeyAttestor
) -> None:
    counting = CountingProtector(protector)
    admin = _maintain(db_url, protector, attestor)
    victim, other = admin.create_keys("xwing", 2)
    retrieve = PostgresKeyStore(Database.from_url(role_url(db_url, RETRIEVE)), counting)
    retrieve.load_decryption_key(victim.key_id)  # now cached in this process
    assert counting.unwraps == 1
    _operator(db_url, protector).revoke(victim.key_id, "suspected compromise")  # elsewhere
    with pytest.raises(KeyNotUsableError, match="revoked"):
        retrieve.load_decryption_key(victim.key_id)
    for purpose in Purpose:
        with pytest.raises(KeyNotUsableError):
            retrieve.load_secret_key(victim.key_id, purpose)
    assert counting.unwraps == 1  # refused before KMS
    assert victim.key_id not in retrieve.cache._entries  # evicted on sight
    ingest = PostgresKeyStore(
        Database.from_url(role_url(db_url, SELECT_KEY)), protector, attestor=attestor
    )
    assert {ingest.select_key_record("xwing").key_id for _ in range(20)} == {other.key_id}
    with pytest.raises(KeyNotFoundError):
        retrieve.load_decryption_key("00" * 16)


def test_expired_key_decrypts_but_never_encrypts(
    db_url: str, protector: KmsSeedProtector, attestor: KmsKeyAttestor
) -> None:
    admin = _maintain(db_url, protector, attestor)
    (key,) = admin.create_keys("mlkem768", 1)
    _operator(db_url, protector).expire(key.key_id)
    retrieve = PostgresKeyStore(Database.from_url(role_url(db_url, RETRIEVE)), protector)
    assert retrieve.load_decryption_key(key.key_id).public_key().key_id == key.key_id
    with pytest.raises(KeyNotUsableError):
        retrieve.load_secret_key(key.key_id, Purpose.ENCRYPT)


def test_cache_spares_kms_calls_with_ttl_and_cap(
    db_url: str, protector: KmsSeedProtector, attestor: KmsKeyAttestor
) -> None:
    admin = _maintain(db_url, protector, attestor)
    keys = admin.create_keys("xwing", 3)
    now = [0.0]
    counting = CountingProtector(protector)
    cache: UnwrappedKeyCache[kem.SecretKey] = UnwrappedKeyCache(
        ttl_seconds=60, max_entries=2, clock=lambda: now[0]
    )
    store = PostgresKeyStore(Database.from_url(role_url(db_url, RETRIEVE)), counting, cache=cache)
    for _ in range(5):
        store.load_decryption_key(keys[0].key_id)
    assert counting.unwraps == 1
    now[0] = 61.0  # TTL over
    store.load_decryption_key(keys[0].key_id)
    assert counting.unwraps == 2
    store.load_decryption_key(keys[1].key_id)
    store.load_decryption_key(keys[2].key_id)  # evicts keys[0] (cap 2)
    assert len(cache) == 2 and counting.unwraps == 4
    store.load_decryption_key(keys[0].key_id)
    assert counting.unwraps == 5


def test_secrets_stay_out_of_reprs_and_errors(
    db_url: str, protector: KmsSeedProtector, attestor: KmsKeyAttestor
) -> None:
    admin = _maintain(db_url, protector, attestor)
    (key,) = admin.create_keys("xwing", 1)
    store = PostgresKeyStore(Database.from_url(role_url(db_url, RETRIEVE)), protector)
    secret = store.load_decryption_key(key.key_id)
    for text in (repr(secret), repr(store.cache), repr(protector), str(secret)):
        assert secret.seed.hex() not in text and repr(secret.seed) not in text
    with pytest.raises(CustodyError) as info:
        protector.unwrap(b"\x01" * 64, seed_context(key.key_id, "xwing"))
    assert secret.seed.hex() not in str(info.value)
