"""ports.EventPublisher on EventBridge: PutEvents to the default bus.

A PutEvents call can fail as a whole (throttling, an endpoint outage) or entry by entry
(``FailedEntryCount``); both are retried with a short backoff, the failed entries only.
After the last attempt the adapter reports what it could not deliver instead of raising:
the caller's work (a stored document, a recorded failure, a revocation) is committed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pqfile.ports import EVENT_SOURCE, ServiceEvent

log = logging.getLogger(__name__)

#: Attempts per batch, and the pause before each retry (seconds; doubles).
ATTEMPTS = 3
FIRST_BACKOFF = 0.2
#: PutEvents takes at most 10 entries per call.
_BATCH = 10


def events_client() -> Any:
    """The EventBridge client at the configured endpoint (the emulator on the local stack)."""
    from pqfile.adapters.aws import client

    return client("events")


class EventBridgePublisher:
    """Publishes to one bus (``default``). The client is built on the first publish (the
    functions that never announce anything never pay for it), then reused."""

    def __init__(
        self,
        client: Callable[[], Any] = events_client,
        *,
        bus: str = "default",
        attempts: int = ATTEMPTS,
        backoff: float = FIRST_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client_factory = client
        self._client: Any = None
        self._bus = bus
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._sleep = sleep

    def publish(self, events: list[ServiceEvent]) -> int:
        lost = 0
        for start in range(0, len(events), _BATCH):
            lost += self._put([self._entry(e) for e in events[start : start + _BATCH]])
        return lost

    def _entry(self, event: ServiceEvent) -> dict[str, Any]:
        return {
            "Source": EVENT_SOURCE,
            "DetailType": event.detail_type.value,
            "Detail": json.dumps(event.detail, sort_keys=True, separators=(",", ":")),
            "EventBusName": self._bus,
        }

    def _put(self, entries: list[dict[str, Any]]) -> int:
        pending = entries
        pause = self._backoff
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(pause)
                pause *= 2
            try:
                if self._client is None:
                    self._client = self._client_factory()
                answer = self._client.put_events(Entries=pending)
            except (ClientError, BotoCoreError) as exc:
                log.warning("PutEvents failed", extra={"error": type(exc).__name__,
                                                       "attempt": attempt + 1})  # fmt: skip
                continue
            if not answer.get("FailedEntryCount"):
                return 0
            results = answer.get("Entries") or []
            failed = [
                entry
                for entry, result in zip(pending, results, strict=False)
                if result.get("ErrorCode")
            ]
            pending = failed + pending[len(results) :]  # entries without an answer too
            if not pending:
                return 0
        return len(pending)
