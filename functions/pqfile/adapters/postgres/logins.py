"""Password logins (terraform/proxy.tf): one Secrets Manager secret per database role.

- The RDS Proxy logs in to PostgreSQL as each function's role with that password, so on AWS
  those roles get it and leave ``rds_iam`` (whose members may log in with IAM tokens only).
- ``database_role_passwords`` (LocalStack in Docker, no proxy): the postgres image refuses
  network logins without a password, so each function reads its role's password from the
  same kind of secret (``PQFILE_DATABASE_PASSWORD_SECRET_ARN``, connection.py) and logs in
  with SCRAM-SHA-256.

The migrate function sets them (``role_logins``), after the migrations that create the roles.

The password never reaches the server or its logs in clear: ``ALTER ROLE ... PASSWORD``
is sent a SCRAM-SHA-256 verifier (RFC 5802 / RFC 7677, PostgreSQL's stored form
``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``), as psql's ``\\password``
does; the RDS parameter group logs DDL statements.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping

from pqfile.adapters.postgres.connection import Database

ITERATIONS = 4096


def scram_sha256_verifier(
    password: str, salt: bytes | None = None, iterations: int = ITERATIONS
) -> str:
    """PostgreSQL's stored SCRAM-SHA-256 verifier of ``password`` (no SASLprep: the
    generated passwords are ASCII letters and digits)."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def set_role_logins(db: Database, passwords: Mapping[str, str]) -> list[str]:
    """Give each existing role its password (as a verifier) and revoke ``rds_iam`` where
    that role exists (RDS only); one transaction. Returns the roles changed, sorted."""
    changed: list[str] = []
    with db.transaction() as s:
        has_rds_iam = bool(s.run("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'"))
        for role in sorted(passwords):
            if not s.run("SELECT 1 FROM pg_roles WHERE rolname = :r AND rolcanlogin", r=role):
                raise ValueError(f"no login role {role!r} in the database")
            verifier = scram_sha256_verifier(passwords[role])
            (alter,) = s.run(
                "SELECT format('ALTER ROLE %I PASSWORD %L', CAST(:r AS text), CAST(:v AS text))",
                r=role,
                v=verifier,
            )[0]
            s.script(str(alter))
            if has_rds_iam:
                (revoke,) = s.run(
                    "SELECT format('REVOKE rds_iam FROM %I', CAST(:r AS text))", r=role
                )[0]
                s.script(str(revoke))
            changed.append(role)
    return changed
