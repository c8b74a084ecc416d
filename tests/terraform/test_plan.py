"""Plans of envs/local.tfvars and envs/prod.tfvars against the emulated AWS.

The local plan runs exactly as `make deploy-local` would (local_endpoint set). The prod plan
keeps prod.tfvars' real-AWS provider settings and only redirects the SDK with
AWS_ENDPOINT_URL so its data sources (caller identity) answer offline; its placeholder
account values stay as committed.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from devstack import terraform as tf

from tests.terraform.conftest import Workspace

pytestmark = pytest.mark.integration

OUTPUTS = {
    "uploads_bucket_name",
    "encrypted_bucket_name",
    "retrieve_function_name",
    "documents_function_name",
    "ingest_state_machine_arn",
}


def _plan(ws: Workspace, env: dict[str, str], name: str, *args: str) -> dict[str, Any]:
    plan_file = f"{name}.tfplan"
    proc = ws.run(
        "plan",
        "-input=false",
        "-no-color",
        "-detailed-exitcode",
        f"-out={plan_file}",
        *args,
        env=env,
        check=False,
    )
    # -detailed-exitcode: 2 = a valid plan with changes; 0 would mean nothing to create.
    assert proc.returncode == 2, (
        f"plan {name} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr}"
    )
    assert "Error" not in proc.stderr, proc.stderr
    shown = ws.run("show", "-json", plan_file, env=env)
    return json.loads(shown.stdout)


def _all_resources(module: dict[str, Any]) -> list[dict[str, Any]]:
    """The module's resources and its child modules' (the alarms live in one)."""
    children = module.get("child_modules", [])
    return module.get("resources", []) + [r for m in children for r in _all_resources(m)]


def _resources(plan: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [r for r in _all_resources(plan["planned_values"]["root_module"]) if r["type"] == type_]


def _types(plan: dict[str, Any]) -> set[str]:
    return {r["type"] for r in _all_resources(plan["planned_values"]["root_module"])}


@pytest.fixture(scope="module")
def local_plan(tf_workspace: Workspace, aws_emulator: Any, function_zip: Path) -> dict[str, Any]:
    env = tf.terraform_env(tf_workspace.root.parent, local=True)
    state = {
        "endpoint_url": aws_emulator.endpoint_url,
        "database_url": "postgresql://pqfile@127.0.0.1:5432/pqfile",
    }
    return _plan(tf_workspace, env, "local", *tf.local_vars(state, function_zip))


@pytest.fixture(scope="module")
def prod_plan(tf_workspace: Workspace, aws_emulator: Any, function_zip: Path) -> dict[str, Any]:
    env = tf.terraform_env(
        tf_workspace.root.parent,
        local=True,
        extra={"AWS_ENDPOINT_URL": aws_emulator.endpoint_url},
    )
    return _plan(
        tf_workspace,
        env,
        "prod",
        "-refresh=false",
        "-var-file=envs/prod.tfvars",
        f"-var=lambda_package_path={function_zip}",
        # Any zip stands in for the layer: a plan only hashes it.
        f"-var=lambda_layer_path={function_zip}",
    )


def test_local_plan_creates_the_core_stack(local_plan: dict[str, Any]) -> None:
    assert "aws_db_proxy" not in _types(local_plan)  # the emulator has no RDS Proxy
    assert OUTPUTS <= set(local_plan["planned_values"]["outputs"])
    types = _types(local_plan)
    assert {
        "aws_s3_bucket",
        "aws_s3_bucket_notification",
        "aws_kms_key",
        "aws_iam_role",
        "aws_lambda_function",
        "aws_sfn_state_machine",
        "aws_cloudwatch_event_rule",
        "aws_cloudwatch_event_target",
    } <= types
    # Nothing the emulator cannot serve.
    assert not types & {
        "aws_cloudtrail",
        "aws_db_instance",
        "aws_vpc",
        "aws_vpc_endpoint",
        "aws_cloudwatch_metric_alarm",
    }
    functions = _resources(local_plan, "aws_lambda_function")
    # ingest and retrieve, documents, rotate-keys (with shred), audit_verify, audit_digest,
    # migrate, admin
    assert len(functions) == 7 + 1 + 6 + 1 + 1 + 1 + 1
    for function in functions:
        values = function["values"]
        # The environment names KMS keys and buckets: known only after apply
        # (test_functions.py checks its keys against the handlers).
        assert values["architectures"] == ["arm64"]
        assert values["vpc_config"] == []
        assert values["layers"] in (None, [])


def test_local_state_machine_is_the_templated_asl(local_plan: dict[str, Any]) -> None:
    machines = _resources(local_plan, "aws_sfn_state_machine")
    assert [m["index"] for m in machines].count("ingest") == 1
    assert all(m["values"]["type"] == "STANDARD" for m in machines)
    # Function ARNs are unknown until apply; the template itself must have rendered.
    change = next(c for c in local_plan["resource_changes"] if c["type"] == "aws_sfn_state_machine")
    assert change["change"]["after_unknown"].get("definition") is True


def test_prod_plan_is_production_grade(prod_plan: dict[str, Any]) -> None:
    types = _types(prod_plan)
    assert {
        "aws_db_instance",
        "aws_db_parameter_group",
        "aws_vpc",
        "aws_vpc_endpoint",
        "aws_cloudwatch_metric_alarm",
        "aws_sns_topic",
        "aws_flow_log",
        "aws_s3_bucket_logging",
        "aws_lambda_layer_version",
        "aws_cloudtrail",
    } <= types
    (db,) = _resources(prod_plan, "aws_db_instance")
    v = db["values"]
    assert v["deletion_protection"] and v["storage_encrypted"] and v["multi_az"]
    assert v["manage_master_user_password"] and not v["publicly_accessible"]
    (params,) = _resources(prod_plan, "aws_db_parameter_group")
    assert {"name": "rds.force_ssl", "value": "1", "apply_method": "immediate"} in params["values"][
        "parameter"
    ]
    endpoints = {
        r["values"]["service_name"].rsplit(".", 1)[-1]
        for r in _resources(prod_plan, "aws_vpc_endpoint")
    }
    assert {"s3", "kms", "states", "secretsmanager", "logs"} <= endpoints
    assert not types & {"aws_nat_gateway", "aws_internet_gateway", "aws_eip"}
    # The RDS Proxy (issue 16): IAM from the functions, TLS; reserved concurrency from the
    # capacity model (100 documents/s, headroom 2; docs/OPERATIONS.md "Capacity").
    assert {"aws_db_proxy", "aws_db_proxy_default_target_group", "aws_db_proxy_target"} <= types
    (proxy,) = _resources(prod_plan, "aws_db_proxy")
    assert proxy["values"]["require_tls"] and proxy["values"]["auth"]
    assert {a["iam_auth"] for a in proxy["values"]["auth"]} == {"REQUIRED"}
    reserved = {
        f["values"]["function_name"].removeprefix("pqfile-prod-"): f["values"][
            "reserved_concurrent_executions"
        ]
        for f in _resources(prod_plan, "aws_lambda_function")
    }
    assert {k: reserved[k] for k in ("fetch", "select-key", "encrypt", "store", "audit")} == {
        "fetch": 30, "select-key": 16, "encrypt": 70, "store": 50, "audit": 16}  # fmt: skip
    assert sum(reserved.values()) <= 900  # AWS keeps 100 of the default 1,000 unreserved
    for function in _resources(prod_plan, "aws_lambda_function"):
        values = function["values"]
        assert values["architectures"] == ["arm64"]
        assert values["tracing_config"] == [{"mode": "Active"}]
        assert values["reserved_concurrent_executions"] >= 1
        assert values["vpc_config"], function["address"]
    for group in _resources(prod_plan, "aws_cloudwatch_log_group"):
        assert group["values"]["retention_in_days"] == 400
    for machine in _resources(prod_plan, "aws_sfn_state_machine"):
        assert machine["values"]["type"] == "STANDARD"
        assert machine["values"]["tracing_configuration"] == [{"enabled": True}]
        assert machine["values"]["logging_configuration"][0]["level"] == "ALL"
    alarms = {
        r["values"]["alarm_name"] for r in _resources(prod_plan, "aws_cloudwatch_metric_alarm")
    }
    assert "pqfile-prod-ingest-executions-failed" in alarms
    assert "pqfile-prod-audit-verification-failed" in alarms
    assert "pqfile-prod-events-not-delivered" in alarms
    assert "pqfile-prod-audit-digest-failed" in alarms
    # One key-pool alarm per suite, the CNSA suite included.
    assert {f"pqfile-prod-key-pool-low-{s}" for s in ("xwing", "mlkem768", "mlkem1024")} <= alarms
    assert any(a.endswith("-throttles") for a in alarms) and any(
        a.endswith("-errors") for a in alarms
    )


# --- the suite settings (issue 11, CNSA) ----------------------------------------------------


def _local_args(aws_emulator: Any, function_zip: Path, *extra: str) -> tuple[dict, list[str]]:
    env = tf.terraform_env(Path(tempfile.gettempdir()), local=True)
    state = {"endpoint_url": aws_emulator.endpoint_url,
             "database_url": "postgresql://pqfile@127.0.0.1:5432/pqfile"}  # fmt: skip
    return env, [*tf.local_vars(state, function_zip), *extra]


def test_suite_settings_reach_every_function(
    tf_workspace: Workspace, aws_emulator: Any, function_zip: Path
) -> None:
    # The functions' environment is unknown until apply (it names KMS keys and buckets):
    # ask Terraform for the values this change sets, with the same variables.
    env, args = _local_args(
        aws_emulator,
        function_zip,
        "-var=default_suite=mlkem1024",
        '-var=suite_by_prefix={"acme/"="xwing","acme/cnsa/"="mlkem1024","beta"="mlkem768"}',
        '-var=rotation_suites=["mlkem1024","xwing"]',
    )
    names = ("PQFILE_DEFAULT_SUITE", "PQFILE_SUITE_BY_PREFIX", "PQFILE_ROTATION_SUITES")
    expression = "jsonencode({" + ",".join(
        # (the merged map is sensitive as a whole: it may carry the database URL)
        f'{n}=nonsensitive(local.function_environment["{n}"])' for n in names
    ) + "})\n"
    proc = subprocess.run(
        ["terraform", f"-chdir={tf_workspace.root}", "console", *args],
        input=expression,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    values = json.loads(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert values["PQFILE_DEFAULT_SUITE"] == "mlkem1024"
    assert json.loads(values["PQFILE_SUITE_BY_PREFIX"]) == {
        "acme/": "xwing",
        "acme/cnsa/": "mlkem1024",
        "beta": "mlkem768",
    }
    # The default, then the mapped suites, then rotation_suites: each pool once.
    assert values["PQFILE_ROTATION_SUITES"] == "mlkem1024,xwing,mlkem768"
    # ... and every function's environment starts from local.function_environment.
    lambda_tf = (tf_workspace.root / "lambda.tf").read_text()
    assert "variables = merge(\n      local.function_environment," in lambda_tf


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (['-var=suite_by_prefix={"uploads/acme/"="mlkem1024"}'], "relative to uploads/"),
        (['-var=suite_by_prefix={"acme/"="kyber1024"}'], "every suite must be"),
        (['-var=suite_by_prefix={"/acme/"="mlkem1024"}'], "relative to uploads/"),
        (["-var=default_suite=mlkem1025"], "default_suite must be"),
        (['-var=rotation_suites=["mlkem1024","rsa"]'], "rotation_suites must list"),
    ],
)
def test_suite_variables_are_validated(
    tf_workspace: Workspace,
    aws_emulator: Any,
    function_zip: Path,
    arguments: list[str],
    message: str,
) -> None:
    env, args = _local_args(aws_emulator, function_zip, *arguments)
    proc = tf_workspace.run("plan", "-input=false", "-no-color", *args, env=env, check=False)
    assert proc.returncode == 1
    assert "Invalid value for variable" in proc.stderr
    assert message in " ".join(proc.stderr.split()), proc.stderr[-2000:]


def _migrations_checksum() -> str:
    import hashlib

    folder = tf.REPO_ROOT / "sql" / "migrations"
    lines = [
        f"{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}"
        for p in sorted(folder.glob("*.sql"))
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def test_prod_apply_migrates_then_fills_the_pool_inside_the_vpc(
    prod_plan: dict[str, Any],
) -> None:
    # terraform/invocations.tf: the hands-off first deploy (docs/OPERATIONS.md).
    invocations = {r["name"]: r["values"] for r in _resources(prod_plan, "aws_lambda_invocation")}
    assert set(invocations) == {"migrate", "pool_fill"}
    checksum = _migrations_checksum()
    assert invocations["migrate"]["triggers"]["migrations"] == checksum
    # With the RDS Proxy it also sets the proxy's logins (proxy.tf), again when they change.
    assert "pqfile_fetch" in invocations["migrate"]["triggers"]["logins"].split(",")
    assert invocations["pool_fill"]["triggers"]["migrations"] == checksum
    config = {
        r["address"]: r
        for r in prod_plan["configuration"]["root_module"]["resources"]
        if r["type"] == "aws_lambda_invocation"
    }
    migrate_after = set(config["aws_lambda_invocation.migrate"]["depends_on"])
    assert {"aws_db_instance.this", "aws_vpc_endpoint.interface"} <= migrate_after
    pool_fill_after = config["aws_lambda_invocation.pool_fill"]["depends_on"]
    assert "aws_lambda_invocation.migrate" in pool_fill_after
    # The functions invoked are the VPC-attached migrate and rotate_maintain functions.
    functions = {r["index"]: r["values"] for r in _resources(prod_plan, "aws_lambda_function")}
    for key in ("migrate", "rotate_maintain"):
        assert functions[key]["vpc_config"], key
