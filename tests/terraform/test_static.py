"""Terraform checks that need no AWS: formatting, init from the mirror, validate."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from devstack import terraform as tf

from tests.terraform.conftest import REPO_ROOT, Workspace, require_tool


def test_terraform_fmt_check() -> None:
    terraform = require_tool("terraform")
    proc = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(REPO_ROOT / "terraform")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"terraform fmt -check found unformatted files:\n{proc.stdout}"


def test_terraform_init_uses_offline_mirror_and_validates(tf_workspace: Workspace) -> None:
    proc = tf_workspace.run("validate", "-no-color")
    assert "Success" in proc.stdout, proc.stdout + proc.stderr
    mirror = tf.find_provider_mirror()
    config = Path(tf_workspace.env["TF_CLI_CONFIG_FILE"]).read_text()
    if mirror is not None:
        # Installed from the mirror, never downloaded.
        assert f'path    = "{mirror}"' in config
        providers = tf_workspace.root / ".terraform" / "providers"
        installed = next(providers.glob("registry.terraform.io/hashicorp/aws/*/*"))
        assert installed.resolve().is_relative_to(mirror.resolve()), installed
    version = tf_workspace.run("version", "-json").stdout
    assert "registry.terraform.io/hashicorp/aws" in version
    assert '"5.' in version, version


def test_every_environment_file_names_its_environment() -> None:
    envs = sorted((REPO_ROOT / "terraform" / "envs").glob("*.tfvars"))
    assert {p.name for p in envs} >= {"local.tfvars", "dev.tfvars", "prod.tfvars"}
    for path in envs:
        match = re.search(r'^environment\s*=\s*"([a-z0-9-]+)"', path.read_text(), re.M)
        assert match and match.group(1) == path.stem, path


def test_every_alarm_links_to_a_runbook_that_exists() -> None:
    operations = (REPO_ROOT / "docs" / "OPERATIONS.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", operations, re.M)
    }
    linked = set()
    for path in (REPO_ROOT / "terraform").glob("*.tf"):
        text = path.read_text()
        if "aws_cloudwatch_metric_alarm" in text:
            linked |= set(re.findall(r"docs/OPERATIONS\.md#([a-z0-9-]+)", text))
    assert len(linked) >= 6, linked
    assert linked <= anchors, f"runbooks missing from docs/OPERATIONS.md: {linked - anchors}"


def test_dev_sizes_ingest_through_the_capacity_model() -> None:
    """dev.tfvars sets the model's rate, and overrides no ingest function's concurrency (an
    override would silently detach it from the model, docs/OPERATIONS.md "Capacity")."""
    text = (REPO_ROOT / "terraform" / "envs" / "dev.tfvars").read_text(encoding="utf-8")
    settings = [line.split("#")[0].strip() for line in text.splitlines()]
    assert "capacity_documents_per_second = 10" in settings
    assert not any(line.startswith("lambda_reserved_concurrency") for line in settings)


def test_plain_http_sts_is_opted_into_only_by_the_docker_path() -> None:
    """sts_plain_http_host is set in envs/docker.tfvars alone, to the compose service that
    sts_endpoint_url names; the variable refuses it outside the local environments."""
    envs = REPO_ROOT / "terraform" / "envs"
    for path in envs.glob("*.tfvars"):
        text = path.read_text(encoding="utf-8")
        settings = [line.split("#")[0].strip() for line in text.splitlines()]
        named = any(line.startswith("sts_plain_http_host") for line in settings)
        assert named == (path.name == "docker.tfvars"), path.name
    docker = (envs / "docker.tfvars").read_text(encoding="utf-8")
    assert 'sts_endpoint_url    = "http://localstack:4566"' in docker
    assert 'sts_plain_http_host = "localstack"' in docker
    tenants = (REPO_ROOT / "terraform" / "tenants.tf").read_text(encoding="utf-8")
    assert 'contains(["local", "localstack", "docker"], var.environment)' in tenants
