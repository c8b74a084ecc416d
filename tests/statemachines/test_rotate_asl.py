"""statemachines/rotate-keys.asl.json: valid ASL (asl-validator) and the workflow's rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.statemachines._asl import (
    ROOT,
    assert_validator_accepts,
    placeholders,
    requires_validator,
)

ASL = ROOT / "statemachines" / "rotate-keys.asl.json"
PLACEHOLDERS = {
    "maintain_function_arn",
    "plan_function_arn",
    "rewrap_function_arn",
    "finish_function_arn",
    "failure_function_arn",
    "shred_function_arn",
}
HANDLERS = {
    "maintain": "maintain_handler",
    "plan": "plan_handler",
    "rewrap": "rewrap_handler",
    "finish": "finish_handler",
    "failure": "failure_handler",
}


def _definition() -> dict[str, Any]:
    return dict(json.loads(ASL.read_text(encoding="utf-8")))


def _scopes(sm: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The top-level States and every Map's ItemProcessor States, nested ones included."""
    yield sm["States"]
    for state in sm["States"].values():
        if state["Type"] == "Map":
            yield from _scopes(state["ItemProcessor"])


def _inner() -> dict[str, dict[str, Any]]:
    """One rotation run's states (the RotateKeys Map's iteration)."""
    return dict(_definition()["States"]["RotateKeys"]["ItemProcessor"]["States"])


def _all_states() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for scope in _scopes(_definition()):
        found.update(scope)
    return found


def _tasks() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _all_states().items() if s["Type"] == "Task"}


@requires_validator
@pytest.mark.parametrize("rendered", [False, True], ids=["template", "rendered"])
def test_asl_validator_accepts(tmp_path: Path, rendered: bool) -> None:
    assert_validator_accepts(ASL, tmp_path, rendered)


def test_placeholders_are_exactly_the_contract() -> None:
    assert placeholders(ASL) == PLACEHOLDERS


def test_placeholders_name_real_entry_points() -> None:
    from pqfile.handlers import rotate

    for name in HANDLERS.values():
        assert callable(getattr(rotate, name)), name


def test_workflow_shape() -> None:
    sm = _definition()
    assert sm["StartAt"] == "MaintainPool"
    assert 0 < sm["TimeoutSeconds"] < 86400  # ends before the next daily run
    assert sm["States"]["MaintainPool"]["Next"] == "RotateKeys"
    outer = sm["States"]["RotateKeys"]
    assert outer["Type"] == "Map" and outer["ItemsPath"] == "$.maintain.rotations"
    inner = outer["ItemProcessor"]["States"]
    assert outer["ItemProcessor"]["StartAt"] == "PlanRewrap"
    assert outer["ItemSelector"]["after"] is None  # each run's cursor starts at the beginning
    assert 1 <= outer["MaxConcurrency"] <= 10
    assert inner["PlanRewrap"]["Next"] == "RewrapDocuments"
    assert inner["PlanRewrap"]["Parameters"]["Payload"]["after.$"] == "$.after"
    assert inner["RewrapDocuments"]["Next"] == "MorePlanned"
    (loop,) = inner["MorePlanned"]["Choices"]
    assert loop == {"Variable": "$.plan.more", "BooleanEquals": True, "Next": "NextBatch"}
    assert inner["MorePlanned"]["Default"] == "FinishRotation"
    # the next batch starts after the last document the previous one looked at
    assert inner["NextBatch"] == {
        "Type": "Pass",
        "Comment": inner["NextBatch"]["Comment"],
        "Parameters": {"rotation_id.$": "$.rotation_id", "after.$": "$.plan.after"},
        "Next": "PlanRewrap",
    }


