"""What the rotate-keys workflow's steps take and return (statemachines/rotate-keys.asl.json).

Each Lambda parses its event into a request below at the handler boundary (a malformed
event raises InvalidEventError) and answers with a result's ``to_dict()``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pqfile.errors import InvalidEventError
from pqfile.ports import RotationRunView


class RewrapOutcome(enum.StrEnum):
    REWRAPPED = "rewrapped"  # this call moved the document to the new key (same data key)
    REENCRYPTED = "reencrypted"  # this call moved it under a fresh data key
    ALREADY_REWRAPPED = "already_rewrapped"  # an earlier or concurrent call had
    NOT_ON_OLD_KEY = "not_on_old_key"  # the document was never on the run's old key


def rotation_id_from(event: Mapping[str, Any]) -> int:
    """The run id of a workflow event (``{"rotation_id": N, ...}``)."""
    value = event.get("rotation_id") if isinstance(event, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidEventError("rotation_id is missing")
    try:
        return int(value)
    except ValueError:
        raise InvalidEventError("rotation_id must be an integer") from None


@dataclass(frozen=True)
class RunSummary:
    """One rotation run as the workflow sees it."""

    rotation_id: int
    old_key_id: str
    new_key_id: str | None
    status: str  # a RotationStatus value
    to_suite: str | None = None  # None: the old key's suite

    @classmethod
    def of(cls, run: RotationRunView) -> RunSummary:
        return cls(run.rotation_id, run.old_key_id, run.new_key_id, str(run.status),
                   run.to_suite)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "rotation_id": self.rotation_id,
            "old_key_id": self.old_key_id,
            "new_key_id": self.new_key_id,
            "status": self.status,
            "to_suite": self.to_suite,
        }


# --- MaintainPool ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueuedKey:
    key_id: str
    reason: str  # a keys.policy.RotationReason value


@dataclass(frozen=True)
class MaintainResult:
    queued: list[QueuedKey]
    #: Keys created per maintained suite.
    created: dict[str, int]
    #: The runs to work on: running ones first (resumed), then queued ones.
    rotations: list[RunSummary]
    #: Active keys per maintained suite after the refill (the key-pool-low alarm's metric).
    active: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queued": [{"key_id": q.key_id, "reason": q.reason} for q in self.queued],
            "created": dict(self.created),
            "rotations": [run.to_dict() for run in self.rotations],
            "active": dict(self.active),
        }


# --- PlanRewrap --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationRequest:
    """FinishRotation: ``{"rotation_id": N}``."""

    rotation_id: int

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> RotationRequest:
        return cls(rotation_id_from(event))


@dataclass(frozen=True)
class PlanRequest:
    """PlanRewrap: ``{"rotation_id": N, "after": document id or null}`` (the cursor)."""

    rotation_id: int
    after: str | None = None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> PlanRequest:
        after = event.get("after") if isinstance(event, Mapping) else None
        if after is not None and not isinstance(after, str):
            raise InvalidEventError("after must be a document id or null")
        return cls(rotation_id_from(event), after or None)


@dataclass(frozen=True)
class RewrapItem:
    """One manifest item: a document of the run and the pool key it moves to."""

    rotation_id: int
    document_id: str
    target_key_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rotation_id": self.rotation_id,
            "document_id": self.document_id,
            "target_key_id": self.target_key_id,
        }


@dataclass(frozen=True)
class Manifest:
    """Where a batch's items are: a JSON array the distributed Map's ItemReader reads."""

    bucket: str
    key: str


@dataclass(frozen=True)
class PlanResult:
    run: RunSummary
    #: The batch's manifest (empty when the run is not running).
    manifest: Manifest
    #: Items in the manifest.
    count: int
    #: True when the batch was full: the workflow plans again from ``after``.
    more: bool
    #: The cursor: the last document id this batch looked at.
    after: str | None
    #: Documents on the old key without a stored package (in flight or failed ingests).
    skipped: int
    #: Child executions at once (the distributed Map's MaxConcurrencyPath).
    concurrency: int

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.run.to_dict(),
            "manifest_bucket": self.manifest.bucket,
            "manifest_key": self.manifest.key,
            "count": self.count,
            "more": self.more,
            "after": self.after,
            "skipped": self.skipped,
            "concurrency": self.concurrency,
        }


# --- RewrapDocument ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RewrapRequest:
    """RewrapDocument: one manifest item, ``{"rotation_id", "document_id", "target_key_id"}``
    (``target_key_id`` may be null: the rewrap picks a pool key)."""

    rotation_id: int
    document_id: str
    target_key_id: str | None = None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> RewrapRequest:
        document_id = event.get("document_id") if isinstance(event, Mapping) else None
        if not isinstance(document_id, str) or not document_id:
            raise InvalidEventError("document_id is missing")
        target = event.get("target_key_id")
        if target is not None and (not isinstance(target, str) or not target):
            raise InvalidEventError("target_key_id must be a key id or null")
        return cls(rotation_id_from(event), document_id, target)


@dataclass(frozen=True)
class RewrapResult:
    document_id: str
    outcome: RewrapOutcome
    key_id: str | None
    version_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "outcome": self.outcome.value,
            "key_id": self.key_id,
            "version_id": self.version_id,
        }


# --- FinishRotation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FinishResult:
    run: RunSummary
    documents_rewrapped: int
    #: Completion events that could not be delivered (logged and counted, never fatal).
    events_lost: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**self.run.to_dict(), "documents_rewrapped": self.documents_rewrapped}


# --- RecordFailure -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationFailure:
    """``{"error": {Error, Cause}, "state": {...}, "execution": ...}`` from a Catch."""

    error_type: str
    rotation_id: object = None
    execution: str | None = None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> RotationFailure:
        e: Mapping[str, Any] = event if isinstance(event, Mapping) else {}
        error = e.get("error")
        state = e.get("state")
        return cls(
            error_type=str(error.get("Error", "Unknown"))[:128]
            if isinstance(error, Mapping)
            else "Unknown",
            rotation_id=state.get("rotation_id") if isinstance(state, Mapping) else None,
            execution=str(e.get("execution") or "") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error_type, "rotation_id": self.rotation_id}
