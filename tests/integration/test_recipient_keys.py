"""Readers' recipient keys (sql/migrations/0020, issue 18) on a real PostgreSQL: operators
register, replace and revoke one key per exact principal, each change audited with the
key's fingerprint and the verified actor; nobody else can plant a key; retrieve's
``recipient_for`` answers only while both the rule and the key stand; and the `pqfile
access recipient` / `access grant --recipient` commands on the direct path (the admin
function's path is in tests/integration/test_admin.py)."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg8000.native
import pytest

from pqfile.adapters.postgres import (
    Database,
    DatabaseError,
    InvariantError,
    PostgresAccessRules,
    PostgresDocumentRepository,
    PostgresRecipientDirectory,
    PostgresRecipientKeys,
    connect_url,
)
from pqfile.cli import main
from pqfile.crypto.kem import PublicKey, Suite, generate
from pqfile.crypto.keyfiles import public_key_to_pem
from pqfile.errors import KeyFormatError
from pqfile.ports import AccessOperation
from pqfile.usecases.recipients import RecipientPrincipalError
from tests.fixtures.postgres import (
    ADMIN_FUNCTION,
    AUDITOR,
    FETCH,
    FUNCTION_ROLES,
    INGEST,
    OPERATOR,
    RETRIEVE,
    ROTATE,
    role_url,
)

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"
_names = itertools.count(1)
#: Every role but the two that may change recipient keys.
OTHER_ROLES = sorted({*FUNCTION_ROLES.values(), AUDITOR, INGEST, ROTATE})
REGISTER_SQL = "SELECT recipient_register(:p, :s, :k, false, NULL, NULL)"


def _reader() -> str:
    """A fresh principal per test: the module shares one database."""
    return f"arn:aws:iam::{ACCOUNT}:user/reader-{next(_names)}"


def _key(suite: Suite = Suite.XWING) -> PublicKey:
    return generate(suite).public_key()


@pytest.fixture
def operator(migrated_db_url: str) -> Iterator[Database]:
    db = Database.from_url(role_url(migrated_db_url, OPERATOR))
    yield db
    db.close()


def _rows(db: Database, principal: str, operation: str) -> list[dict[str, Any]]:
    rows = db.run(
        "SELECT actor, db_role, details FROM access_logs WHERE operation = :o "
        "AND details::jsonb ->> 'principal' = :p ORDER BY seq",
        o=operation, p=principal,
    )  # fmt: skip
    return [{"actor": r[0], "db_role": r[1], "details": json.loads(r[2])} for r in rows]


def _sqlstate(exc: BaseException) -> str | None:
    arg = exc.args[0] if exc.args else None
    return arg.get("C") if isinstance(arg, dict) else getattr(exc, "sqlstate", None)


def test_register_lists_and_audits_with_the_fingerprint(operator: Database) -> None:
    reader, key = _reader(), _key(Suite.MLKEM768)
    keys = PostgresRecipientKeys(operator)
    change = keys.register(reader, key, allow_weaker=False, actor="ops@example.com")
    fingerprint = hashlib.sha256(key.raw).hexdigest()
    assert (change.created, change.replaced, change.suite, change.fingerprint) == (
        True, None, "mlkem768", fingerprint)  # fmt: skip
    [listed] = [e for e in keys.list() if e.principal == reader]
    assert (listed.recipient_id, listed.fingerprint, listed.created_by) == (
        change.recipient_id, fingerprint, OPERATOR)  # fmt: skip
    assert listed.revoked_at is None and listed.allow_weaker is False
    [row] = _rows(operator, reader, "access.recipient_add")
    # The verified actor is the connected role; the CLI's claim is kept apart.
    assert (row["actor"], row["db_role"]) == (OPERATOR, OPERATOR)
    assert row["details"]["claimed_by"] == "ops@example.com"
    assert row["details"]["fingerprint"] == fingerprint
    assert row["details"]["created"] is True and row["details"]["suite"] == "mlkem768"
    assert key.raw.hex() not in json.dumps(row)  # the fingerprint, never the key


def test_reregistering_is_idempotent_and_a_new_key_replaces_the_old(operator: Database) -> None:
    reader, first, second = _reader(), _key(), _key(Suite.MLKEM1024)
    keys = PostgresRecipientKeys(operator)
    one = keys.register(reader, first, allow_weaker=False, actor=None)
    again = keys.register(reader, first, allow_weaker=False, actor=None)
    assert (again.recipient_id, again.created, again.replaced) == (one.recipient_id, False, None)
    two = keys.register(reader, second, allow_weaker=False, actor=None)
    assert two.created and two.replaced == one.recipient_id
    # Changing only allow_weaker is a new registration too (it is the operator's consent).
    three = keys.register(reader, second, allow_weaker=True, actor=None)
    assert three.replaced == two.recipient_id and three.allow_weaker
    history = [e for e in keys.list(include_revoked=True) if e.principal == reader]
    assert [e.recipient_id for e in history] == [one.recipient_id, two.recipient_id,
                                                 three.recipient_id]  # fmt: skip
    assert [e.revoked_by for e in history] == [OPERATOR, OPERATOR, None]
    assert [e.recipient_id for e in keys.list() if e.principal == reader] == [three.recipient_id]
    audit = [r["details"] for r in _rows(operator, reader, "access.recipient_add")]
    assert [(d["created"], d.get("replaced")) for d in audit] == [
        (True, None),
        (False, None),
        (True, one.recipient_id),
        (True, two.recipient_id),
    ]


def test_revoke_retires_the_key_and_pq005_when_none(operator: Database) -> None:
    reader, key = _reader(), _key()
    keys = PostgresRecipientKeys(operator)
    registered = keys.register(reader, key, allow_weaker=False, actor=None)
    assert keys.revoke(reader, actor=None) == registered.recipient_id
    assert not [e for e in keys.list() if e.principal == reader]
    with pytest.raises(DatabaseError) as info:
        keys.revoke(reader, actor=None)
    assert info.value.sqlstate == "PQ005"
    [row] = _rows(operator, reader, "access.recipient_revoke")
    assert row["details"]["fingerprint"] == hashlib.sha256(key.raw).hexdigest()
    assert row["actor"] == OPERATOR


def test_wrong_sizes_unknown_suites_and_patterns_are_refused(operator: Database) -> None:
    reader = _reader()
    keys = PostgresRecipientKeys(operator)
    good = _key()
    # In Python, before any SQL: a key built around the checks, a pattern, a malformed ARN.
    with pytest.raises(KeyFormatError):
        keys.register(reader, PublicKey(Suite.XWING, good.raw[:-1]), allow_weaker=False,
                      actor=None)  # fmt: skip
    with pytest.raises(KeyFormatError):  # an ML-KEM coefficient >= q (FIPS 203 7.2)
        keys.register(reader, PublicKey(Suite.XWING, b"\xff" * 1216), allow_weaker=False,
                      actor=None)  # fmt: skip
    for bad in (f"arn:aws:iam::{ACCOUNT}:user/*", f"arn:aws:iam::{ACCOUNT}:role/team-*",
                "alice", f"arn:aws:iam::{ACCOUNT}:user/a b"):  # fmt: skip
        with pytest.raises(RecipientPrincipalError):
            keys.register(bad, good, allow_weaker=False, actor=None)
    # The database refuses the same on its own (a client that skips the Python checks).
    for suite, raw in (("xwing", good.raw[:-1]), ("mlkem768", good.raw),
                       ("mlkem1024", good.raw), ("kyber512", good.raw)):  # fmt: skip
        with pytest.raises(InvariantError):
            operator.run(REGISTER_SQL, p=reader, s=suite, k=raw)
    with pytest.raises(InvariantError, match="no pattern"):
        operator.run(REGISTER_SQL, p=f"arn:aws:iam::{ACCOUNT}:user/*", s="xwing", k=good.raw)
    assert not [e for e in keys.list(include_revoked=True) if e.principal == reader]
    assert _rows(operator, reader, "access.recipient_add") == []


@pytest.mark.parametrize("role", OTHER_ROLES)
def test_no_other_role_can_plant_or_retire_a_key(migrated_db_url: str, role: str) -> None:
    """An attacker with any other role's credentials (retrieve's included) cannot register a
    key for someone else, revoke theirs, or write the table."""
    victim, key = _reader(), _key()
    owner, operator = Database.from_url(migrated_db_url), Database.from_url(
        role_url(migrated_db_url, OPERATOR))  # fmt: skip
    try:
        PostgresRecipientKeys(operator).register(victim, key, allow_weaker=False, actor=None)
        [[victim_id]] = owner.run(
            "SELECT recipient_id FROM recipient_keys "
            "WHERE principal = :p AND revoked_at IS NULL", p=victim)  # fmt: skip
    finally:
        owner.close()
        operator.close()
    mine = _key().raw
    conn = connect_url(role_url(migrated_db_url, role))
    try:
        attempts = [
            (REGISTER_SQL, {"p": victim, "s": "xwing", "k": mine}),
            ("SELECT recipient_revoke(:p, NULL, NULL)", {"p": victim}),
            ("INSERT INTO recipient_keys (principal, suite, public_key) VALUES (:p, 'xwing', :k)",
             {"p": victim, "k": mine}),
            ("UPDATE recipient_keys SET public_key = :k WHERE principal = :p",
             {"p": victim, "k": mine}),
            ("DELETE FROM recipient_keys WHERE principal = :p", {"p": victim}),
            ("SELECT recipient_author()", {}),
        ]  # fmt: skip
        for sql, params in attempts:
            with pytest.raises(pg8000.native.DatabaseError) as info:
                conn.run(sql, **params)
            assert _sqlstate(info.value) == "42501", (role, sql)
    finally:
        conn.close()
    check = Database.from_url(migrated_db_url)
    try:
        assert check.run("SELECT recipient_id, public_key FROM recipient_keys "
                         "WHERE principal = :p AND revoked_at IS NULL",
                         p=victim) == [[victim_id, key.raw]]  # fmt: skip
    finally:
        check.close()


def _document(url: str, tenant: str) -> str:
    doc = f"doc-{next(_names)}"
    db = Database.from_url(role_url(url, FETCH))
    try:
        PostgresDocumentRepository(db).begin(
            document_id=doc, source_bucket="up", source_key=f"uploads/{tenant}/{doc}.txt",
            source_version_id="v1", source_etag=None, plaintext_size=1, tenant=tenant)  # fmt: skip
    finally:
        db.close()
    return doc


def test_recipient_for_answers_only_while_rule_and_key_stand(
    migrated_db_url: str, operator: Database
) -> None:
    reader, key = _reader(), _key()
    tenant = f"t{next(_names)}"
    doc, other = _document(migrated_db_url, tenant), _document(migrated_db_url, f"{tenant}x")
    keys, rules = PostgresRecipientKeys(operator), PostgresAccessRules(operator)
    retrieve = Database.from_url(role_url(migrated_db_url, RETRIEVE))
    try:
        directory = PostgresRecipientDirectory(retrieve)
        keys.register(reader, key, allow_weaker=False, actor=None)
        assert directory.recipient_for(reader, doc) is None  # a key, but no rule
        rule = dict(tenant=tenant, document_id=None, operation=AccessOperation.RETRIEVE)
        rules.grant(reader, actor=None, **rule)  # type: ignore[arg-type]
        found = directory.recipient_for(reader, doc)
        assert found is not None and found.public_key == key.raw
        assert found.fingerprint == hashlib.sha256(key.raw).hexdigest()
        assert directory.recipient_for(reader, other) is None  # another tenant
        assert directory.recipient_for(_reader(), doc) is None  # another principal
        rules.revoke(reader, actor=None, **rule)  # type: ignore[arg-type]
        assert directory.recipient_for(reader, doc) is None  # stops at once
        rules.grant(reader, actor=None, **rule)  # type: ignore[arg-type]
        assert directory.recipient_for(reader, doc) is not None
        keys.revoke(reader, actor=None)
        assert directory.recipient_for(reader, doc) is None  # stops at once
    finally:
        retrieve.close()


def test_grant_with_key_is_both_or_neither(migrated_db_url: str, operator: Database) -> None:
    reader, key = _reader(), _key()
    keys = PostgresRecipientKeys(operator)
    with pytest.raises(DatabaseError):  # no such document: the rule fails, so no key either
        keys.grant_with_key(reader, key, tenant=None, document_id="no-such-document",
                            allow_weaker=False, actor=None)  # fmt: skip
    assert not [e for e in keys.list(include_revoked=True) if e.principal == reader]
    tenant = f"t{next(_names)}"
    doc = _document(migrated_db_url, tenant)
    rule_id, change = keys.grant_with_key(reader, key, tenant=tenant, document_id=None,
                                          allow_weaker=False, actor=None)  # fmt: skip
    assert change.created and rule_id > 0
    retrieve = Database.from_url(role_url(migrated_db_url, RETRIEVE))
    try:
        found = PostgresRecipientDirectory(retrieve).recipient_for(reader, doc)
        assert found is not None and found.recipient_id == change.recipient_id
    finally:
        retrieve.close()


# --- the admin function's role (its binding, 0018) -----------------------------------------


def test_the_admin_role_registers_only_for_a_bound_operator(migrated_db_url: str) -> None:
    operator_arn, reader, key = f"arn:aws:iam::{ACCOUNT}:user/op-{next(_names)}", _reader(), _key()
    owner = Database.from_url(migrated_db_url)
    try:
        owner.run("INSERT INTO access_rules (principal, tenant, operation) "
                  "VALUES (:p, 'ops', 'operate')", p=operator_arn)  # fmt: skip
    finally:
        owner.close()
    admin = Database.from_url(role_url(migrated_db_url, ADMIN_FUNCTION))
    try:
        keys = PostgresRecipientKeys(admin)
        with pytest.raises(DatabaseError) as info:  # no binding: the role acts for nobody
            keys.register(reader, key, allow_weaker=False, actor=operator_arn)
        assert info.value.sqlstate == "PQ007"
        admin.run("SELECT admin_begin(:p, 'req-1')", p=operator_arn)
        change = keys.register(reader, key, allow_weaker=False, actor="someone else",
                               request_id="req-1")  # fmt: skip
        [entry] = [e for e in keys.list() if e.principal == reader]
        assert entry.created_by == operator_arn
        [row] = _rows(admin, reader, "access.recipient_add")
        assert (row["actor"], row["db_role"]) == (operator_arn, ADMIN_FUNCTION)
        assert "claimed_by" not in row["details"]
        assert keys.revoke(reader, actor=None) == change.recipient_id
        [gone] = [e for e in keys.list(include_revoked=True) if e.principal == reader]
        assert gone.revoked_by == operator_arn
        admin.run("SELECT admin_end()")
    finally:
        admin.close()


# --- the CLI, direct path --------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def as_operator(migrated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("PQFILE_STACK", "PQFILE_ADMIN_FUNCTION", "PQFILE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return role_url(migrated_db_url, OPERATOR)


def _pem(tmp_path: Path, key: PublicKey) -> str:
    path = tmp_path / f"{next(_names)}.pub.pem"
    path.write_bytes(public_key_to_pem(key))
    return str(path)


def test_cli_recipient_add_list_revoke_json(
    as_operator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reader, key = _reader(), _key(Suite.MLKEM1024)
    db = ("--database-url", as_operator)
    code, out, err = _cli(capsys, "access", "recipient", "add", "--principal", reader,
                          _pem(tmp_path, key), "--allow-weaker-suite", "--json", *db)  # fmt: skip
    assert code == 0, err
    added = json.loads(out)
    assert added["fingerprint"] == hashlib.sha256(key.raw).hexdigest()
    assert (added["suite"], added["allow_weaker"], added["created"]) == ("mlkem1024", True, True)
    code, out, _ = _cli(capsys, "access", "recipient", "add", "--principal", reader,
                        _pem(tmp_path, key), "--allow-weaker-suite", *db)  # fmt: skip
    assert code == 0 and out.startswith("already registered: mlkem1024 key ")
    code, out, _ = _cli(capsys, "access", "recipient", "list", "--json", *db)
    [listed] = [e for e in json.loads(out) if e["principal"] == reader]
    assert listed["recipient_id"] == added["recipient_id"] and listed["revoked_at"] is None
    code, out, _ = _cli(capsys, "access", "recipient", "list", *db)
    assert code == 0 and any(reader in line and "allow-weaker" in line
                             for line in out.splitlines())  # fmt: skip
    code, out, _ = _cli(capsys, "access", "recipient", "revoke", "--principal", reader,
                        "--json", *db)  # fmt: skip
    assert code == 0
    assert json.loads(out) == {"recipient_id": added["recipient_id"], "result": "revoked",
                               "principal": reader}  # fmt: skip
    code, out, err = _cli(capsys, "access", "recipient", "revoke", "--principal", reader, *db)
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert "no recipient key is registered" in err
    code, out, _ = _cli(capsys, "access", "recipient", "list", "--all", "--json", *db)
    [old] = [e for e in json.loads(out) if e["principal"] == reader]
    assert old["revoked_at"] is not None and old["revoked_by"] == OPERATOR


def test_cli_grant_with_recipient(
    migrated_db_url: str, as_operator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reader, key = _reader(), _key()
    tenant = f"t{next(_names)}"
    doc = _document(migrated_db_url, tenant)
    code, out, err = _cli(capsys, "access", "grant", "--principal", reader, "--tenant", tenant,
                          "--recipient", _pem(tmp_path, key), "--json",
                          "--database-url", as_operator)  # fmt: skip
    assert code == 0, err
    answer = json.loads(out)
    assert (answer["result"], answer["tenant"], answer["operation"]) == (
        "granted", tenant, "retrieve")  # fmt: skip
    assert answer["recipient"]["fingerprint"] == hashlib.sha256(key.raw).hexdigest()
    retrieve = Database.from_url(role_url(migrated_db_url, RETRIEVE))
    try:
        found = PostgresRecipientDirectory(retrieve).recipient_for(reader, doc)
        assert found is not None and found.recipient_id == answer["recipient"]["recipient_id"]
    finally:
        retrieve.close()
    code, out, err = _cli(capsys, "access", "grant", "--principal", reader, "--tenant", tenant,
                          "--recipient", _pem(tmp_path, key),
                          "--database-url", as_operator)  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[1].startswith("already registered: xwing key ")


def _hostile_files(tmp_path: Path) -> dict[str, Path]:
    good = public_key_to_pem(_key()).decode()
    files = {
        "missing": tmp_path / "nope.pem",
        "directory": tmp_path,
        "secret key": tmp_path / "secret.pem",
        "truncated": tmp_path / "short.pem",
        "huge": tmp_path / "huge.pem",
        "garbage": tmp_path / "garbage.pem",
    }
    from pqfile.crypto.keyfiles import secret_key_to_pem

    files["secret key"].write_bytes(secret_key_to_pem(generate()))
    lines = good.splitlines()
    files["truncated"].write_text("\n".join(lines[:3] + lines[-1:]) + "\n")
    files["huge"].write_bytes(b"A" * 100_000)
    files["garbage"].write_bytes(b"\x00\xff-----BEGIN PUBLIC KEY-----\n\x1b[31m!!\n")
    return files


@pytest.mark.parametrize("argv", [
    ("access", "recipient", "add", "--principal", "REPLACE", "FILE"),
    ("access", "grant", "--principal", "REPLACE", "--tenant", "acme", "--recipient", "FILE"),
])  # fmt: skip
def test_cli_bad_input_is_one_line_and_changes_nothing(
    as_operator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
) -> None:  # fmt: skip
    reader = _reader()
    good = _pem(tmp_path, _key())
    cases: list[tuple[str, str, str]] = [
        (name, reader, str(path)) for name, path in _hostile_files(tmp_path).items()
    ]
    cases += [("pattern", f"arn:aws:iam::{ACCOUNT}:role/readers-*", good),
              ("not an ARN", "alice", good)]  # fmt: skip
    for name, principal, path in cases:
        args = [principal if a == "REPLACE" else path if a == "FILE" else a for a in argv]
        code, out, err = _cli(capsys, *args, "--database-url", as_operator)
        assert (code, out) == (1, ""), name
        assert err.startswith("pqfile: error: ") and err.count("\n") == 1, (name, err)
        assert "Traceback" not in err and "\x1b" not in err, name
    if argv[1] == "grant":
        code, _, err = _cli(capsys, *[reader if a == "REPLACE" else good if a == "FILE" else a
                                      for a in argv], "--operation", "operate",
                            "--database-url", as_operator)  # fmt: skip
        assert code == 1 and "--operation retrieve" in err
    code, out, _ = _cli(capsys, "access", "recipient", "list", "--all", "--json",
                        "--database-url", as_operator)  # fmt: skip
    assert not [e for e in json.loads(out) if e["principal"] == reader]
    code, out, _ = _cli(capsys, "access", "list", "--json", "--database-url", as_operator)
    assert not [r for r in json.loads(out) if r["principal"] == reader]


def test_a_racing_first_registration_gets_a_clear_refusal(migrated_db_url: str) -> None:
    """Two first registrations for one principal: the second waits on the first's index
    entry, then gets PQ004 with a one-line reason, not a bare unique violation."""
    reader = _reader()
    first = connect_url(role_url(migrated_db_url, OPERATOR))
    second = connect_url(role_url(migrated_db_url, OPERATOR))
    try:
        first.run("BEGIN")
        first.run(REGISTER_SQL, p=reader, s="xwing", k=_key().raw)
        second.run("BEGIN")
        outcome: list[BaseException | None] = []

        def register_second() -> None:
            try:
                second.run(REGISTER_SQL, p=reader, s="xwing", k=_key().raw)
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 (inspected below)
                outcome.append(exc)

        waiter = threading.Thread(target=register_second)
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive(), "the second registration should wait for the first"
        first.run("COMMIT")
        waiter.join(10.0)
        (exc,) = outcome
        assert isinstance(exc, pg8000.native.DatabaseError)
        assert exc.args[0]["C"] == "PQ004"
        assert "another registration for this principal won" in exc.args[0]["M"]
        second.run("ROLLBACK")
    finally:
        first.close()
        second.close()
