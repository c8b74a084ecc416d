"""The plaintext delivery switch (docs/OPERATIONS.md, "Retrieval"): a typed Terraform
variable, off by default and in prod, on locally and in dev, reaching the retrieve function
alone as PQFILE_PLAINTEXT_DELIVERY, which pqfile.config reads. Static: no apply."""

from __future__ import annotations

import re

import pytest

from pqfile.config import ENVIRONMENT, ConfigurationError, RetrieveSettings
from tests.terraform.conftest import REPO_ROOT

TERRAFORM = REPO_ROOT / "terraform"


def _variable_block(name: str) -> str:
    text = (TERRAFORM / "variables.tf").read_text()
    match = re.search(rf'^variable "{name}" \{{\n(.*?)^\}}', text, re.M | re.S)
    assert match, f"variable {name} is not declared"
    return match.group(1)


def _tfvar(env: str, name: str) -> str | None:
    text = (TERRAFORM / "envs" / f"{env}.tfvars").read_text()
    found = re.findall(rf"^{name}\s*=\s*(\S+)\s*$", text, re.M)
    assert len(found) <= 1, f"{env}.tfvars sets {name} more than once"
    return found[0] if found else None


def test_the_switch_is_a_bool_off_by_default() -> None:
    block = _variable_block("retrieve_plaintext_delivery")
    assert re.search(r"^\s*type\s*=\s*bool\s*$", block, re.M), block
    assert re.search(r"^\s*default\s*=\s*false\s*$", block, re.M), block
    assert 'description = "' in block


def test_prod_is_off_local_and_dev_are_on() -> None:
    assert _tfvar("prod", "retrieve_plaintext_delivery") == "false"
    assert _tfvar("local", "retrieve_plaintext_delivery") == "true"
    assert _tfvar("dev", "retrieve_plaintext_delivery") == "true"


def test_only_the_retrieve_function_gets_the_switch_and_the_sealed_url_lifetime() -> None:
    text = (TERRAFORM / "lambda.tf").read_text()
    match = re.search(r'each\.key == "retrieve" \? \{\n(.*?)\n\s*\} : \{\},', text, re.S)
    assert match, "no retrieve-only environment block in lambda.tf"
    block = match.group(1)
    assert re.search(
        r"PQFILE_PLAINTEXT_DELIVERY\s*=\s*tostring\(var\.retrieve_plaintext_delivery\)", block
    ), block
    assert re.search(
        r"PQFILE_SEALED_PRESIGN_SECONDS\s*=\s*tostring\(var\.sealed_presign_seconds\)", block
    ), block
    # set nowhere else: no other function reads it
    assert text.count("PQFILE_PLAINTEXT_DELIVERY") == 1
    validation = _variable_block("sealed_presign_seconds")
    assert "var.sealed_presign_seconds >= 1 && var.sealed_presign_seconds <= 3600" in validation


def test_what_terraform_writes_is_what_config_reads() -> None:
    # tostring(true) / tostring(false) are "true" / "false"
    on = RetrieveSettings.from_env({"PQFILE_PLAINTEXT_DELIVERY": "true"})
    off = RetrieveSettings.from_env({"PQFILE_PLAINTEXT_DELIVERY": "false"})
    assert (on.plaintext_delivery, off.plaintext_delivery) == (True, False)
    assert RetrieveSettings.from_env({}).plaintext_delivery is False
    with pytest.raises(ConfigurationError, match="PQFILE_PLAINTEXT_DELIVERY must be true or false"):
        RetrieveSettings.from_env({"PQFILE_PLAINTEXT_DELIVERY": "maybe"})
    names = {v.name: v.setting for v in ENVIRONMENT}
    assert names["PQFILE_PLAINTEXT_DELIVERY"] == "retrieve.plaintext_delivery"
    assert names["PQFILE_SEALED_PRESIGN_SECONDS"] == "retrieve.sealed_presign_seconds"
