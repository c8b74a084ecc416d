"""The admin function's own role (sql/migrations/0018; docs/KEYS.md, "The admin function's
actor"), run as that role on a migrated database: it writes nothing until the function
binds a verified principal that an ``operate`` rule matches, and then every audit row,
rule and request it makes names that principal; the binding is per session and ends with
``admin_end``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pg8000.native
import pytest

from tests.fixtures.postgres import ADMIN_FUNCTION, OPERATOR, role_url

pytestmark = pytest.mark.integration

ALICE = "arn:aws:iam::111122223333:user/alice"
MALLORY = "arn:aws:iam::111122223333:user/mallory"


def _connect(url: str) -> pg8000.native.Connection:
    from pqfile.adapters.postgres import connect_url

    return connect_url(url)


def _sqlstate(exc: BaseException) -> str | None:
    arg = exc.args[0] if exc.args else None
    return arg.get("C") if isinstance(arg, dict) else None


@pytest.fixture
def admin(migrated_db_url: str) -> Iterator[pg8000.native.Connection]:
    owner = _connect(migrated_db_url)
    try:
        owner.run("DELETE FROM admin_bindings")
        owner.run("DELETE FROM access_rules WHERE principal = :p", p=ALICE)
        owner.run("INSERT INTO access_rules (principal, tenant, operation) "
                  "VALUES (:p, 'ops', 'operate')", p=ALICE)  # fmt: skip
    finally:
        owner.close()
    conn = _connect(role_url(migrated_db_url, ADMIN_FUNCTION))
    yield conn
    conn.close()


def _refused(conn: pg8000.native.Connection, sql: str, **params: Any) -> str | None:
    with pytest.raises(pg8000.native.DatabaseError) as info:
        conn.run(sql, **params)
    return _sqlstate(info.value)


GRANT = ("SELECT access_grant(:p, 'acme', NULL, 'retrieve', :claimed, 'req-1')")
SUCCESS = ("SELECT admin_audit('admin.command', 'success', :p, NULL, 'req-1', "
           "'{\"command\": \"access.grant\"}')")  # fmt: skip


def test_without_a_binding_the_role_writes_nothing(admin: pg8000.native.Connection) -> None:
    assert _refused(admin, GRANT, p=MALLORY, claimed=ALICE) == "PQ007"
    assert _refused(admin, SUCCESS, p=ALICE) == "PQ007"
    assert _refused(admin, "SELECT key_request(:k, 'revoke', 'r', :a, NULL)",
                    k="0" * 32, a=ALICE) in ("PQ005", "PQ007")  # fmt: skip
    assert admin.run("SELECT count(*) FROM access_rules WHERE principal = :p", p=MALLORY) == [[0]]


def test_only_an_operator_principal_can_be_bound(admin: pg8000.native.Connection) -> None:
    assert _refused(admin, "SELECT admin_begin(:p, NULL)", p=MALLORY) == "PQ004"
    assert _refused(admin, "SELECT admin_begin('pqfile_operator', NULL)") == "PQ007"
    assert _refused(admin, "SELECT admin_begin(:p, NULL)", p=ALICE + "\nx") == "PQ007"


def test_a_bound_principal_is_the_actor_and_author(admin: pg8000.native.Connection) -> None:
    admin.run("SELECT admin_begin(:p, 'req-1')", p=ALICE)
    [[rule_id]] = admin.run(GRANT, p=MALLORY, claimed="someone else")
    [[actor, db_role, details]] = admin.run(
        "SELECT actor, db_role, details FROM access_logs WHERE operation = 'access.grant' "
        "ORDER BY seq DESC LIMIT 1")  # fmt: skip
    assert (actor, db_role) == (ALICE, ADMIN_FUNCTION)
    assert "claimed_by" not in json.loads(details)
    assert admin.run("SELECT created_by FROM access_rules WHERE rule_id = :r",
                     r=rule_id) == [[ALICE]]  # fmt: skip
    admin.run(SUCCESS, p=ALICE)
    # Success rows must name the bound principal, not another one.
    assert _refused(admin, SUCCESS, p=MALLORY) == "PQ007"
    # Refused rows may name the caller the function verified (no rule needed for that).
    admin.run("SELECT admin_audit('admin.command', 'refused', :p, NULL, NULL, NULL)", p=MALLORY)
    assert _refused(admin, "SELECT admin_audit('key.revoke', 'success', :p, NULL, NULL, NULL)",
                    p=ALICE) == "PQ007"  # fmt: skip
    admin.run("SELECT admin_end()")
    assert _refused(admin, GRANT, p=MALLORY, claimed=ALICE) == "PQ007"


def test_a_binding_serves_its_own_session_only(
    admin: pg8000.native.Connection, migrated_db_url: str
) -> None:
    admin.run("SELECT admin_begin(:p, NULL)", p=ALICE)
    other = _connect(role_url(migrated_db_url, ADMIN_FUNCTION))
    try:
        assert _refused(other, GRANT, p=MALLORY, claimed=ALICE) == "PQ007"
    finally:
        other.close()


def test_people_cannot_bind_or_write_admin_rows(migrated_db_url: str) -> None:
    conn = _connect(role_url(migrated_db_url, OPERATOR))
    try:
        assert _refused(conn, "SELECT admin_begin(:p, NULL)", p=ALICE) == "42501"
        assert _refused(conn, SUCCESS, p=ALICE) == "42501"
    finally:
        conn.close()
