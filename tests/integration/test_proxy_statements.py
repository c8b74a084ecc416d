"""The RDS Proxy (terraform/proxy.tf). Behind it the functions' URLs carry
``statements=unnamed``: pg8000 then sends the extended protocol's unnamed statement, which
leaves no session state (a named prepared statement would pin the client to one pooled
connection). The proxy logs in as each role with a password: the migrate function stores
it as a SCRAM verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from pqfile.adapters.postgres import Database
from pqfile.adapters.postgres.connection import parse_database_url
from pqfile.adapters.postgres.logins import scram_sha256_verifier, set_role_logins
from tests.fixtures.postgres import FUNCTION_ROLES

pytestmark = pytest.mark.integration

PREPARED = "SELECT count(*) FROM pg_prepared_statements"


def _sep(url: str) -> str:
    return "&" if "?" in url else "?"


def test_statements_parameter_is_parsed_and_checked() -> None:
    assert parse_database_url("postgresql://u@db.example/x").named_statements
    assert not parse_database_url("postgresql://u@db.example/x?statements=unnamed").named_statements
    with pytest.raises(ValueError, match="statements"):
        parse_database_url("postgresql://u@db.example/x?statements=cached")


@pytest.mark.parametrize(("mode", "prepared"), [("named", True), ("unnamed", False)])
def test_unnamed_statements_leave_no_session_state(
    postgres_url: str, mode: str, prepared: bool
) -> None:
    db = Database.from_url(f"{postgres_url}{_sep(postgres_url)}statements={mode}")
    try:
        with db.transaction() as s:
            assert s.run("SELECT :a::int + 1", a=41) == [[42]]
            assert s.run("SELECT :a::int + 1", a=1) == [[2]]
            count = s.run(PREPARED + " WHERE statement NOT LIKE :p", p="%pg_prepared%")[0][0]
    finally:
        db.close()
    assert (count > 0) is prepared


# --- the proxy's password logins (adapters/postgres/logins.py, the migrate function) -------

#: RFC 7677 section 3: user "user", password "pencil".
RFC7677_SALT = "W22ZaJ0SNY7soEsUEjb6gQ=="
RFC7677_AUTH = (
    b"n=user,r=rOprNGfwEbeRWgbNEkqO,"
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
)
RFC7677_PROOF = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
RFC7677_SERVER_SIGNATURE = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _keys(verifier: str) -> tuple[int, bytes, bytes, bytes]:
    head, salt, keys = verifier.split("$")[0], *verifier.split("$", 1)[1].split("$")
    assert head == "SCRAM-SHA-256"
    iterations, salt_b64 = salt.split(":")
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    return int(iterations), base64.b64decode(salt_b64), stored, server


def test_scram_verifier_matches_the_rfc7677_exchange() -> None:
    verifier = scram_sha256_verifier("pencil", base64.b64decode(RFC7677_SALT), 4096)
    _, _, stored_key, server_key = _keys(verifier)
    server_signature = hmac.new(server_key, RFC7677_AUTH, hashlib.sha256).digest()
    assert base64.b64encode(server_signature).decode() == RFC7677_SERVER_SIGNATURE
    client_signature = hmac.new(stored_key, RFC7677_AUTH, hashlib.sha256).digest()
    client_key = bytes(
        a ^ b for a, b in zip(base64.b64decode(RFC7677_PROOF), client_signature, strict=True)
    )
    assert hashlib.sha256(client_key).digest() == stored_key


def test_role_logins_store_the_verifier_and_refuse_unknown_roles(migrated_db_url: str) -> None:
    db = Database.from_url(migrated_db_url)
    try:
        assert set_role_logins(db, {FUNCTION_ROLES["fetch"]: "s3cret-for-the-proxy"}) == [
            FUNCTION_ROLES["fetch"]
        ]
        (stored,) = db.run(
            "SELECT rolpassword FROM pg_authid WHERE rolname = :r", r=FUNCTION_ROLES["fetch"]
        )[0]
        # PostgreSQL kept our verifier as is (a malformed one would be hashed as a password).
        iterations, salt, _, _ = _keys(str(stored))
        assert stored == scram_sha256_verifier("s3cret-for-the-proxy", salt, iterations)
        with pytest.raises(ValueError, match="no login role"):
            set_role_logins(db, {"pqfile_nobody": "x"})
    finally:
        db.close()
