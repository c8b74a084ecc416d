"""Canary: the moto internals devstack.emulator patches are still what it expects.

If this fails after a moto upgrade, the message names the internal that changed; fix
devstack/emulator.py (or pin moto back) before trusting any other emulator test.
"""

from __future__ import annotations

import inspect

import moto
import pytest
from devstack.emulator import MOTO_VERSION, check_moto_internals


def test_moto_internals_the_emulator_patches_are_unchanged() -> None:
    problems = check_moto_internals()
    assert not problems, "devstack.emulator patches moto internals that changed:\n  " + "\n  ".join(
        problems
    )


def test_moto_is_the_pinned_version() -> None:
    assert moto.__version__ == MOTO_VERSION, (
        f"moto {moto.__version__} is installed; devstack.emulator was checked against "
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
    assert not added, f"moto now implements {added}: remove devstack.emulator's versions"


def test_moto_eventbridge_still_refuses_step_functions_and_lambda_targets() -> None:
    from moto.events.models import Rule

    source = inspect.getsource(Rule.send_to_targets)
    assert 'arn.service == "states"' not in source and 'arn.service == "lambda"' not in source, (
        "moto.events.models.Rule.send_to_targets now handles states/lambda targets: "
        "revisit devstack.emulator._patch_events"
    )


@pytest.mark.parametrize("internal", ["_invoke_lambda", "invoke", "save_logs"])
def test_lambda_function_methods_exist(internal: str) -> None:
    from moto.awslambda.models import LambdaFunction

    assert callable(getattr(LambdaFunction, internal, None)), (
        f"moto.awslambda.models.LambdaFunction.{internal} is gone"
    )


def test_moto_still_denies_under_any_deny_statement_with_a_condition() -> None:
    # Why devstack.emulator._patch_s3_bucket_policies exists; when this fails, moto evaluates
    # conditions properly and the patch may go.
    import json

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
    from moto.awslambda.models import LambdaFunction
    from moto.events.models import Rule

    def renamed(self, event=None, context=None):  # type: ignore[no-untyped-def]
        raise AssertionError("never called")

    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", renamed)
    monkeypatch.delattr(Rule, "send_to_targets")
    problems = "\n".join(check_moto_internals())
    assert "LambdaFunction._invoke_lambda(self, event) changed signature" in problems
    assert "Rule.send_to_targets" in problems
