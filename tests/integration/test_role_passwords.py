"""Password logins on a server that requires them (database_role_passwords: LocalStack in
Docker, whose postgres image refuses network logins without a password).

The test's own database on the session's throwaway cluster gets a pg_hba line that requires
scram-sha-256 on TCP (for that database only, so the other tests keep trust). The migrate
function sets each role's password from its login secret (Secrets Manager on the emulator);
then a role without a password is refused, and with its secret
(PQFILE_DATABASE_PASSWORD_SECRET_ARN) it logs in.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
from devstack.postgres import PostgresHandle

from pqfile.adapters.postgres.connection import Database, DatabaseError
from pqfile.config import DatabaseSettings
from pqfile.errors import PQFileError, TransientError
from pqfile.handlers import migrate
from tests.fixtures.postgres import FUNCTION_ROLES, role_url

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]

MIGRATIONS = Path(__file__).resolve().parents[2] / "sql" / "migrations"
CONTEXT = SimpleNamespace(
    function_name="pqfile-migrate",
    memory_limit_in_mb=256,
    invoked_function_arn="arn:aws:lambda:us-east-1:1:function:pqfile-migrate",
    aws_request_id="req-role-passwords",
)
FETCH, STORE = FUNCTION_ROLES["fetch"], FUNCTION_ROLES["store"]


def _current_user(db: Database) -> str:
    try:
        return str(db.run("SELECT current_user")[0][0])
    finally:
        db.close()


def _refused(url: str) -> bool:
    try:
        _current_user(Database.from_url(url))
    except PQFileError:
        return True
    return False


@pytest.fixture
def logins(
    postgres_server: PostgresHandle,
    make_database: Callable[[], str],
    custody_kms: tuple[Any, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, dict[str, str]]]:
    """A migrated database whose roles have passwords from their secrets, and which
    requires scram-sha-256 on TCP. Yields (owner URL, role -> secret ARN)."""
    import boto3

    from pqfile.adapters import aws

    if postgres_server.data_dir is None:  # a server given by PQFILE_DATABASE_URL
        if os.environ.get("CI"):
            pytest.fail("this test edits the throwaway cluster's pg_hba.conf (CI starts one)")
        pytest.skip("needs the throwaway cluster (PQFILE_DATABASE_URL names another server)")
    url = make_database()
    endpoint = custody_kms[0].meta.endpoint_url
    secrets = boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    prefix = f"pqfile-{uuid.uuid4().hex[:8]}/database"
    arns = {
        role: secrets.create_secret(
            Name=f"{prefix}/{role}",
            SecretString=json.dumps({"username": role, "password": f"pw-{uuid.uuid4().hex}"}),
        )["ARN"]
        for role in (FETCH, STORE)
    }
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PQFILE_DATABASE_URL", url)
    monkeypatch.setenv("PQFILE_MIGRATIONS_DIR", str(MIGRATIONS))
    aws.reset_clients()
    hba = postgres_server.data_dir / "pg_hba.conf"
    original = hba.read_text()
    try:
        # What `make deploy-localstack` does on the Docker path: the migrate function
        # applies the migrations, then sets the logins (terraform/invocations.tf).
        answer = migrate.handler({"role_logins": arns}, CONTEXT)
        assert answer["role_logins"] == sorted(arns)
        monkeypatch.delenv("PQFILE_DATABASE_URL")
        # Before the rule: trust, so a role without a password logs in.
        assert _current_user(Database.from_url(role_url(url, FETCH))) == FETCH
        database = urlsplit(url).path.lstrip("/")
        rule = f"host {database} all 127.0.0.1/32 scram-sha-256\n"
        hba.write_text(rule + original)  # first match wins: before initdb's trust lines
        with Database.from_url(postgres_server.url) as admin:
            assert admin.run("SELECT pg_reload_conf()") == [[True]]
        deadline = time.monotonic() + 10
        while not _refused(role_url(url, FETCH)):  # the postmaster reloads asynchronously
            assert time.monotonic() < deadline, "pg_hba.conf was not reloaded in 10 s"
            time.sleep(0.1)
        yield url, arns
    finally:
        hba.write_text(original)
        with Database.from_url(postgres_server.url) as admin:
            admin.run("SELECT pg_reload_conf()")
        aws.reset_clients()


def test_a_role_without_its_password_is_refused(logins: tuple[str, dict[str, str]]) -> None:
    url, _ = logins
    # One clear, non-retryable error (a workflow retry cannot help), naming what to set.
    with pytest.raises(DatabaseError, match="wants a password for role 'pqfile_fetch'") as info:
        _current_user(Database.from_url(role_url(url, FETCH)))
    assert not isinstance(info.value, TransientError)
    # A wrong password is refused by the server itself.
    wrong = role_url(url, f"{FETCH}:not-the-password")
    with pytest.raises(DatabaseError, match="password authentication failed"):
        _current_user(Database.from_url(wrong))


def test_with_its_secret_each_role_logs_in_as_itself(logins: tuple[str, dict[str, str]]) -> None:
    url, arns = logins
    for role in (FETCH, STORE):
        settings = DatabaseSettings(url=role_url(url, role), password_secret_arn=arns[role])
        assert _current_user(Database.from_env(settings)) == role
    # How a function reads it: PQFILE_DATABASE_PASSWORD_SECRET_ARN beside its URL.
    settings = DatabaseSettings.from_env(
        {
            "PQFILE_DATABASE_URL": role_url(url, STORE),
            "PQFILE_DATABASE_PASSWORD_SECRET_ARN": arns[STORE],
        }
    )
    assert _current_user(Database.from_env(settings)) == STORE


def test_another_roles_secret_is_not_used(logins: tuple[str, dict[str, str]]) -> None:
    url, arns = logins
    settings = DatabaseSettings(url=role_url(url, FETCH), password_secret_arn=arns[STORE])
    with pytest.raises(PQFileError, match="names another role"):
        _current_user(Database.from_env(settings))
