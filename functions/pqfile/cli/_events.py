"""The completion event a `pqfile` command announces itself: `PQFile Key Revoked` for
`pqfile keys revoke --now` (docs/CONTRACTS.md, "Completion events"), with the operator's
AWS credentials (the standard chain). One quick attempt: the revocation is committed
before, and stands whatever happens to its event."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pqfile.config import AwsSettings, EventSettings
from pqfile.usecases.notices import RevocationMode, announce, key_revoked


def _quick_client() -> Any:
    import boto3
    from botocore.config import Config

    aws = AwsSettings.from_env()
    return boto3.session.Session().client(
        "events",
        endpoint_url=aws.endpoint_url,
        region_name=aws.region,
        config=Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=5),
    )


def announce_revoked_now(key_id: str, suite: str | None, at: dt.datetime | None) -> int:
    """Announce a revocation made at once; return 1 when the event was not delivered (the
    caller warns), 0 otherwise or when events are off (PQFILE_EVENT_BUS=off)."""
    from pqfile.adapters.eventbridge import EventBridgePublisher

    bus = EventSettings.from_env().bus
    if bus is None:
        return 0
    publisher = EventBridgePublisher(_quick_client, bus=bus, attempts=1)
    event = key_revoked(key_id=key_id, suite=suite, mode=RevocationMode.NOW, at=at)
    return announce(publisher, event)
