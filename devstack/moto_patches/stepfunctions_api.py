"""Step Functions: the two calls Terraform's aws provider needs and moto lacks.

`ValidateStateMachineDefinition` (the provider validates every definition before creating a
state machine) and `ListStateMachineVersions` (read after every create); without them the
provider retries forever. Validation uses the ASL parser moto's own interpreter runs
(`StepFunctionsParserBackend._validate_definition`): OK, or FAIL with the parser's message
as a `SCHEMA_VALIDATION_FAILED` diagnostic. Only added where moto lacks them: a moto that
grows its own keeps it (and the canary test says so).

Upstream-worthy: yes. Two missing API calls.
"""

from __future__ import annotations

from typing import Any

from devstack.moto_patches._internals import Runtime, checking


def check() -> None:
    with checking(__name__) as expect:
        from moto.core.responses import ActionResult  # noqa: F401 - what the calls return
        from moto.stepfunctions.parser.models import StepFunctionsParserBackend
        from moto.stepfunctions.responses import StepFunctionResponse

        expect(
            callable(getattr(StepFunctionsParserBackend, "_validate_definition", None)),
            "moto.stepfunctions.parser.models.StepFunctionsParserBackend._validate_definition "
            "is gone",
        )
        expect(
            callable(getattr(StepFunctionResponse, "_get_param", None))
            and isinstance(getattr(StepFunctionResponse, "stepfunction_backend", None), property),
            "moto.stepfunctions.responses.StepFunctionResponse._get_param / "
            "stepfunction_backend changed",
        )


def apply(runtime: Runtime) -> None:
    from moto.core.responses import ActionResult
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import StepFunctionResponse

    def validate_state_machine_definition(self: Any) -> ActionResult:
        definition = self._get_param("definition")
        diagnostics = []
        try:
            StepFunctionsParserBackend._validate_definition(definition=definition)
            result = "OK"
        except Exception as exc:  # noqa: BLE001 - any parse failure is a FAIL diagnostic
            result = "FAIL"
            message = getattr(exc, "message", None) or str(exc)
            diagnostics.append(
                {"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED", "message": message}
            )
        return ActionResult({"result": result, "diagnostics": diagnostics, "truncated": False})

    def list_state_machine_versions(self: Any) -> ActionResult:
        arn = self._get_param("stateMachineArn")
        state_machine = self.stepfunction_backend.describe_state_machine(arn)
        versions = sorted(
            getattr(state_machine, "versions", {}).values(),
            key=lambda v: v.creation_date,
            reverse=True,
        )
        items = [
            {"stateMachineVersionArn": v.arn, "creationDate": v.creation_date} for v in versions
        ]
        return ActionResult({"stateMachineVersions": items})

    # Only where moto lacks them: a moto that grows its own keeps it.
    if not hasattr(StepFunctionResponse, "validate_state_machine_definition"):
        StepFunctionResponse.validate_state_machine_definition = validate_state_machine_definition  # type: ignore[attr-defined]
    if not hasattr(StepFunctionResponse, "list_state_machine_versions"):
        StepFunctionResponse.list_state_machine_versions = list_state_machine_versions  # type: ignore[attr-defined]
