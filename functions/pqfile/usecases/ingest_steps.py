"""What the ingest workflow's steps take and return (statemachines/ingest.asl.json).

Each Lambda parses its event into one of the requests below at the handler boundary
(a malformed event raises InvalidEventError) and answers with a result's ``to_dict()``:
the JSON the state machine passes on. Steps pass references only, never document bytes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pqfile.errors import InvalidEventError
from pqfile.ports import ObjectInfo
from pqfile.usecases.events import SourceRef

DEFAULT_CONTENT_TYPE = "application/octet-stream"

#: Audit operation names of the pipeline (outcomes: success, failure, refused).
OP_ENCRYPT = "document.encrypt"
OP_DECRYPT = "document.decrypt"

#: The encryption-context entry that records the upload's content type (authenticated).
CONTENT_TYPE_CONTEXT = "pqfile:content-type"

#: Tags put on an upload whose ingest failed (kept for a re-run; see docs/OPERATIONS.md).
FAILED_TAG = "pqfile-status"


class IngestStep(enum.StrEnum):
    """The Task states of the ingest workflow, as RecordFailure names the one that failed."""

    FETCH = "FetchDocument"
    SELECT_KEY = "SelectKey"
    ENCRYPT = "EncryptDocument"
    STORE = "StoreDocument"
    AUDIT = "WriteAudit"


class FetchStatus(enum.StrEnum):
    NEW = "new"  # to process
    STORED = "stored"  # a replay found the document already done


class StoreOutcome(enum.StrEnum):
    STORED = "stored"  # this execution committed the document
    DUPLICATE = "duplicate"  # another execution had (a replay)


def _event(event: object) -> Mapping[str, Any]:
    if not isinstance(event, Mapping):
        raise InvalidEventError("the event is not a JSON object")
    return event


def _required(event: Mapping[str, Any], name: str) -> str:
    value = event.get(name)
    if value is None or value == "" or isinstance(value, Mapping | list):
        raise InvalidEventError(f"{name} is missing")
    return str(value)


def _optional(event: Mapping[str, Any], name: str) -> str | None:
    value = event.get(name)
    return None if value is None or value == "" else str(value)


def _source(event: Mapping[str, Any]) -> SourceRef:
    data = event.get("source")
    if not isinstance(data, Mapping):
        raise InvalidEventError("source is missing")
    return SourceRef.from_dict(data)


def object_info_from(data: object) -> ObjectInfo:
    """An ObjectInfo from its ``asdict`` form (what EncryptDocument returned)."""
    if not isinstance(data, Mapping):
        raise InvalidEventError("malformed encrypted object reference: not an object")
    try:
        return ObjectInfo(
            bucket=str(data["bucket"]),
            key=str(data["key"]),
            size=int(data["size"]),
            etag=str(data.get("etag") or ""),
            version_id=data.get("version_id"),
            content_type=str(data.get("content_type") or DEFAULT_CONTENT_TYPE),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidEventError(f"malformed encrypted object reference: {exc}") from None


# --- FetchDocument -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchResult:
    document_id: str
    source: SourceRef
    content_type: str
    status: FetchStatus
    #: What the S3 event says about the uploader (events.uploader_of); WriteAudit records it.
    uploaded_by: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "source": self.source.to_dict(),
            "content_type": self.content_type,
            "status": self.status.value,
            "uploaded_by": dict(self.uploaded_by),
        }


# --- SelectKey ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectKeyRequest:
    document_id: str
    #: A suite name; None for the configured default.
    suite: str | None = None

    @classmethod
    def from_event(cls, event: object) -> SelectKeyRequest:
        e = _event(event)
        return cls(_required(e, "document_id"), _optional(e, "suite"))


@dataclass(frozen=True)
class KeyChoice:
    key_id: str
    suite: str

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "suite": self.suite}


# --- EncryptDocument ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EncryptRequest:
    document_id: str
    source: SourceRef
    key_id: str
    content_type: str = DEFAULT_CONTENT_TYPE

    @classmethod
    def from_event(cls, event: object) -> EncryptRequest:
        e = _event(event)
        return cls(
            document_id=_required(e, "document_id"),
            source=_source(e),
            key_id=_required(e, "key_id"),
            content_type=_optional(e, "content_type") or DEFAULT_CONTENT_TYPE,
        )


# --- StoreDocument -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreRequest:
    document_id: str
    source: SourceRef
    encrypted: ObjectInfo

    @classmethod
    def from_event(cls, event: object) -> StoreRequest:
        e = _event(event)
        return cls(_required(e, "document_id"), _source(e), object_info_from(e.get("encrypted")))


@dataclass(frozen=True)
class StoreResult:
    outcome: StoreOutcome
    encrypted: ObjectInfo
    plaintext_deleted: bool
    #: Completion events that could not be delivered (logged and counted, never fatal).
    events_lost: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "encrypted": asdict(self.encrypted),
            "plaintext_deleted": self.plaintext_deleted,
        }


# --- WriteAudit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRequest:
    document_id: str
    outcome: StoreOutcome = StoreOutcome.STORED
    execution: str | None = None
    #: FetchDocument's ``uploaded_by`` (requester, source_ip), when the workflow passes it.
    uploaded_by: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: object) -> AuditRequest:
        e = _event(event)
        try:
            outcome = StoreOutcome(_optional(e, "outcome") or StoreOutcome.STORED)
        except ValueError:
            raise InvalidEventError("outcome must be 'stored' or 'duplicate'") from None
        raw = e.get("uploaded_by")
        uploaded_by = (
            {
                k: v[:256]
                for k, v in raw.items()
                if k in ("requester", "source_ip") and isinstance(v, str)
            }
            if isinstance(raw, Mapping)
            else {}
        )
        return cls(_required(e, "document_id"), outcome, _optional(e, "execution"), uploaded_by)


# --- RecordFailure -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureRequest:
    """The workflow state at the failure: the original event, the results of the steps that
    completed, ``error`` ({Error, Cause}) from the Catch and ``failed_step`` (the Task that
    failed, named by the Catch's Pass state)."""

    state: Mapping[str, Any] = field(default_factory=dict)
    execution: str | None = None

    @classmethod
    def from_event(cls, event: object) -> FailureRequest:
        e = _event(event)
        state = e.get("state", e)
        return cls(state if isinstance(state, Mapping) else {}, _optional(e, "execution"))


@dataclass(frozen=True)
class FailureReport:
    step: IngestStep
    error_type: str
    document_id: str | None
    upload_tagged: bool
    audit_seq: int
    #: Completion events that could not be delivered (logged and counted, never fatal).
    events_lost: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step.value,
            "error_type": self.error_type,
            "document_id": self.document_id,
            "upload_tagged": self.upload_tagged,
            "audit_seq": self.audit_seq,
        }
