"""Schema migrations on AWS: apply ``sql/migrations`` as the database owner.

The one function that holds the master credentials (terraform/migrate.tf): it reads the
RDS-managed master secret at run time (``PQFILE_DATABASE_SECRET_ARN``, never an environment
password), applies the pending migrations in order (they create the per-function roles,
grant them ``rds_iam`` and own the SECURITY DEFINER functions) and returns the names it
applied (empty when the schema is current). Terraform invokes it when the migrations change
(terraform/invocations.tf; docs/OPERATIONS.md, "First deploy, hands off"); an exception
fails that apply with its type and message. No workflow or schedule calls it.

With password logins (terraform/proxy.tf: the RDS Proxy, or ``database_role_passwords``
for LocalStack in Docker) the event carries ``role_logins``, role -> the ARN of that role's
login secret in Secrets Manager: each role then gets that password (sent as a SCRAM
verifier) and leaves ``rds_iam`` where it exists (docs/OPERATIONS.md "Capacity",
"Database logins").

Environment: the database variables and ``PQFILE_MIGRATIONS_DIR`` (the migrations shipped
in the function zip by scripts/build_lambda).
"""

from __future__ import annotations

from typing import Any

from pqfile import wiring
from pqfile.handlers._runtime import entry_point, logger


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    logins = (event or {}).get("role_logins") or {}
    if not isinstance(logins, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in logins.items()
    ):
        raise ValueError("role_logins must map role names to secret ARNs")
    applied = wiring.run_migrations()
    logger.info("migrations applied", extra={"applied": applied})
    answer: dict[str, Any] = {"applied": applied}
    if logins:
        answer["role_logins"] = wiring.set_login_passwords(logins)
        logger.info("role logins set", extra={"roles": answer["role_logins"]})
    return answer
