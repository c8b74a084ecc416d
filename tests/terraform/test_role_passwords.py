"""database_role_passwords (terraform/proxy.tf): the Docker path's password logins, statically.

No apply (CI has no room for another deployment): one plan of the local root with the
variables of `make deploy-local` plus terraform/envs/docker.tfvars, against the
emulator (which also answers the password generator's GetRandomPassword). The login itself
is tested against PostgreSQL in tests/integration/test_role_passwords.py.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from devstack import terraform as tf

from tests.fixtures.postgres import ADMIN_FUNCTION, AUDITOR, FUNCTION_ROLES
from tests.terraform.conftest import Workspace

pytestmark = pytest.mark.integration

#: What docker-compose.yml's functions use (envs/docker.tfvars): the postgres service
#: inside the Docker network.
DOCKER_DATABASE_URL = "postgresql://pqfile:pqfile@postgres:5432/pqfile?sslmode=disable"
DOCKER = ("-var-file=envs/docker.tfvars",)
#: Every function but migrate, which keeps the owner's URL.
FUNCTIONS = sorted({*FUNCTION_ROLES, "admin"})


def _args(emulator: Any, zip_path: Path, *extra: str) -> tuple[dict[str, str], list[str]]:
    env = tf.terraform_env(Path(tempfile.gettempdir()), local=True)
    # The moto stack's URL first: envs/docker.tfvars, given after it, must replace it.
    state = {"endpoint_url": emulator.endpoint_url,
             "database_url": "postgresql://pqfile@127.0.0.1:5432/pqfile"}  # fmt: skip
    return env, [*tf.local_vars(state, zip_path), *extra]


@pytest.fixture(scope="module")
def docker_plan(tf_workspace: Workspace, aws_emulator: Any, function_zip: Path) -> dict[str, Any]:
    env, args = _args(aws_emulator, function_zip, *DOCKER)
    plan = "role-passwords.tfplan"
    proc = tf_workspace.run("plan", "-input=false", "-no-color", f"-out={plan}", *args,
                            env=env, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(json.loads(tf_workspace.run("show", "-json", plan, env=env).stdout))


def _changes(plan: dict[str, Any], type_: str, name: str) -> dict[str, dict[str, Any]]:
    """The planned changes of one resource block, keyed by instance (for_each key or index)."""
    return {
        str(r.get("index")): r["change"]
        for r in plan["resource_changes"]
        if r["mode"] == "managed" and r["type"] == type_ and r["name"] == name
    }


def test_each_role_gets_a_login_secret_the_migrate_function_sets(
    docker_plan: dict[str, Any],
) -> None:
    roles = set(FUNCTION_ROLES.values()) | {ADMIN_FUNCTION, AUDITOR}
    secrets = _changes(docker_plan, "aws_secretsmanager_secret", "proxy_user")
    assert set(secrets) == roles
    # Deleted at once on destroy: a new apply on the same LocalStack reuses the names.
    assert {s["after"]["recovery_window_in_days"] for s in secrets.values()} == {0}
    assert set(_changes(docker_plan, "aws_secretsmanager_secret_version", "proxy_user")) == roles
    assert "aws_db_proxy" not in {r["type"] for r in docker_plan["resource_changes"]}
    # The migrate function may read them all (it sets the verifiers) ...
    migrate = _changes(docker_plan, "aws_iam_role_policy", "migrate_proxy_logins")
    assert [p["after"]["name"] for p in migrate.values()] == ["set-proxy-logins"]
    # ... and is invoked with them (role -> secret ARN: known after apply), again when the
    # set of roles changes.
    invocation = _changes(docker_plan, "aws_lambda_invocation", "migrate")["None"]
    assert invocation["after_unknown"].get("input") is True
    assert set(invocation["after"]["triggers"]["logins"].split(",")) == roles


def _console(ws: Workspace, args: list[str], env: dict[str, str], expression: str) -> Any:
    """One expression evaluated over the root (what a plan would use; one line)."""
    proc = subprocess.run(
        ["terraform", f"-chdir={ws.root}", "console", *args],
        input=expression + "\n", env=env, capture_output=True, text=True, timeout=300,
        check=True,
    )  # fmt: skip
    return json.loads(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_each_function_reads_only_its_own_role_login(
    docker_plan: dict[str, Any], tf_workspace: Workspace, aws_emulator: Any, function_zip: Path
) -> None:
    policies = _changes(docker_plan, "aws_iam_role_policy", "role_login")
    assert sorted(policies) == FUNCTIONS  # one per function, none for migrate
    assert {p["after"]["name"] for p in policies.values()} == {"read-own-database-login"}
    # The functions' environment is unknown in the plan (it names ARNs): ask for its names.
    env, args = _args(aws_emulator, function_zip, *DOCKER)
    values = _console(tf_workspace, args, env, (
        "jsonencode({secrets = {for k, v in local.function_login_environment : k => keys(v)}, "
        "readers = {for k, v in local.function_login_secrets : k => length(v)}, "
        "urls = {for k, v in local.function_database : "
        'k => nonsensitive(lookup(v, "PQFILE_DATABASE_URL", ""))}})'
    ))  # fmt: skip
    secret = ["PQFILE_DATABASE_PASSWORD_SECRET_ARN"]
    assert values["secrets"] == {
        k: sorted([*secret, "PQFILE_AUDITOR_DATABASE_PASSWORD_SECRET_ARN"]) if k == "admin"
        else secret for k in FUNCTIONS
    }  # fmt: skip
    # The admin function reads two logins (its own, the auditor's), every other one its own.
    assert values["readers"] == {k: 2 if k == "admin" else 1 for k in FUNCTIONS}
    for key in FUNCTIONS:  # its own role in the URL, no password in it
        role = FUNCTION_ROLES.get(key, ADMIN_FUNCTION)
        assert values["urls"][key] == DOCKER_DATABASE_URL.replace("pqfile:pqfile@", f"{role}@")
    assert values["urls"]["migrate"] == ""  # the owner's URL as given (function_environment)
    lambda_tf = (tf_workspace.root / "lambda.tf").read_text()
    assert "lookup(local.function_login_environment, each.key, {})," in lambda_tf


def test_role_passwords_need_per_role_urls(
    tf_workspace: Workspace, aws_emulator: Any, function_zip: Path
) -> None:
    env, args = _args(aws_emulator, function_zip, *DOCKER, "-var=database_url_per_role=false")
    proc = tf_workspace.run("plan", "-input=false", "-no-color", *args, env=env, check=False)
    assert proc.returncode == 1
    assert "needs database_url_per_role" in " ".join(proc.stderr.split()), proc.stderr[-2000:]


def test_without_role_passwords_nothing_is_added(
    tf_workspace: Workspace, aws_emulator: Any, function_zip: Path
) -> None:
    env, args = _args(aws_emulator, function_zip)
    expression = ("jsonencode([local.use_role_passwords, length(local.login_database_users), "
                  "length(local.function_login_secrets)])\n")  # fmt: skip
    proc = subprocess.run(
        ["terraform", f"-chdir={tf_workspace.root}", "console", *args],
        input=expression, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert json.loads(json.loads(proc.stdout.strip().splitlines()[-1])) == [False, 0, 0]
