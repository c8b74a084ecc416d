"""The migrate function (pqfile.handlers.migrate) on real PostgreSQL: it applies every
migration from the directory Terraform names (PQFILE_MIGRATIONS_DIR, the copy in the zip),
answers the names it applied, and nothing on a second run."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from pqfile.adapters.postgres.connection import Database
from pqfile.handlers import migrate
from tests.fixtures.postgres import FUNCTION_ROLES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]

MIGRATIONS = Path(__file__).resolve().parents[2] / "sql" / "migrations"
CONTEXT = SimpleNamespace(
    function_name="pqfile-migrate",
    memory_limit_in_mb=256,
    invoked_function_arn="arn:aws:lambda:us-east-1:1:function:pqfile-migrate",
    aws_request_id="req-1",
)


def test_applies_the_shipped_migrations_once(
    make_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = make_database()
    shipped = tmp_path / "sql" / "migrations"  # as scripts/build_lambda lays out the zip
    shutil.copytree(MIGRATIONS, shipped)
    monkeypatch.setenv("PQFILE_DATABASE_URL", url)
    monkeypatch.setenv("PQFILE_MIGRATIONS_DIR", str(shipped))

    first = migrate.handler({}, CONTEXT)
    assert len(first["applied"]) == len(list(MIGRATIONS.glob("*.sql")))
    assert migrate.handler({}, CONTEXT)["applied"] == []

    # It created every function's database role.
    with Database.from_url(url) as db:
        roles = {r[0] for r in db.run("SELECT rolname FROM pg_roles")}
    assert set(FUNCTION_ROLES.values()) <= roles
