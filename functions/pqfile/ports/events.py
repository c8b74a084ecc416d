"""Completion events: what the service announces on the default EventBridge bus
(docs/CONTRACTS.md, "Completion events"). The values are built by pqfile.usecases.notices;
an adapter (pqfile.adapters.eventbridge) delivers them."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: The ``source`` of every event the service emits.
EVENT_SOURCE = "pqfile"


class EventType(enum.StrEnum):
    """The ``detail-type`` of each event (one schema each in docs/CONTRACTS.md)."""

    DOCUMENT_ENCRYPTED = "PQFile Document Encrypted"
    DOCUMENT_FAILED = "PQFile Document Failed"
    KEY_REVOKED = "PQFile Key Revoked"


@dataclass(frozen=True)
class ServiceEvent:
    """One event: its type and its ``detail`` (ids, names, sizes: never content or secrets)."""

    detail_type: EventType
    detail: Mapping[str, Any]


class EventPublisher(Protocol):
    """Delivers events; never raises. Returns how many of ``events`` were not delivered
    (after its own retries): the caller logs and counts them, the work already done
    stands."""

    def publish(self, events: list[ServiceEvent]) -> int: ...
