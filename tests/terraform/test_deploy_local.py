"""`devstack.terraform.deploy_local` applies envs/local.tfvars onto the emulator (what
`make deploy-local` runs) and the resulting stack is the one the pipeline expects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from devstack import terraform as tf
from devstack.emulator import Emulator

from tests.fixtures.postgres import FUNCTION_ROLES
from tests.terraform.conftest import require_tool

pytestmark = pytest.mark.integration

DATABASE_URL = "postgresql://pqfile@127.0.0.1:5432/pqfile"


@pytest.fixture(scope="module")
def deployed(own_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_tool("terraform")
    state = {
        "endpoint_url": own_emulator.endpoint_url,
        "database_url": DATABASE_URL,
        "devstack_dir": str(tmp_path_factory.mktemp("devstack")),
    }
    return tf.deploy_local(state)


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
    deployed: dict[str, Any], own_emulator: Emulator
) -> None:
    lam = own_emulator.client("lambda")
    # Each function connects as its own database role (database_url_per_role locally).
    roles = FUNCTION_ROLES  # one role per function (sql/migrations/0010)
    # The migrate function connects as the URL's own user (the database owner locally).
    assert set(deployed["function_names"]) == set(roles) | {"migrate"}
    for key, name in deployed["function_names"].items():
        config = lam.get_function(FunctionName=name)["Configuration"]
        variables = config["Environment"]["Variables"]
        assert variables["AWS_ENDPOINT_URL"] == own_emulator.endpoint_url
        role = roles.get(key, "pqfile")
        expected = DATABASE_URL.replace("postgresql://pqfile@", f"postgresql://{role}@")
        assert variables["PQFILE_DATABASE_URL"] == expected, key
        assert variables["PQFILE_UPLOADS_BUCKET"] == deployed["uploads_bucket_name"]
        assert config["Architectures"] == ["arm64"]
        assert config["Runtime"] == "python3.12"


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
        if key == "retrieve":
            assert variables["PQFILE_AUDIENCE"] == deployed["audience"] == "pqfile-local"
            assert variables["PQFILE_STS_ENDPOINT_URL"] == ""  # no local STS in this state
        else:
            assert "PQFILE_AUDIENCE" not in variables, key
