"""Turning terraform/'s repeated blocks into for_each and modules (issue 8) moves state; it
destroys and recreates nothing.

The tree as it was before (commit PRE_REFACTOR, read from git history) is deployed onto a
fresh emulator, with envs/local.tfvars plus the alarms, and then, targeted, the VPC with its
endpoints and security groups, the log bucket, and the database's security group and log
groups (the parts of prod the emulator serves), in the background with the other modules'
deployments. Today's tree then plans from that state: no
resource is deleted or replaced, and every `moved` block of terraform/moved.tf took effect
(but the trail role's: the emulator serves no CloudTrail). About 3.5 minutes.

Needs git history: a full clone (CI clones main) has the commit; a shallow clone or an
exported tree does not, and the test skips there (and fails under CI, like a missing tool).
When a later change removes or replaces a resource on purpose, move PRE_REFACTOR forward to
the commit before the next refactor this test should guard, or delete the test with the
moved blocks.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from devstack import terraform as tf

from tests.terraform.background import Deployments, Launch, deployment
from tests.terraform.conftest import REPO_ROOT, require_tool

pytestmark = pytest.mark.integration

#: The last commit before the refactor ("terraform: one logging/tracing policy document ...").
PRE_REFACTOR = "6b85538ab186edd96f42feade8ee05c5ea34a88f"
DATABASE_URL = "postgresql://pqfile@127.0.0.1:5432/pqfile"

ALARMS = ["-var=create_alarms=true"]
NETWORK = [
    "-var=create_vpc=true",
    "-var=create_vpc_endpoints=true",
    '-var=availability_zones=["us-east-1a","us-east-1b"]',
    "-var=create_database=true",
    "-var=enable_access_logging=true",
]
# What the second, targeted apply of the old tree creates (with what they depend on). Left
# out because the emulator cannot serve them: the database instance, the functions' VPC
# attachment (moto lacks the AWS managed policy) and S3 access logging (moto wants an ACL).
NETWORK_TARGETS = [
    "aws_vpc_endpoint.s3",
    "aws_vpc_endpoint.interface",
    "aws_route_table_association.private",
    "aws_default_security_group.this",
    "aws_flow_log.this",
    "aws_iam_role_policy.flow_logs",
    "aws_vpc_security_group_egress_rule.lambda_to_endpoints",
    "aws_vpc_security_group_egress_rule.lambda_to_s3",
    "aws_vpc_security_group_egress_rule.lambda_to_database",
    "aws_vpc_security_group_ingress_rule.endpoints_from_lambda",
    "aws_vpc_security_group_ingress_rule.database_from_lambda",
    "aws_s3_bucket_policy.access_logs",
    "aws_s3_bucket_ownership_controls.access_logs",
    "aws_s3_bucket_versioning.access_logs",
    "aws_s3_bucket_server_side_encryption_configuration.access_logs",
    "aws_s3_bucket_lifecycle_configuration.access_logs",
    "aws_cloudwatch_log_group.database",
]
# moved.tf sources the deployment above cannot hold: the emulator serves no CloudTrail.
NOT_DEPLOYED = {"aws_iam_role.trail[0]", "aws_iam_role_policy.trail[0]"}


def _git(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    git = require_tool("git")
    return subprocess.run([git, "-C", str(REPO_ROOT), *args], capture_output=True, check=check)


def _require_pre_refactor_commit() -> None:
    """Skip (fail under CI) without the commit."""
    if _git(
        "rev-parse", "--verify", "--quiet", f"{PRE_REFACTOR}^{{commit}}", check=False
    ).returncode:
        message = f"commit {PRE_REFACTOR[:7]} is not in this checkout (shallow clone or export)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _pre_refactor_tree(dest: Path, state: Path) -> Path:
    """terraform/ and statemachines/ at PRE_REFACTOR under `dest`, with a local backend
    at `state`; the root to run in. Skips (fails under CI) without the commit."""
    _require_pre_refactor_commit()
    archive = _git("archive", "--format=tar", PRE_REFACTOR, "terraform", "statemachines")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    root = dest / "terraform"
    (root / "backend_override.tf").write_text(
        f'terraform {{\n  backend "local" {{\n    path = {json.dumps(str(state))}\n  }}\n}}\n'
    )
    return root


def _moved_sources() -> set[str]:
    text = (REPO_ROOT / "terraform" / "moved.tf").read_text()
    return set(re.findall(r"^\s*from\s*=\s*(\S+)\s*$", text, re.M))


def _is_or_within(address: str, source: str) -> bool:
    """`address` is `source` itself or, for a whole-resource move, one of its instances."""
    return address == source or (address.startswith(source + "[") and not source.endswith("]"))


@deployment("moved")
def deploy_old_and_plan_new(launch: Launch) -> dict[str, Any]:
    """`terraform show -json` of today's plan against a deployment of the old tree (in the
    background: tests/terraform/background.py), on an emulator of its own."""
    work = launch.workdir
    state = work / "terraform.tfstate"
    old_root = _pre_refactor_tree(work / "old", state)
    emulator = launch.start_emulator()
    env = tf.terraform_env(work, local=True)
    variables = tf.local_vars(
        {"endpoint_url": emulator.endpoint_url, "database_url": DATABASE_URL}, launch.function_zip
    )
    apply = ["apply", "-input=false", "-no-color", "-auto-approve", *variables]
    tf.init(old_root, env)
    tf.run(old_root, [*apply, *ALARMS], env, timeout=900)
    targets = [f"-target={address}" for address in NETWORK_TARGETS]
    tf.run(old_root, [*apply, "-refresh=false", *ALARMS, *NETWORK, *targets], env, timeout=900)

    new_root = tf.working_copy(work / "new", backend_path=state)
    tf.init(new_root, env)
    tf.run(
        new_root,
        ["plan", "-input=false", "-no-color", "-out=moved.tfplan", *variables, *ALARMS, *NETWORK],
        env,
        timeout=900,
    )
    shown = tf.run(new_root, ["show", "-json", "moved.tfplan"], env)
    return dict(json.loads(shown.stdout))


@pytest.fixture(scope="module")
def plan_from_old_state(background_deployments: Deployments) -> dict[str, Any]:
    require_tool("terraform")
    _require_pre_refactor_commit()
    return dict(background_deployments.result("moved"))


def test_nothing_is_destroyed_or_replaced(plan_from_old_state: dict[str, Any]) -> None:
    destroyed = [
        f"{change['address']} {change['change']['actions']} {change.get('action_reason', '')}"
        for change in plan_from_old_state["resource_changes"]
        if "delete" in change["change"]["actions"]
    ]
    assert not destroyed, "\n".join(destroyed)


def test_every_moved_block_took_effect(plan_from_old_state: dict[str, Any]) -> None:
    moved_from = {
        change["previous_address"]
        for change in plan_from_old_state["resource_changes"]
        if change.get("previous_address")
    }
    sources = _moved_sources()
    assert len(sources) >= 30, sources
    missing = {
        source
        for source in sources - NOT_DEPLOYED
        if not any(_is_or_within(address, source) for address in moved_from)
    }
    assert not missing, f"moved blocks with nothing to move: {sorted(missing)}"
