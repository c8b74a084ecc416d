"""Lambda: keep, report and use a function's `DeadLetterConfig` and `LoggingConfig`.

moto 5.2.5 accepts both in CreateFunction/UpdateFunctionConfiguration and then drops them:
GetFunction reports neither, so Terraform plans a change to every function on every run,
and an asynchronous invocation that fails has no dead-letter queue to go to
(`lambda_async` reads `dead_letter_config`). This wraps `LambdaFunction.__init__`,
`update_configuration` and `get_configuration` to keep both (LoggingConfig defaults to
Lambda's plain-text logs in `/aws/lambda/<name>`; a custom log group is where the function's
logs are written).

Upstream-worthy: yes. Both are plain gaps in moto's Lambda model.
"""

from __future__ import annotations

import inspect
from typing import Any

from devstack.moto_patches._internals import Runtime, checking, parameters


def check() -> None:
    with checking(__name__) as expect:
        from moto.awslambda.models import LambdaFunction

        init_source = inspect.getsource(LambdaFunction.__init__)
        expect(
            parameters(LambdaFunction.__init__)[:3] == ["self", "account_id", "spec"]
            and parameters(LambdaFunction.update_configuration) == ["self", "config_updates"]
            and parameters(LambdaFunction.get_configuration)[:1] == ["self"],
            "LambdaFunction.__init__(self, account_id, spec, ...), update_configuration(self, "
            "config_updates) or get_configuration(self, ...) changed signature",
        )
        expect(
            "self.logs_group_name =" in init_source,
            "LambdaFunction.__init__ no longer sets self.logs_group_name",
        )
        expect(
            "LoggingConfig" not in init_source,
            "LambdaFunction now keeps LoggingConfig itself: drop it from "
            "devstack.moto_patches.lambda_config",
        )
        expect(
            "DeadLetterConfig" not in init_source,
            "LambdaFunction now keeps DeadLetterConfig itself: drop "
            "devstack.moto_patches.lambda_config",
        )


def apply(runtime: Runtime) -> None:
    from moto.awslambda.models import LambdaFunction

    original_init = LambdaFunction.__init__
    original_update = LambdaFunction.update_configuration
    original_get = LambdaFunction.get_configuration

    def keep(self: Any, config: dict[str, Any]) -> None:
        if "DeadLetterConfig" in config:
            self.dead_letter_config = dict(config["DeadLetterConfig"] or {})
        if "LoggingConfig" in config:
            logging_config = {**self.logging_config, **(config["LoggingConfig"] or {})}
            self.logging_config = logging_config
            self.logs_group_name = logging_config["LogGroup"]

    def __init__(
        self: Any, account_id: str, spec: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        original_init(self, account_id, spec, *args, **kwargs)
        self.dead_letter_config = {}
        # Lambda's default: plain-text logs in /aws/lambda/<name>.
        self.logging_config = {"LogFormat": "Text", "LogGroup": self.logs_group_name}
        keep(self, spec)

    def update_configuration(self: Any, config_updates: dict[str, Any]) -> Any:
        keep(self, config_updates)
        return original_update(self, config_updates)

    def get_configuration(self: Any, *args: Any, **kwargs: Any) -> Any:
        configuration = original_get(self, *args, **kwargs)
        if getattr(self, "dead_letter_config", None):
            configuration["DeadLetterConfig"] = dict(self.dead_letter_config)
        if getattr(self, "logging_config", None):
            configuration["LoggingConfig"] = dict(self.logging_config)
        return configuration

    LambdaFunction.__init__ = __init__  # type: ignore[method-assign]
    LambdaFunction.update_configuration = update_configuration  # type: ignore[method-assign]
    LambdaFunction.get_configuration = get_configuration  # type: ignore[method-assign]