def test_rewrap_is_one_distributed_map_over_an_s3_manifest() -> None:
    """Issue 12 item 5: what moto 5.2.5 runs and AWS runs alike (no ItemBatcher, no EXPRESS
    children; a JSON manifest the plan step wrote; concurrency from the plan)."""
    docs = _inner()["RewrapDocuments"]
    assert docs["Type"] == "Map" and "ItemsPath" not in docs
    assert docs["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    assert docs["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket.$": "$.plan.manifest_bucket", "Key.$": "$.plan.manifest_key"},
    }
    assert "ItemBatcher" not in docs and "ResultWriter" not in docs
    assert docs["MaxConcurrencyPath"] == "$.plan.concurrency" and "MaxConcurrency" not in docs
    assert 0 < docs["ToleratedFailurePercentage"] <= 10
    assert docs["ResultPath"] is None
    # the child gets one manifest item, exactly what RewrapRequest parses
    assert docs["ItemSelector"] == {
        f"{f}.$": f"$$.Map.Item.Value.{f}" for f in ("rotation_id", "document_id", "target_key_id")
    }
    (child,) = docs["ItemProcessor"]["States"].values()
    assert child["Parameters"]["Payload"] == {
        f"{f}.$": f"$.{f}" for f in ("rotation_id", "document_id", "target_key_id")
    }
    # a small child output: the Map collects one per document (PQFILE_REWRAP_BATCH of them)
    assert child["ResultSelector"] == {"outcome.$": "$.Payload.outcome"}


def test_plan_result_fields_are_what_the_workflow_selects() -> None:
    from pqfile.usecases.rotation_steps import Manifest, PlanResult, RunSummary

    plan = _inner()["PlanRewrap"]
    shaped = PlanResult(RunSummary(1, "old", "new", "running"), Manifest("b", "k"), 3,
                        more=True, after="d3", skipped=0, concurrency=4).to_dict()  # fmt: skip
    for name, path in plan["ResultSelector"].items():
        assert path.startswith("$.Payload."), name
        assert path.removeprefix("$.Payload.") in shaped, name


def test_shred_runs_after_the_rotations() -> None:
    """ShredKeys: one state between the rewrap Map and Done (pqfile.handlers.shred)."""
    from pqfile.handlers import shred

    top = _definition()["States"]
    assert top["RotateKeys"]["Next"] == "ShredKeys"
    step = top["ShredKeys"]
    assert step["Parameters"]["FunctionName"] == "${shred_function_arn}"
    assert step["Next"] == "Done"
    assert callable(shred.handler)


def test_every_task_has_timeout_and_transient_retry() -> None:
    for name, task in _tasks().items():
        assert task["Resource"] == "arn:aws:states:::lambda:invoke", name
        assert 0 < task["TimeoutSeconds"] <= 900, name
        retry = task["Retry"]
        assert any("TransientError" in r["ErrorEquals"] for r in retry), name
        assert all(r["BackoffRate"] > 1 and r["MaxAttempts"] >= 2 for r in retry), name
        assert "States.ALL" not in {e for r in retry for e in r["ErrorEquals"]}, name
        assert "ResultSelector" in task, name  # drop the Lambda envelope


def test_failures_are_recorded_then_fail() -> None:
    sm = _definition()
    top = sm["States"]
    rotation = top["RotateKeys"]["ItemProcessor"]["States"]
    for scope, record, fail in ((top, "RecordFailure", "Failed"),
                                (rotation, "RecordRotationFailure", "RotationFailed")):  # fmt: skip
        assert scope[fail]["Type"] == "Fail"
        assert scope[record]["Next"] == fail
        assert scope[record]["Parameters"]["FunctionName"] == "${failure_function_arn}"
        for name, state in scope.items():
            if state["Type"] not in ("Task", "Map") or name == record:
                continue
            (catch,) = state["Catch"]
            assert catch["ErrorEquals"] == ["States.ALL"], name
            # a run's failure is recorded inside its iteration, so the outer Map only fails
            assert catch["Next"] == ("Failed" if name == "RotateKeys" else record), name


def test_steps_pass_references_only() -> None:
    text = ASL.read_text(encoding="utf-8")
    assert "content_base64" not in text and "Body" not in text
