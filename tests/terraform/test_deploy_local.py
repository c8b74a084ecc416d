"""`devstack.terraform.deploy_local` applies envs/local.tfvars onto the emulator (what
`make deploy-local` runs) and the resulting stack is the one the pipeline expects.

One apply from nothing (an emulator and a PostgreSQL server of this module's own, an empty
database; started in the background with the other modules' deployments) serves every
test here, including the hands-off first deploy of
terraform/invocations.tf: the apply alone migrates the database and fills the key pool.
That check costs this module one more apply (the unchanged-migrations one) and a targeted
failing one, about 40 s on top of the first apply's ~2 minutes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from devstack import terraform as tf
from devstack.emulator import Emulator
from devstack.postgres import replace_url

from tests.fixtures.postgres import ADMIN_FUNCTION, AUDIT_WRITER, FUNCTION_ROLES, OPERATOR
from tests.terraform.background import Deployments, Launch, deployment
from tests.terraform.conftest import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

DATABASE_NAME = "pqfile"


@dataclass(frozen=True)
class FirstDeploy:
    emulator: Emulator
    database_url: str
    local_state: dict[str, Any]
    outputs: dict[str, Any]


@deployment("deploy_local")
def first_deploy(launch: Launch) -> FirstDeploy:
    """The apply from nothing, in the background (tests/terraform/background.py)."""
    # A server of its own: "all roles exist" must not be satisfied by other tests' databases.
    postgres = launch.start_postgres()
    emulator = launch.start_emulator()
    from pqfile.adapters.postgres.connection import connect_url

    conn = connect_url(postgres.url)
    try:
        conn.run(f'CREATE DATABASE "{DATABASE_NAME}"')
    finally:
        conn.close()
    database_url = replace_url(postgres.url, database=DATABASE_NAME)
    local_state = {
        "endpoint_url": emulator.endpoint_url,
        "database_url": database_url,
        "devstack_dir": str(launch.workdir / "devstack"),
    }
    return FirstDeploy(emulator, database_url, local_state, tf.deploy_local(local_state))


@pytest.fixture(scope="module")
def first(background_deployments: Deployments) -> FirstDeploy:
    require_tool("terraform")
    result = background_deployments.result("deploy_local")
    assert isinstance(result, FirstDeploy)
    return result


@pytest.fixture(scope="module")
def own_emulator(first: FirstDeploy) -> Emulator:
    return first.emulator


@pytest.fixture(scope="module")
def database_url(first: FirstDeploy) -> str:
    return first.database_url


@pytest.fixture(scope="module")
def local_state(first: FirstDeploy) -> dict[str, Any]:
    return first.local_state


@pytest.fixture(scope="module")
def deployed(first: FirstDeploy) -> dict[str, Any]:
    return first.outputs


def _query(url: str, sql: str) -> list[list[Any]]:
    from pqfile.adapters.postgres.connection import connect_url

    conn = connect_url(url)
    try:
        return [list(row) for row in conn.run(sql)]
    finally:
        conn.close()


def test_outputs_name_the_core_resources(deployed: dict[str, Any]) -> None:
    for name in (
        "uploads_bucket_name",
        "encrypted_bucket_name",
        "retrieve_function_name",
        "ingest_state_machine_arn",
        "rotation_state_machine_arn",
    ):
        assert deployed.get(name), name


def test_buckets_are_private_encrypted_and_notify_eventbridge(
    deployed: dict[str, Any], own_emulator: Emulator
) -> None:
    s3 = own_emulator.client("s3")
    for bucket in (deployed["uploads_bucket_name"], deployed["encrypted_bucket_name"]):
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values()), block
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ][0]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        assert any(st["Sid"] == "DenyInsecureTransport" for st in policy["Statement"])
    notification = s3.get_bucket_notification_configuration(Bucket=deployed["uploads_bucket_name"])
    assert "EventBridgeConfiguration" in notification


def test_functions_point_at_the_emulator_and_the_database(
    deployed: dict[str, Any], own_emulator: Emulator, database_url: str
) -> None:
    lam = own_emulator.client("lambda")
    # Each function connects as its own database role (database_url_per_role locally).
    # One role per function (sql/migrations/0010); admin's changes run as its own (0018).
    roles = {**FUNCTION_ROLES, "admin": ADMIN_FUNCTION}
    # The migrate function connects as the URL's own user (the database owner locally).
    assert set(deployed["function_names"]) == set(roles) | {"migrate"}
    for key, name in deployed["function_names"].items():
        config = lam.get_function(FunctionName=name)["Configuration"]
        variables = config["Environment"]["Variables"]
        assert variables["AWS_ENDPOINT_URL"] == own_emulator.endpoint_url
        expected = database_url if key == "migrate" else replace_url(database_url, user=roles[key])
        assert variables["PQFILE_DATABASE_URL"] == expected, key
        assert variables["PQFILE_UPLOADS_BUCKET"] == deployed["uploads_bucket_name"]
        assert config["Architectures"] == ["arm64"]
        assert config["Runtime"] == "python3.12"


def test_the_digest_function_writes_a_signed_locked_digest(
    deployed: dict[str, Any], own_emulator: Emulator, database_url: str
) -> None:
    """terraform/audit_digests.tf on the local stack: the key is ECC_NIST_P384 (the pinned
    provider refuses ML_DSA_65; tests/integration/test_audit_digest.py covers ML-DSA), the
    bucket locks in GOVERNANCE mode, and the deployed function signs a digest there."""
    from pqfile.adapters.postgres.audit import PostgresAuditLog
    from pqfile.adapters.postgres.connection import Database
    from pqfile.keys.audit_digest import SignedDigest

    writer = Database.from_url(replace_url(database_url, user=AUDIT_WRITER))
    try:  # at least one row to sign, whatever the first apply audited
        PostgresAuditLog(writer).append(operation="document.encrypt", outcome="success",
                                        document_id="doc-digest")  # fmt: skip
    finally:
        writer.close()
    bucket, key_arn = deployed["audit_digest_bucket_name"], deployed["audit_digest_key_arn"]
    kms, s3 = own_emulator.client("kms"), own_emulator.client("s3")
    assert kms.describe_key(KeyId=key_arn)["KeyMetadata"]["KeySpec"] == "ECC_NIST_P384"
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["Rule"]["DefaultRetention"]["Mode"] == "GOVERNANCE"

    reply = own_emulator.client("lambda").invoke(
        FunctionName=deployed["audit_digest_function_name"], Payload=b"{}"
    )
    answer = json.loads(reply["Payload"].read())
    assert "FunctionError" not in reply, answer
    assert answer["ok"] is True and answer["written"] is True, answer
    body = s3.get_object(Bucket=bucket, Key=answer["key"])["Body"].read()
    head = SignedDigest.from_json(body).verify(kms.get_public_key(KeyId=key_arn)["PublicKey"])
    assert head.tree_size == answer["tree_size"] and head.key_id == key_arn
    assert s3.head_object(Bucket=bucket, Key=answer["key"])["ObjectLockMode"] == "GOVERNANCE"


def test_uploads_start_the_templated_ingest_workflow(
    deployed: dict[str, Any], own_emulator: Emulator
) -> None:
    sfn = own_emulator.client("stepfunctions")
    machine = sfn.describe_state_machine(stateMachineArn=deployed["ingest_state_machine_arn"])
    assert machine["type"] == "STANDARD"
    definition = machine["definition"]
    assert "${" not in definition
    for key in ("fetch", "select_key", "encrypt", "store", "audit", "record_failure"):
        assert f":function:{deployed['function_names'][key]}" in definition, key
    events = own_emulator.client("events")
    rules = events.list_rule_names_by_target(TargetArn=deployed["ingest_state_machine_arn"])
    (rule,) = rules["RuleNames"]
    pattern = json.loads(events.describe_rule(Name=rule)["EventPattern"])
    assert pattern["detail"]["bucket"]["name"] == [deployed["uploads_bucket_name"]]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "uploads/"}]


def test_the_retrieve_function_verifies_callers(
    deployed: dict[str, Any], own_emulator: Emulator
) -> None:
    lam = own_emulator.client("lambda")
    for key, name in deployed["function_names"].items():
        variables = lam.get_function(FunctionName=name)["Configuration"]["Environment"][
            "Variables"
        ]
        if key in ("retrieve", "documents", "admin"):  # the functions that verify identity proofs
            assert variables["PQFILE_AUDIENCE"] == deployed["audience"] == "pqfile-local"
            assert variables["PQFILE_STS_ENDPOINT_URL"] == ""  # no local STS in this state
        else:
            assert "PQFILE_AUDIENCE" not in variables, key


# -- the hands-off first deploy (terraform/invocations.tf) -------------------------------------


def _latest_migration_version() -> int:
    names = sorted((tf.REPO_ROOT / "sql" / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return int(names[-1].name[:4])


def test_the_first_apply_migrates_the_database_to_the_latest_version(
    deployed: dict[str, Any], database_url: str
) -> None:
    (row,) = _query(database_url, "SELECT max(version), count(*) FROM schema_migrations")
    assert row[0] == _latest_migration_version()
    assert row[1] == len(list((tf.REPO_ROOT / "sql" / "migrations").glob("*.sql")))


def test_the_first_apply_creates_every_database_role(
    deployed: dict[str, Any], database_url: str
) -> None:
    expected = set(FUNCTION_ROLES.values()) | {OPERATOR, ADMIN_FUNCTION}
    rows = _query(database_url, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'pqfile_%'")
    assert expected <= {name for (name,) in rows}
    # The grants came with them (sql/migrations/0010; docs/KEYS.md, "Roles and grants").
    (granted,) = _query(
        database_url,
        "SELECT has_table_privilege('pqfile_maintain', 'key_rotations', 'SELECT'),"
        " has_table_privilege('pqfile_fetch', 'key_rotations', 'SELECT')",
    )
    assert granted == [True, False]


def test_the_first_apply_fills_the_key_pool(deployed: dict[str, Any], database_url: str) -> None:
    tfvars = (tf.TERRAFORM_ROOT / tf.LOCAL_TFVARS).read_text()
    found = re.search(r"^key_pool_target\s*=\s*(\d+)", tfvars, re.M)
    assert found is not None
    target = int(found.group(1))
    rows = _query(
        database_url,
        "SELECT suite, count(*) FROM encryption_keys WHERE status = 'active' GROUP BY suite",
    )
    active = {suite: n for suite, n in rows}
    default_suite = re.search(r'^default_suite\s*=\s*"(\w+)"', tfvars, re.M)
    suite = default_suite.group(1) if default_suite else "xwing"
    # Every maintained suite (the default one at least) is filled to the target.
    assert active.get(suite, 0) >= target, active
    assert all(n >= target for n in active.values()), active


def test_a_second_apply_with_unchanged_migrations_invokes_nothing(
    deployed: dict[str, Any], local_state: dict[str, Any]
) -> None:
    workdir = Path(local_state["devstack_dir"]) / "terraform"
    root = workdir / "terraform"
    env = tf.terraform_env(workdir, local=True)
    package = workdir / "lambda" / "pqfile-function.zip"
    apply = ["apply", "-input=false", "-no-color", "-auto-approve"]
    proc = tf.run(root, [*apply, *tf.local_vars(local_state, package)], env, timeout=600)
    invoked = re.findall(
        r"^aws_lambda_invocation\.\w+: (?:Creating|Destroying|Modifying)", proc.stdout, re.M
    )
    assert invoked == [], proc.stdout[-3000:]
    assert "aws_lambda_invocation.migrate: Refreshing state" in proc.stdout  # it was looked at
    # Still in the state: the apply kept them (nothing replaced, nothing invoked).
    listed = tf.run(root, ["state", "list"], env).stdout.split()
    assert {"aws_lambda_invocation.migrate", "aws_lambda_invocation.pool_fill"} <= set(listed)


def test_a_failing_migration_fails_the_apply_with_the_function_error(
    deployed: dict[str, Any], local_state: dict[str, Any], database_url: str
) -> None:
    # Last in the module: it leaves the migrate function pointing at a missing database.
    workdir = Path(local_state["devstack_dir"]) / "terraform"
    root = workdir / "terraform"
    env = tf.terraform_env(workdir, local=True)
    package = workdir / "lambda" / "pqfile-function.zip"
    broken = dict(local_state, database_url=replace_url(database_url, database="no_such_db"))
    args = [
        "apply",
        "-input=false",
        "-no-color",
        "-auto-approve",
        "-target=aws_lambda_invocation.migrate",
        "-replace=aws_lambda_invocation.migrate",
        *tf.local_vars(broken, package),
    ]
    proc = tf.run(root, args, env, timeout=300, check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "aws_lambda_invocation.migrate" in output
    assert "no_such_db" in output, output[-3000:]  # the function's own error message
