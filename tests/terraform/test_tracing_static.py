"""One trace per document, checked statically (docs/OPERATIONS.md, "Tracing"): no plan, no
deployment (the emulator has no X-Ray). Step Functions tracing is on for both workflows,
every function traces actively (so it continues the trace header Step Functions sends on
each Invoke), every Lambda task uses the Lambda integration that carries that header, every
handler opens its segment through ``entry_point`` (the database subsegments nest there),
and only the local environment turns tracing off.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


def _block(text: str, header: str) -> str:
    """The body of the first block starting with ``header`` (braces balanced)."""
    start = text.index(header)
    depth, i = 0, text.index("{", start)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i : j + 1]
    raise AssertionError(f"unbalanced block {header}")


def _tasks(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if node.get("Type") == "Task":
            found.append(node)
        for value in node.values():
            found.extend(_tasks(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_tasks(value))
    return found


def test_both_state_machines_trace_when_xray_is_enabled() -> None:
    text = (TF / "stepfunctions.tf").read_text()
    workflows = _block(text, "workflows = {")
    assert "ingest = {" in workflows and "rotate-keys = {" in workflows
    machine = _block(text, 'resource "aws_sfn_state_machine" "workflow"')
    assert "for_each = local.workflows" in machine
    tracing = _block(machine, "tracing_configuration")
    assert re.search(r"enabled\s*=\s*var\.enable_xray", tracing)
    policy = _block(text, 'data "aws_iam_policy_document" "workflow"')
    assert "xray:PutTraceSegments" in policy and "xray:GetSamplingTargets" in policy


def test_every_function_traces_actively() -> None:
    text = (TF / "lambda.tf").read_text()
    function = _block(text, 'resource "aws_lambda_function" "this"')
    tracing = _block(function, "tracing_config")
    assert re.search(r'mode\s*=\s*var\.enable_xray\s*\?\s*"Active"\s*:\s*"PassThrough"', tracing)
    iam = (TF / "iam.tf").read_text()
    attachment = _block(iam, 'resource "aws_iam_role_policy_attachment" "function_xray"')
    assert "var.enable_xray ? local.functions" in attachment


def test_xray_is_on_by_default_and_off_only_locally() -> None:
    variables = (TF / "variables.tf").read_text()
    assert re.search(r"default\s*=\s*true", _block(variables, 'variable "enable_xray"'))
    for env in sorted((TF / "envs").glob("*.tfvars")):
        setting = re.search(r"^\s*enable_xray\s*=\s*(\w+)", env.read_text(), re.M)
        if env.stem in ("local", "localstack"):
            # Neither moto nor LocalStack's community edition has X-Ray.
            assert setting and setting.group(1) == "false"
        else:
            assert setting is None or setting.group(1) == "true", env.name


@pytest.mark.parametrize("asl", ["ingest.asl.json", "rotate-keys.asl.json"])
def test_every_lambda_task_uses_the_integration_that_passes_the_trace_header(asl: str) -> None:
    definition = json.loads((ROOT / "statemachines" / asl).read_text())
    tasks = _tasks(definition)
    lambda_tasks = [t for t in tasks if ":lambda:" in t["Resource"] or "function" in t["Resource"]]
    assert lambda_tasks
    for task in lambda_tasks:
        assert task["Resource"] == LAMBDA_INVOKE, task
        assert str(task["Parameters"]["FunctionName"]).startswith("${"), task
        # A synchronous invoke: the step's segment is in the execution's trace.
        assert task["Parameters"].get("InvocationType", "RequestResponse") == "RequestResponse"


def test_every_handler_opens_its_segment_through_entry_point() -> None:
    handlers = sorted((ROOT / "functions" / "pqfile" / "handlers").glob("*.py"))
    for path in handlers:
        if path.name in ("__init__.py", "_runtime.py"):
            continue
        text = path.read_text()
        entries = re.findall(r"^def (\w*handler\w*)\(", text, re.M)
        decorated = re.findall(r"^@entry_point\s*\ndef (\w+)\(", text, re.M)
        assert entries and set(entries) <= set(decorated), path.name
