"""EventBridge: rules deliver to Step Functions and Lambda targets, events look as on AWS, and
scheduled rules receive no events.

moto 5.2.5's `Rule.send_to_targets` delivers to SQS, log groups, archives, event buses and
API destinations, and silently skips Step Functions state machines and Lambda functions.
This wraps it so that, for a rule that matches:

- a `states` target starts an execution of the state machine, named after (event id, rule,
  target) so a redelivered event is the same execution, and a `lambda` target is invoked
  asynchronously (`lambda_async.invoke_async`);
- the target's `Input`, `InputPath` or `InputTransformer` shapes what it receives;
- a delivery that fails goes to the target's dead-letter queue with EventBridge's
  ERROR_CODE / ERROR_MESSAGE / RULE_ARN / TARGET_ARN attributes;
- the event has a unique `id` (moto gives every S3 event the same one), an ISO-8601 `time`
  (moto: epoch seconds) and, for S3 events, a growing `sequencer` (moto: a constant);
- a DISABLED rule delivers nothing; other targets still go to moto's own delivery.

A rule with a `ScheduleExpression` and no `EventPattern` receives no events at all, as on
AWS: moto loads a missing pattern as the empty pattern, which matches every event, so
every S3 upload also started the scheduled rotation (601 stray audit rows for 200 uploads).
Scheduled rules never fire here either; start those executions yourself.

Upstream-worthy: yes. Step Functions and Lambda targets, input transformation for them,
target dead-letter queues, unique event ids/ISO times/sequencers and schedule-only rules
matching every event are all moto gaps or bugs.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from devstack.moto_patches._internals import Runtime, checking, parameters
from devstack.moto_patches._sqs import expect_send_message, send_to_queue
from devstack.moto_patches.lambda_async import invoke_async

LOG = logging.getLogger("devstack.emulator")

MOTO_CONSTANT_EVENT_ID = "17793124-05d4-b198-2fde-7ededc63b103"  # moto.events.utils
MOTO_CONSTANT_SEQUENCER = "617f08299329d189"  # moto.s3.notifications


def check() -> None:
    with checking(__name__) as expect:
        from moto.events.models import EventPattern, Rule
        from moto.events.utils import _BASE_EVENT_MESSAGE, EventTemplateParser
        from moto.s3 import notifications
        from moto.stepfunctions.parser.models import StepFunctionsParserBackend

        expect(
            parameters(Rule.send_to_targets) == ["self", "original_event", "transform_input"],
            "moto.events.models.Rule.send_to_targets(self, original_event, transform_input) "
            "changed signature",
        )
        expect(
            parameters(EventTemplateParser.parse) == ["input_template", "input_paths_map", "event"],
            "moto.events.utils.EventTemplateParser.parse(input_template, input_paths_map, event) "
            "changed signature",
        )
        rule_source = inspect.getsource(Rule)
        for attribute in ("targets", "event_pattern", "state", "arn", "name"):
            expect(f"self.{attribute}" in rule_source, f"moto.events Rule lost self.{attribute}")
        expect(
            "self.scheduled_expression = " in rule_source
            and "EventPattern.load(event_pattern)" in rule_source
            and parameters(EventPattern.dump) == ["self"],
            "moto.events Rule.scheduled_expression / EventPattern.load(event_pattern) / "
            "EventPattern.dump() changed (schedule-only rules are recognised by them)",
        )
        expect(
            "send_to_targets" in inspect.getsource(notifications._send_event_bridge_message),
            "moto.s3.notifications._send_event_bridge_message no longer calls Rule.send_to_targets",
        )
        expect(
            _BASE_EVENT_MESSAGE.get("id") == MOTO_CONSTANT_EVENT_ID
            and MOTO_CONSTANT_SEQUENCER
            in inspect.getsource(notifications._send_event_bridge_message),
            "moto's constant S3 event id / sequencer changed (devstack.moto_patches."
            "events_targets.normalised_event replaces them with unique values)",
        )
        expect(
            parameters(StepFunctionsParserBackend.start_execution)[:4]
            == ["self", "state_machine_arn", "name", "execution_input"],
            "StepFunctionsParserBackend.start_execution(self, state_machine_arn, name, "
            "execution_input) changed signature",
        )
        expect_send_message(expect)


def is_schedule_only(rule: Any) -> bool:
    """A rule AWS runs on a schedule and never matches against events."""
    return bool(getattr(rule, "scheduled_expression", None)) and not rule.event_pattern.dump()


def apply(runtime: Runtime) -> None:
    from moto.events.models import Rule
    from moto.utilities.arns import parse_arn

    original_send_to_targets = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if getattr(self, "state", "ENABLED") == "DISABLED":
            return
        if is_schedule_only(self):
            return
        if not self.event_pattern.matches_event(original_event):
            return
        ours: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        for target in self.targets:
            service = parse_arn(target["Arn"]).service
            (ours if service in ("states", "lambda") else others).append(target)
        if others:
            moto_rule = copy.copy(self)
            moto_rule.targets = others
            original_send_to_targets(moto_rule, original_event, transform_input)
        if not ours:
            return
        event = normalised_event(original_event)
        for target in ours:
            try:
                if parse_arn(target["Arn"]).service == "states":
                    _start_execution(self, target, event)
                else:
                    _invoke_target_lambda(target, event)
            except (
                Exception
            ) as exc:  # EventBridge delivery is asynchronous: the sender never sees it
                LOG.exception("rule %s could not deliver to %s", self.name, target["Arn"])
                dead_letter_queue = (target.get("DeadLetterConfig") or {}).get("Arn")
                if dead_letter_queue:
                    send_to_queue(
                        dead_letter_queue,
                        event,
                        {
                            "ERROR_CODE": type(exc).__name__,
                            "ERROR_MESSAGE": str(exc)[:1000],
                            "RULE_ARN": self.arn,
                            "TARGET_ARN": target["Arn"],
                        },
                    )

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]


def normalised_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event as AWS delivers it: a unique id, an ISO-8601 `time`."""
    event = copy.deepcopy(event)
    if event.get("id") in (None, "", MOTO_CONSTANT_EVENT_ID):
        # moto gives every S3 event the same id; derive one per event, the same for every rule.
        identity = json.dumps(
            [event.get("source"), event.get("time"), event.get("detail")],
            sort_keys=True,
            default=str,
        )
        event["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, identity))
    when = event.get("time")
    s3_object = event.get("detail", {}).get("object") if event.get("source") == "aws.s3" else None
    if isinstance(s3_object, dict) and isinstance(when, float):
        if s3_object.get("sequencer") == MOTO_CONSTANT_SEQUENCER:
            s3_object["sequencer"] = f"{int(when * 1_000_000):016X}"  # grows with time, per key
    if isinstance(when, int | float):
        event["time"] = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event.pop("ingestion-time", None)
    return event


def _json_path(document: Any, path: str) -> Any:
    """The `$.a.b` subset of JSONPath that InputPath uses in practice."""
    if path in ("$", ""):
        return document
    value = document
    for part in path.removeprefix("$.").split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _target_input(target: dict[str, Any], event: dict[str, Any]) -> Any:
    from moto.events.utils import EventTemplateParser

    if target.get("Input"):
        return json.loads(target["Input"])
    if target.get("InputPath"):
        return _json_path(event, target["InputPath"])
    transformer = target.get("InputTransformer")
    if transformer:
        with_ingestion = dict(event, **{"ingestion-time": event.get("time")})
        return EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=with_ingestion,  # type: ignore[arg-type]
        )
    return event


def _start_execution(rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None:
    from moto.stepfunctions.responses import get_backend
    from moto.utilities.arns import parse_arn

    arn = parse_arn(target["Arn"])
    # Named after (event, rule, target): a redelivered event is the same execution.
    name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event['id']}|{rule.arn}|{target.get('Id')}"))
    execution_input = json.dumps(_target_input(target, event))
    execution = get_backend(arn.account, arn.region).start_execution(
        target["Arn"], name, execution_input
    )
    LOG.info("rule %s started %s", rule.name, execution.execution_arn)


def _invoke_target_lambda(target: dict[str, Any], event: dict[str, Any]) -> None:
    from moto.awslambda.utils import get_backend
    from moto.utilities.arns import parse_arn

    arn = parse_arn(target["Arn"])
    fn = get_backend(arn.account, arn.region).get_function(target["Arn"])
    invoke_async(fn, _target_input(target, event))
