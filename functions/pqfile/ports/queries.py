"""What the documents query function reads (sql/migrations/0017): a document's status
fields, for a verified caller, only where its access rules allow."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class DocumentStatusView:
    """The status fields of one document: never its package, key material or audit."""

    document_id: str
    status: str
    tenant: str | None
    key_id: str | None
    suite: str | None
    source_bucket: str
    source_key: str
    source_version_id: str | None
    source_content_type: str | None
    plaintext_size: int | None
    error: str | None
    created_at: dt.datetime | None
    stored_at: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "status": self.status,
            "tenant": self.tenant,
            "key_id": self.key_id,
            "suite": self.suite,
            "source": {
                "bucket": self.source_bucket,
                "key": self.source_key,
                "version_id": self.source_version_id,
                "content_type": self.source_content_type,
            },
            "size": self.plaintext_size,
            "error": self.error,
            "created_at": _iso(self.created_at),
            "stored_at": _iso(self.stored_at),
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class DocumentQuery(Protocol):
    """Each call appends its own audit row (``document.status`` / ``document.list``)."""

    def status(
        self,
        principal: str,
        *,
        document_id: str | None,
        source: tuple[str, str, str | None] | None,
        request_id: str | None,
        details: dict[str, Any],
    ) -> DocumentStatusView | None:
        """The document, or None for "no such document" and "not allowed" alike."""
        ...

    def list(
        self,
        principal: str,
        *,
        tenant: str | None,
        status: str | None,
        limit: int,
        request_id: str | None,
        details: dict[str, Any],
    ) -> list[DocumentStatusView]: ...

    def refused(
        self, operation: str, principal: str | None, request_id: str | None,
        details: dict[str, Any],
    ) -> None:  # fmt: skip
        """Audit a request refused before any lookup (bad proof, bad payload)."""
        ...
