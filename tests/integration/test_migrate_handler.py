"""The migrate function (pqfile.handlers.migrate) on real PostgreSQL: it applies every
migration from the directory Terraform names (PQFILE_MIGRATIONS_DIR, the copy in the zip),
answers the names it applied, and nothing on a second run."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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


def test_sets_the_role_logins_from_their_secrets(
    make_database: Callable[[], str],
    custody_kms: tuple[Any, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``role_logins`` (terraform/invocations.tf: the RDS Proxy, or
    database_role_passwords) each role gets its secret's password, stored as a SCRAM
    verifier (never the password itself)."""
    import boto3

    from pqfile.adapters import aws

    url = make_database()
    monkeypatch.setenv("PQFILE_DATABASE_URL", url)
    monkeypatch.setenv("PQFILE_MIGRATIONS_DIR", str(MIGRATIONS))
    endpoint = custody_kms[0].meta.endpoint_url
    secrets = boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    role = FUNCTION_ROLES["store"]
    arn = secrets.create_secret(
        Name=f"pqfile-proxy-{uuid.uuid4().hex[:8]}/{role}",
        SecretString=json.dumps({"username": role, "password": "proxy-password-1"}),
    )["ARN"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    aws.reset_clients()
    try:
        answer = migrate.handler({"role_logins": {role: arn}}, CONTEXT)
        assert answer["role_logins"] == [role] and answer["applied"]
        with Database.from_url(url) as db:
            (stored,) = db.run("SELECT rolpassword FROM pg_authid WHERE rolname = :r", r=role)[0]
        assert str(stored).startswith("SCRAM-SHA-256$4096:")
        assert "proxy-password-1" not in str(stored)
        with pytest.raises(ValueError, match="role_logins"):
            migrate.handler({"role_logins": {role: ""}}, CONTEXT)
    finally:
        aws.reset_clients()
