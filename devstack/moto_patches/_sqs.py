"""Delivery to an SQS queue inside the emulator process (destinations, dead-letter queues)."""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

LOG = logging.getLogger("devstack.emulator")


def send_to_queue(queue_arn: str, body: Any, attributes: dict[str, str] | None = None) -> None:
    from moto.sqs.models import sqs_backends
    from moto.utilities.arns import parse_arn

    arn = parse_arn(queue_arn)
    if arn.service != "sqs":
        LOG.warning("only SQS destinations are emulated, not %s", queue_arn)
        return
    sqs_backends[arn.account][arn.region].send_message(
        queue_name=arn.resource_id,
        message_body=body if isinstance(body, str) else json.dumps(body),
        message_attributes={
            name: {"DataType": "String", "StringValue": value}
            for name, value in (attributes or {}).items()
        },
    )


def expect_send_message(expect: Any) -> None:
    """The check both users of `send_to_queue` run."""
    from moto.sqs.models import SQSBackend

    names = list(inspect.signature(SQSBackend.send_message).parameters)
    expect(
        {"queue_name", "message_body", "message_attributes"} <= set(names),
        "moto.sqs.models.SQSBackend.send_message(queue_name, message_body, message_attributes, "
        "...) changed signature",
    )
