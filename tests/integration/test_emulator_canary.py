"""Canary: the moto internals devstack.moto_patches patches are still what each patch expects.

If this fails after a moto upgrade, the message names the patch and the internal that
changed; fix that module under devstack/moto_patches/ (or pin moto back) before trusting any
other emulator test. Nothing here patches moto: the checks only read it.
"""

from __future__ import annotations

import inspect
import json

import moto
import pytest
from devstack import moto_patches
from devstack.emulator import check_moto_internals
from devstack.moto_patches import MOTO_VERSION, MotoInternalChanged, MotoPatch, name_of


def test_moto_internals_the_emulator_patches_are_unchanged() -> None:
    problems = check_moto_internals()
    assert not problems, "devstack.moto_patches patch moto internals that changed:\n  " + (
        "\n  ".join(problems)
    )


@pytest.mark.parametrize("patch", moto_patches.ALL, ids=name_of)
def test_the_moto_internal_each_patch_replaces_is_unchanged(patch: MotoPatch) -> None:
    patch.check()  # raises MotoInternalChanged naming the internal


@pytest.mark.parametrize("patch", moto_patches.ALL, ids=name_of)
def test_each_patch_says_what_it_does_and_whether_it_belongs_upstream(patch: MotoPatch) -> None:
    doc = inspect.getdoc(patch) or ""
    assert len(doc.splitlines()) >= 3, f"{patch.__name__} needs a docstring saying what and why"
    assert "Upstream-worthy: " in doc, f"{patch.__name__}'s docstring says nothing of upstream"


def test_the_registry_holds_every_patch_module_once() -> None:
    import pkgutil

    modules = {
        f"devstack.moto_patches.{info.name}"
        for info in pkgutil.iter_modules(moto_patches.__path__)
        if not info.name.startswith("_")
    }
    registered = [patch.__name__ for patch in moto_patches.ALL]
    assert sorted(registered) == sorted(modules)
    assert len(set(registered)) == len(registered)


def test_moto_is_the_pinned_version() -> None:
    assert moto.__version__ == MOTO_VERSION, (
        f"moto {moto.__version__} is installed; devstack.moto_patches was checked against "
        f"{MOTO_VERSION}. Run the emulator tests, then update MOTO_VERSION."
    )


def test_moto_still_lacks_the_step_functions_calls_terraform_needs() -> None:
    # When moto grows these, the emulator keeps moto's own (and this reminds us to drop ours).
    from moto.stepfunctions.responses import StepFunctionResponse

    added = [
        name
        for name in ("validate_state_machine_definition", "list_state_machine_versions")
        if hasattr(StepFunctionResponse, name)
    ]
    assert not added, f"moto now implements {added}: remove devstack.moto_patches.stepfunctions_api"


def test_moto_eventbridge_still_refuses_step_functions_and_lambda_targets() -> None:
    from moto.events.models import Rule

    source = inspect.getsource(Rule.send_to_targets)
    assert 'arn.service == "states"' not in source and 'arn.service == "lambda"' not in source, (
        "moto.events.models.Rule.send_to_targets now handles states/lambda targets: "
        "revisit devstack.moto_patches.events_targets"
    )


def test_moto_still_sends_every_event_to_a_schedule_only_rule() -> None:
    # Why events_targets skips schedule-only rules: moto loads the missing pattern as {}, which
    # matches everything. When this fails, moto knows better and the skip may go.
    from devstack.moto_patches.events_targets import is_schedule_only
    from moto.events.models import Rule

    def rule(pattern: str | None, schedule: str | None) -> Rule:
        account, region = "123456789012", "us-east-1"
        return Rule("r", account, region, None, pattern, schedule, None, "default", None)

    scheduled = rule(None, "rate(1 hour)")
    upload = {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {}}}
    assert scheduled.event_pattern.matches_event(upload), "moto no longer matches it"
    assert is_schedule_only(scheduled)
    assert not is_schedule_only(rule(json.dumps({"source": ["aws.s3"]}), None))
    assert not is_schedule_only(rule(json.dumps({"source": ["aws.s3"]}), "rate(1 hour)"))


def test_moto_still_denies_under_any_deny_statement_with_a_condition() -> None:
    # Why devstack.moto_patches.s3_bucket_policies exists; when this fails, moto evaluates
    # conditions properly and the patch may go.
    from moto.iam.access_control import IAMPolicy, PermissionResult

    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": "arn:aws:s3:::b/*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    result = IAMPolicy(json.dumps(policy)).is_action_permitted("s3:PutObject", "arn:aws:s3:::b/k")
    assert result == PermissionResult.DENIED, "moto now evaluates bucket policy conditions"


def test_the_canary_names_the_internal_that_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    from devstack.moto_patches import events_targets, lambda_handlers
    from moto.awslambda.models import LambdaFunction
    from moto.events.models import Rule

    def renamed(self, event=None, context=None):  # type: ignore[no-untyped-def]
        raise AssertionError("never called")

    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", renamed)
    monkeypatch.delattr(Rule, "send_to_targets")
    problems = "\n".join(check_moto_internals())
    assert "LambdaFunction._invoke_lambda(self, event) changed signature" in problems
    assert "lambda_handlers: moto" in problems
    assert "Rule.send_to_targets" in problems
    with pytest.raises(MotoInternalChanged, match=r"_invoke_lambda\(self, event\)") as raised:
        lambda_handlers.check()
    assert raised.value.patch == "devstack.moto_patches.lambda_handlers"
    with pytest.raises(MotoInternalChanged, match="send_to_targets"):
        events_targets.check()


def test_apply_all_applies_nothing_when_one_check_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[str] = []
    for patch in moto_patches.ALL:
        monkeypatch.setattr(patch, "apply", lambda runtime, p=patch: applied.append(p.__name__))

    def changed() -> None:
        raise MotoInternalChanged("devstack.moto_patches.s3_lifecycle_sizes", ["it changed"])

    monkeypatch.setattr(moto_patches.s3_lifecycle_sizes, "check", changed)
    with pytest.raises(RuntimeError, match="s3_lifecycle_sizes: it changed"):
        moto_patches.apply_all(None)  # type: ignore[arg-type]
    assert applied == []


def test_moto_still_passes_a_stopped_iterations_error_as_a_string() -> None:
    # When moto passes an ExecutionFailedEventDetails here too, a stop during a Map ends
    # ABORTED without help: remove devstack.moto_patches.stepfunctions_map_stop.
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        iteration_worker,
    )

    source = inspect.getsource(iteration_worker)
    stopped = source[source.index("isinstance(end_program_state, ProgramStopped)") :]
    assert "executionFailedEventDetails=end_program_state.error" in stopped[:800], (
        "moto's iteration worker changed how a stopped iteration reports: revisit "
        "devstack.moto_patches.stepfunctions_map_stop"
    )
