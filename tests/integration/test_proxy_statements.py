"""Behind an RDS Proxy the functions' URLs carry ``statements=unnamed`` (terraform/proxy.tf):
pg8000 then sends the extended protocol's unnamed statement, which leaves no session state
(a named prepared statement would pin the client to one pooled connection)."""

from __future__ import annotations

import pytest

from pqfile.adapters.postgres import Database
from pqfile.adapters.postgres.connection import parse_database_url

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
