"""The grants matrix of docs/KEYS.md ("Roles and grants"), tried cell by cell.

Each role connects to a migrated database and attempts every operation on every table and
calls every function of the schema; what succeeds must be exactly what the matrix allows.
A table or function the matrix does not list fails the test (the matrix must grow with the
schema).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pg8000.native
import pytest

from tests.fixtures.postgres import role_url

pytestmark = pytest.mark.integration

KEYS_MD = Path(__file__).resolve().parents[2] / "docs" / "KEYS.md"
TABLE_OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
DENIED = "42501"  # insufficient_privilege


def _matrix_rows(marker: str) -> list[list[str]]:
    text = KEYS_MD.read_text(encoding="utf-8")
    start = text.index(f"<!-- grants-matrix:{marker} -->")
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if set("".join(cells)) <= {"-", " "}:
            continue  # the separator row
        rows.append(cells)
    return rows


def _name(cell: str) -> str:
    return cell.strip().strip("`")


def table_matrix() -> tuple[list[str], dict[str, dict[str, str]]]:
    header, *body = _matrix_rows("tables")
    tables = header[2:]
    return tables, {_name(r[0]): dict(zip(tables, r[2:], strict=True)) for r in body}


def function_matrix() -> dict[str, set[str]]:
    _, *body = _matrix_rows("functions")
    out: dict[str, set[str]] = {}
    for row in body:
        allowed = {_name(c) for c in row[1].split(",")} - {"-"}
        out[_name(row[0])] = allowed
    return out


TABLES, TABLE_GRANTS = table_matrix()
FUNCTION_GRANTS = function_matrix()
ROLES = sorted(TABLE_GRANTS)


def _expected_table_ops(cell: str) -> set[str]:
    cell = cell.strip()
    if cell == "-":
        return set()
    if cell == "SELECT":
        return {"SELECT"}
    if cell == "SELECT but wrapped_seed":
        return {"SELECT but wrapped_seed"}
    raise AssertionError(f"unknown matrix cell {cell!r}")


@pytest.fixture(scope="module")
def owner(migrated_db_url: str) -> Iterator[pg8000.native.Connection]:
    conn = _connect(migrated_db_url)
    yield conn
    conn.close()


def _connect(url: str) -> pg8000.native.Connection:
    from pqfile.adapters.postgres import connect_url

    return connect_url(url)


def _attempt(conn: pg8000.native.Connection, sql: str) -> bool:
    """Run ``sql`` in a transaction that is rolled back; False only on permission denied."""
    conn.run("BEGIN")
    try:
        conn.run(sql)
    except pg8000.native.DatabaseError as exc:
        code = exc.args[0].get("C") if exc.args and isinstance(exc.args[0], dict) else None
        return code != DENIED
    finally:
        conn.run("ROLLBACK")
    return True


def _columns(owner: pg8000.native.Connection, table: str) -> list[str]:
    rows = owner.run(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = :t ORDER BY ordinal_position",
        t=table,
    )
    return [str(r[0]) for r in rows]


def test_matrix_lists_every_table_and_function(owner: pg8000.native.Connection) -> None:
    tables = {
        str(r[0])
        for r in owner.run(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_migrations'"
        )
    }
    assert tables == set(TABLES)
    functions = {
        str(r[0])
        for r in owner.run(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public'"
        )
    }
    assert functions == set(FUNCTION_GRANTS)
    roles = {
        str(r[0]) for r in owner.run("SELECT rolname FROM pg_roles WHERE rolname LIKE 'pqfile%'")
    }
    assert set(ROLES) <= roles


@pytest.mark.parametrize("role", ROLES)
def test_role_table_grants_are_exactly_the_matrix(
    migrated_db_url: str, owner: pg8000.native.Connection, role: str
) -> None:
    conn = _connect(role_url(migrated_db_url, role))
    try:
        for table in TABLES:
            columns = _columns(owner, table)
            allowed: set[str] = set()
            if _attempt(conn, f"SELECT * FROM {table} LIMIT 0"):
                allowed.add("SELECT")
            elif "wrapped_seed" in columns and _attempt(
                conn,
                f"SELECT {', '.join(c for c in columns if c != 'wrapped_seed')} "
                f"FROM {table} LIMIT 0",
            ):
                allowed.add("SELECT but wrapped_seed")
            if _attempt(conn, f"INSERT INTO {table} DEFAULT VALUES"):
                allowed.add("INSERT")
            if any(
                _attempt(conn, f"UPDATE {table} SET {c} = DEFAULT WHERE false") for c in columns
            ):
                allowed.add("UPDATE")
            if _attempt(conn, f"DELETE FROM {table} WHERE false"):
                allowed.add("DELETE")
            if _attempt(conn, f"TRUNCATE {table}"):
                allowed.add("TRUNCATE")
            expected = _expected_table_ops(TABLE_GRANTS[role][table])
            assert allowed == expected, (
                f"{role} on {table}: {sorted(allowed)} != {sorted(expected)}"
            )
    finally:
        conn.close()


@pytest.mark.parametrize("role", ROLES)
def test_role_function_grants_are_exactly_the_matrix(
    migrated_db_url: str, owner: pg8000.native.Connection, role: str
) -> None:
    signatures = owner.run(
        "SELECT p.proname, pg_get_function_identity_arguments(p.oid), "
        "p.prorettype = 'trigger'::regtype, "
        "coalesce(array_length(p.proargtypes, 1), 0), "
        "ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) AS t) "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public' ORDER BY 1"
    )
    conn = _connect(role_url(migrated_db_url, role))
    try:
        allowed: set[str] = set()
        for name, _args, is_trigger, _nargs, types in signatures:
            if is_trigger:
                # Trigger functions cannot be called directly; ask the catalogue.
                rows = conn.run(
                    "SELECT has_function_privilege(:fn, 'EXECUTE')",
                    fn=f"{name}({', '.join(types)})",
                )
                if rows[0][0]:
                    allowed.add(name)
                continue
            nulls = ", ".join(f"NULL::{t}" for t in types)
            if _attempt(conn, f"SELECT {name}({nulls})"):
                allowed.add(name)
        expected = {fn for fn, roles in FUNCTION_GRANTS.items() if role in roles}
        assert allowed == expected, f"{role}: {sorted(allowed ^ expected)} differ"
    finally:
        conn.close()


def test_matrix_parser_reads_the_document() -> None:
    # The parser must not silently read an empty matrix (which would make the tests vacuous).
    assert len(ROLES) >= 12
    assert "encryption_keys" in TABLES and "access_logs" in TABLES
    assert FUNCTION_GRANTS["key_create"] == {"pqfile_maintain"}
    assert re.fullmatch(r"pqfile_[a-z_]+", ROLES[0])
