"""Lambda: a CreateFunction replayed with identical code and configuration gets the original
answer (201 and the function) instead of 409 "Function already exist".

Why (the `make deploy-local` flake, issue 8 item 9): one deploy in nine failed after one
`aws_lambda_function` had been "creating" for 5 min 36 s, with ResourceConflictException
"Function already exist". What was measured:

- The emulator is not slow to create. In the provider's debug log of a full deploy every
  CreateFunction was answered in 4-80 ms (its own `http.duration`); in eight more fresh
  deploys in a row none took over 3 s and no request was retried; 60 creates of the
  Terraform-sized zip, 13 at a time, take about a second, also while a handler runs.
  Nothing on the create path waits for the Lambda worker pool (`lambda_handlers` only runs
  at invoke time), the zip is only base64-decoded and hashed, and the server is threaded
  (one thread per connection; every answer says `Connection: close`).
- The time is the aws provider's. It creates functions one at a time (a global
  "lambda_function_upload" mutex held for the whole create) and waits 5 s for State=Active
  before releasing it, so 13 functions take at least 65 s and a function queued behind the
  others shows "Still creating" for half a minute or more. And it treats
  ResourceConflictException from CreateFunction as retryable for `lambdaPropagationTimeout`,
  5 minutes, then tries once more and fails. 5 min 36 s is those 5 minutes of 409s plus the
  time queued behind the mutex: for all those 5 minutes the function existed, created
  by an earlier call Terraform's state did not account for.
- A function exists in the emulator while Terraform plans to create it when an earlier
  apply created it and its state never recorded that: terraform stopped hard mid-apply (a
  SIGKILL leaves the functions created in its last seconds out of the state file;
  reproduced; `devstack.terraform.run` sent one on a timeout and now interrupts first), or
  an answer that never reached the provider, whose SDK then retried the create. A re-deploy
  onto the same running emulator then asks again for a function that is already there,
  exactly as it would create it.

The fix: when CreateFunction names an existing function and the function the request would
create is the one that exists (same code hash, handler, runtime, role, environment, timeout,
memory, architectures, logging and dead-letter configuration, KMS key, tags...: every field
of its configuration but LastModified), the emulator answers as the original create did and
Terraform carries on. A request that differs still gets 409, as on AWS, so a real name clash
is still reported.

Upstream-worthy: no. AWS answers 409 to any CreateFunction for an existing name; this is a
deliberate, narrow tolerance so that a local stack recovers from an interrupted apply or a
lost answer instead of failing the next deploy after five minutes.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
from typing import Any

from devstack.moto_patches._internals import Runtime, checking, parameters

LOG = logging.getLogger("devstack.emulator")

#: Configuration fields that differ between two creates of the same function.
_VOLATILE = frozenset({"LastModified"})


def check() -> None:
    with checking(__name__) as expect:
        from moto.awslambda.exceptions import UnknownFunctionException  # noqa: F401
        from moto.awslambda.models import LambdaFunction
        from moto.awslambda.responses import LambdaResponse

        source = inspect.getsource(LambdaResponse.create_function)
        expect(
            parameters(LambdaResponse.create_function) == ["self"]
            and "self.backend.get_function(function_name, None)" in source
            and "raise FunctionAlreadyExists(function_name)" in source
            and "get_configuration(on_create=True)" in source,
            "moto.awslambda.responses.LambdaResponse.create_function(self) no longer looks the "
            "function up by name, answers get_configuration(on_create=True) or raises "
            "FunctionAlreadyExists",
        )
        expect(
            parameters(LambdaFunction.__init__)[:5]
            == ["self", "account_id", "spec", "region", "version"]
            and parameters(LambdaFunction.get_configuration) == ["self", "on_create"],
            "LambdaFunction.__init__(self, account_id, spec, region, version) or "
            "get_configuration(self, on_create) changed signature",
        )
        init_source = inspect.getsource(LambdaFunction.__init__)
        expect(
            all(f"self.{name} =" in init_source for name in ("account_id", "region", "tags")),
            "LambdaFunction.__init__ no longer sets self.account_id / self.region / self.tags",
        )


def is_replay(existing: Any, spec: dict[str, Any]) -> bool:
    """Would `spec` (a CreateFunction request) create exactly the function `existing`?"""
    from moto.awslambda import models

    function_class: Any = models.LambdaFunction  # typed as abstract (CloudFormationModel)
    try:
        candidate = function_class(
            account_id=existing.account_id,
            spec=copy.deepcopy(spec),  # moto writes into spec["Code"]
            region=existing.region,
            version="$LATEST",
        )
    except Exception:  # noqa: BLE001 - a request moto would refuse is no replay
        return False
    return _comparable(candidate) == _comparable(existing)


def _comparable(fn: Any) -> dict[str, Any]:
    configuration = fn.get_configuration(on_create=True)
    comparable = {k: v for k, v in configuration.items() if k not in _VOLATILE}
    comparable["Tags"] = dict(getattr(fn, "tags", None) or {})
    return comparable


def apply(runtime: Runtime) -> None:
    from moto.awslambda.exceptions import UnknownFunctionException
    from moto.awslambda.responses import LambdaResponse

    original_create_function = LambdaResponse.create_function

    def create_function(self: Any) -> Any:
        spec = self.json_body
        name = str(spec.get("FunctionName", "")).rsplit(":", 1)[-1]
        try:
            existing = self.backend.get_function(name, None)
        except UnknownFunctionException:
            return original_create_function(self)
        if not is_replay(existing, spec):
            return original_create_function(self)  # 409, as on AWS
        LOG.warning(
            "CreateFunction %s: the function exists with this very code and configuration "
            "(an interrupted apply or a lost answer); answering as its create did",
            name,
        )
        return 201, {"status": 201}, json.dumps(existing.get_configuration(on_create=True))

    LambdaResponse.create_function = create_function  # type: ignore[method-assign]
