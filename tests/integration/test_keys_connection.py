"""Connection settings: PQFILE_DATABASE_URL parsing, TLS modes, error translation."""

from __future__ import annotations

import json
import ssl
from typing import Any

import pytest
from devstack.postgres import PostgresHandle, free_port

from pqfile.adapters.postgres.connection import (
    Database,
    PermissionDeniedError,
    params_from_env,
    parse_database_url,
    ssl_context_for,
)
from pqfile.config import DatabaseSettings
from pqfile.errors import PQFileError, TransientError
from tests.fixtures.postgres import role_url


def test_parse_database_url() -> None:
    p = parse_database_url(
        "postgresql://pq%40user:s%3Acret@db.example:6543/pqfile?sslmode=verify-full"
        "&sslrootcert=/etc/rds-ca.pem&connect_timeout=3"
    )
    assert (p.user, p.password, p.host, p.port, p.database) == (
        "pq@user",
        "s:cret",
        "db.example",
        6543,
        "pqfile",
    )
    assert p.sslmode == "verify-full" and p.sslrootcert == "/etc/rds-ca.pem" and p.timeout == 3
    assert "s:cret" not in repr(p)
    sock = parse_database_url("postgresql://me@/db?host=/tmp/pg&port=5433")
    assert sock.unix_sock == "/tmp/pg/.s.PGSQL.5433"
    with pytest.raises(ValueError):
        parse_database_url("mysql://x@y/z")
    with pytest.raises(ValueError):
        parse_database_url("postgresql://x@y/z?sslmode=sometimes")


def test_tls_is_verified_by_default_except_on_this_machine() -> None:
    # Finding 7: a URL without sslmode verifies the server, except over loopback or a Unix
    # socket (the local stack's throwaway cluster), where it stays off.
    for url in (
        "postgresql://u@db.example/d",
        "postgresql://u@10.0.0.5:5432/d",
        "postgresql://u@pqfile.abc.us-east-1.rds.amazonaws.com/d",
        "postgresql://u@[2001:db8::1]/d",
    ):
        params = parse_database_url(url)
        assert params.sslmode == "verify-full", url
        context = ssl_context_for(params)
        assert isinstance(context, ssl.SSLContext) and context.check_hostname
    for url in (
        "postgresql://u@localhost/d",
        "postgresql://u@127.0.0.1:5432/d",
        "postgresql://u@127.8.9.10/d",
        "postgresql://u@[::1]/d",
        "postgresql://u@/d?host=/tmp/pg",
        "postgresql://u@/d",
    ):
        assert parse_database_url(url).sslmode == "disable", url
    # an explicit mode always wins
    assert parse_database_url("postgresql://u@db.example/d?sslmode=disable").sslmode == "disable"
    assert parse_database_url("postgresql://u@127.0.0.1/d?sslmode=require").sslmode == "require"


def test_tls_modes() -> None:
    assert ssl_context_for(parse_database_url("postgresql://u@localhost/d")) is False
    assert ssl_context_for(parse_database_url("postgresql://u@h/d?sslmode=prefer")) is None
    req = ssl_context_for(parse_database_url("postgresql://u@h/d?sslmode=require"))
    assert isinstance(req, ssl.SSLContext) and req.verify_mode is ssl.CERT_NONE
    full = ssl_context_for(parse_database_url("postgresql://u@h/d?sslmode=verify-full"))
    assert isinstance(full, ssl.SSLContext) and full.verify_mode is ssl.CERT_REQUIRED
    assert full.check_hostname
    ca = ssl_context_for(parse_database_url("postgresql://u@h/d?sslmode=verify-ca"))
    assert isinstance(ca, ssl.SSLContext) and ca.verify_mode is ssl.CERT_REQUIRED
    assert not ca.check_hostname


def test_environment_is_required() -> None:
    with pytest.raises(PQFileError, match="PQFILE_DATABASE_URL"):
        params_from_env(DatabaseSettings.from_env({}))
    build = params_from_env(DatabaseSettings.from_env({"PQFILE_DATABASE_URL": "postgresql://u@h:1/d"}))
    assert build().port == 1


@pytest.mark.integration
def test_unreachable_server_is_transient() -> None:
    db = Database.from_url(f"postgresql://u@127.0.0.1:{free_port()}/d?connect_timeout=2")
    with pytest.raises(TransientError):
        db.run("SELECT 1")


@pytest.mark.integration
def test_dropped_connection_is_transient_then_recovers(migrated_db_url: str) -> None:
    db = Database.from_url(migrated_db_url)
    pid = db.run("SELECT pg_backend_pid()")[0][0]
    killer = Database.from_url(migrated_db_url)
    killer.run("SELECT pg_terminate_backend(:pid)", pid=pid)
    killer.close()
    with pytest.raises(TransientError):
        db.run("SELECT 1")
    assert db.run("SELECT 1") == [[1]]  # a new connection on the next call
    db.close()


@pytest.mark.integration
def test_wrong_role_privilege_is_permission_denied(migrated_db_url: str) -> None:
    db = Database.from_url(role_url(migrated_db_url, "pqfile_retrieve"))
    with pytest.raises(PermissionDeniedError, match="permission denied"):
        db.run(
            "INSERT INTO documents (document_id, source_bucket, source_key, source_etag) "
            "VALUES ('d', 'b', 'k', 'e')"
        )
    db.close()


@pytest.mark.integration
def test_credentials_from_secrets_manager(
    migrated_db_url: str,
    custody_kms: tuple[Any, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    from pqfile.adapters import aws

    client, _ = custody_kms
    endpoint = client.meta.endpoint_url
    params = parse_database_url(role_url(migrated_db_url, "pqfile_retrieve"))
    secrets = boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    arn = secrets.create_secret(
        Name=f"pqfile-db-{params.database}",
        SecretString=json.dumps(
            {
                "username": params.user,
                "password": "not-checked-locally",
                "host": params.host,
                "port": params.port,
                "dbname": params.database,
            }
        ),
    )["ARN"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    aws.reset_clients()
    try:
        env = {
            "PQFILE_DATABASE_SECRET_ARN": arn,
            "PQFILE_DATABASE_SSLMODE": "disable",  # the local server has no certificate
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        db = Database.from_env(DatabaseSettings.from_env(env))
        assert db.run("SELECT current_user") == [["pqfile_retrieve"]]
        db.close()
        built = params_from_env(DatabaseSettings.from_env(env))()
        assert built.password == "not-checked-locally" and "not-checked" not in repr(built)
        only_secret = DatabaseSettings.from_env({"PQFILE_DATABASE_SECRET_ARN": arn})
        assert params_from_env(only_secret)().sslmode == "verify-full"
    finally:
        aws.reset_clients()


@pytest.mark.integration
def test_tls_connections(migrated_db_url: str, postgres_server: PostgresHandle) -> None:
    if postgres_server.ca_file is None:
        pytest.skip("the server was given through PQFILE_DATABASE_URL; its TLS is unknown")
    ca = postgres_server.ca_file
    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    for suffix, encrypted in (
        ("", False),
        ("?sslmode=disable", False),
        ("?sslmode=prefer", True),
        ("?sslmode=require", True),
        (f"?sslmode=verify-full&sslrootcert={ca}", True),
        (f"?sslmode=verify-ca&sslrootcert={ca}", True),
    ):
        db = Database.from_url(migrated_db_url + suffix)
        assert db.run(query) == [[encrypted]], suffix
        db.close()
    # verify-full against the system CAs: the self-signed certificate is refused
    db = Database.from_url(migrated_db_url + "?sslmode=verify-full")
    with pytest.raises(TransientError):
        db.run(query)
