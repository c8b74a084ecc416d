"""statemachines/ingest.asl.json: valid ASL (asl-validator) and the pipeline's rules."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tests.statemachines._asl import (
    ROOT,
    VALIDATOR,
    assert_validator_accepts,
    placeholders,
    requires_validator,
    run_validator,
)

ASL = ROOT / "statemachines" / "ingest.asl.json"
PLACEHOLDERS = {
    "fetch_function_arn",
    "select_key_function_arn",
    "encrypt_function_arn",
    "store_function_arn",
    "audit_function_arn",
    "record_failure_function_arn",
}


def _definition() -> dict:
    return json.loads(ASL.read_text(encoding="utf-8"))


def _tasks(sm: dict) -> dict[str, dict]:
    return {n: s for n, s in sm["States"].items() if s["Type"] == "Task"}


@requires_validator
@pytest.mark.parametrize("rendered", [False, True], ids=["template", "rendered"])
def test_asl_validator_accepts(tmp_path: Path, rendered: bool) -> None:
    assert_validator_accepts(ASL, tmp_path, rendered)


def test_asl_validator_rejects_a_broken_definition(tmp_path: Path) -> None:
    # Guards the test above: the validator must actually catch a missing target.
    assert VALIDATOR.exists()
    sm = _definition()
    sm["States"]["SelectKey"]["Next"] = "NoSuchState"
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(sm), encoding="utf-8")
    proc = run_validator(path)
    assert proc.returncode != 0


def test_placeholders_are_exactly_the_contract() -> None:
    assert placeholders(ASL) == PLACEHOLDERS


def test_steps_in_order() -> None:
    sm = _definition()
    assert sm["StartAt"] == "FetchDocument"
    order = ["FetchDocument", "SelectKey", "EncryptDocument", "StoreDocument", "WriteAudit"]
    assert sm["States"]["AlreadyStored"]["Default"] == "SelectKey"
    for a, b in itertools.pairwise(order[1:]):
        assert sm["States"][a]["Next"] == b
    assert sm["States"]["WriteAudit"]["Next"] == "Done"


def test_every_task_has_timeout_retry_and_catch() -> None:
    sm = _definition()
    for name, task in _tasks(sm).items():
        assert 0 < task["TimeoutSeconds"] <= 900, name
        retry = task["Retry"]
        assert any("TransientError" in r["ErrorEquals"] for r in retry), name
        assert all(r["BackoffRate"] > 1 and r["MaxAttempts"] >= 2 for r in retry), name
        assert "States.ALL" not in {e for r in retry for e in r["ErrorEquals"]}, name
        (catch,) = task["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"], name
        expected = "Failed" if name == "RecordFailure" else f"{name}Failed"
        assert catch["Next"] == expected, name
    assert sm["States"]["RecordFailure"]["Next"] == "Failed"
    assert sm["States"]["Failed"]["Type"] == "Fail"


def test_every_catch_names_the_failed_step() -> None:
    # RecordFailure reads $.failed_step (pqfile.usecases.ingest.failed_step): each Task's
    # Catch goes through a Pass state that sets it to that Task's name, and on to
    # RecordFailure, keeping the error at $.error.
    from pqfile.usecases.ingest_steps import IngestStep

    sm = _definition()
    steps = [name for name in _tasks(sm) if name != "RecordFailure"]
    assert sorted(steps) == sorted(step.value for step in IngestStep)
    for name in steps:
        (catch,) = sm["States"][name]["Catch"]
        assert catch["ResultPath"] == "$.error", name
        passing = sm["States"][catch["Next"]]
        assert passing["Type"] == "Pass", name
        assert passing["Result"] == name and passing["ResultPath"] == "$.failed_step", name
        assert passing["Next"] == "RecordFailure", name
    assert sm["States"]["RecordFailure"]["Parameters"]["Payload"]["state.$"] == "$"


def test_steps_pass_references_only() -> None:
    # No step's payload may carry document bytes: parameters name paths, never bodies.
    text = ASL.read_text(encoding="utf-8")
    assert "content_base64" not in text and "Body" not in text
    for task in _tasks(_definition()).values():
        assert task["Resource"] == "arn:aws:states:::lambda:invoke"
        assert "ResultSelector" in task  # drop the Lambda envelope, keep the references
