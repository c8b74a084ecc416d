"""`pqfile keys|access|audit` routing: --stack / PQFILE_STACK go through the admin function,
--database-url stays direct; failures before any invoke are one clear line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from pqfile.cli import main
from pqfile.cli._admin_client import via_function


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PQFILE_STACK", "PQFILE_ADMIN_FUNCTION", "PQFILE_AUDIENCE",
                 "PQFILE_DATABASE_URL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def test_database_url_wins_over_a_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    assert via_function(argparse.Namespace(database_url=None, stack="tf"))
    assert not via_function(argparse.Namespace(database_url="postgresql://x/y", stack="tf"))
    assert not via_function(argparse.Namespace(database_url=None, stack=None))
    monkeypatch.setenv("PQFILE_STACK", "tf")
    assert via_function(argparse.Namespace(database_url=None, stack=None))


def test_a_missing_stack_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert main(["keys", "status", "--stack", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err == f"pqfile: error: --stack {missing}: no such folder or file\n"


def test_the_admin_target_comes_from_the_one_stack_lookup(tmp_path: Path) -> None:
    """cli/_stack.py reads the stack (here a file of `terraform output -json`): the admin
    function and the audience are its outputs, the region that of its ARNs."""
    from pqfile.cli._admin_client import _target

    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({
        "admin_function_name": {"value": "pqfile-prod-admin"},
        "audience": {"value": "pqfile-prod"},
        "rotation_state_machine_arn": {
            "value": "arn:aws:states:eu-west-1:123456789012:stateMachine:pqfile-prod-rotate-keys"},
    }))  # fmt: skip
    target = _target(argparse.Namespace(stack=str(outputs), region=None))
    assert (target.function, target.audience, target.region) == (
        "pqfile-prod-admin", "pqfile-prod", "eu-west-1")  # fmt: skip


def test_a_stack_without_an_admin_function_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"audience": {"value": "pqfile-prod"}}))
    assert main(["keys", "status", "--stack", str(outputs)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pqfile: error: the stack (") and "'admin_function_name'" in err
    assert err.count("\n") == 1


def test_the_floor_is_the_deployments_unless_given(tmp_path: Path) -> None:
    """`keys status` judges "below floor" by the stack's key_pool_policy output (then
    PQFILE_POOL_FLOOR), never by a CLI default."""
    from pqfile.cli.keys_common import policy, policy_args
    from pqfile.keys.policy import PoolPolicy

    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"key_pool_policy": {"value": {
        "target": 4, "floor": 2, "max_age_days": 30}}}))  # fmt: skip
    args = argparse.Namespace(stack=str(outputs), target=None, floor=None, max_age_days=None)
    got = policy(args)
    assert (got.target_active, got.floor_active, got.max_age.days) == (4, 2, 30)
    assert PoolPolicy().floor_active != 2
    args.floor = 3
    assert policy(args).floor_active == 3
    # Through the function only what was given is sent: it fills in the deployment's.
    assert policy_args(args) == {"target": None, "floor": 3, "max_age_days": None}


def test_without_a_stack_the_floor_is_pqfile_pool_floor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pqfile.cli.keys_common import policy

    monkeypatch.setenv("PQFILE_DEVSTACK_DIR", str(tmp_path))  # no local stack here
    monkeypatch.setenv("PQFILE_POOL_TARGET", "5")
    monkeypatch.setenv("PQFILE_POOL_FLOOR", "1")
    args = argparse.Namespace(stack=None, target=None, floor=None, max_age_days=None)
    assert (policy(args).target_active, policy(args).floor_active) == (5, 1)
