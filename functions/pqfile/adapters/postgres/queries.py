"""ports.DocumentQuery on PostgreSQL: the documents function's role (pqfile_documents)
calls 0017's SECURITY DEFINER functions and holds no table privilege."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pqfile.adapters.postgres.connection import Database
from pqfile.ports.queries import DocumentStatusView

_COLUMNS = (
    "document_id, status, tenant, key_id, suite, source_bucket, source_key, "
    "source_version_id, source_content_type, plaintext_size, error, created_at, stored_at"
)


def _view(r: Sequence[Any]) -> DocumentStatusView:
    return DocumentStatusView(*r)


def _details(details: dict[str, Any]) -> str | None:
    return json.dumps(details, sort_keys=True) if details else None


class PostgresDocumentQuery:
    def __init__(self, db: Database) -> None:
        self._db = db

    def status(
        self,
        principal: str,
        *,
        document_id: str | None,
        source: tuple[str, str, str | None] | None,
        request_id: str | None,
        details: dict[str, Any],
    ) -> DocumentStatusView | None:
        bucket, key, version = source if source is not None else (None, None, None)
        rows = self._db.run(
            f"SELECT {_COLUMNS} FROM document_status_for("  # noqa: S608 (constants)
            "CAST(:p AS text), CAST(:d AS text), CAST(:b AS text), CAST(:k AS text), "
            "CAST(:v AS text), CAST(:r AS text), CAST(:x AS text))",
            p=principal, d=document_id, b=bucket, k=key, v=version, r=request_id,
            x=_details(details),
        )  # fmt: skip
        return _view(rows[0]) if rows else None

    def list(
        self,
        principal: str,
        *,
        tenant: str | None,
        status: str | None,
        limit: int,
        request_id: str | None,
        details: dict[str, Any],
    ) -> list[DocumentStatusView]:
        rows = self._db.run(
            f"SELECT {_COLUMNS} FROM document_list_for("  # noqa: S608 (constants)
            "CAST(:p AS text), CAST(:t AS text), CAST(:s AS text), CAST(:l AS integer), "
            "CAST(:r AS text), CAST(:x AS text))",
            p=principal, t=tenant, s=status, l=limit, r=request_id, x=_details(details),
        )  # fmt: skip
        return [_view(r) for r in rows]

    def refused(
        self, operation: str, principal: str | None, request_id: str | None,
        details: dict[str, Any],
    ) -> None:  # fmt: skip
        self._db.run(
            "SELECT document_query_audit(CAST(:o AS text), 'refused', CAST(:p AS text), "
            "NULL, CAST(:r AS text), CAST(:x AS text))",
            o=operation, p=principal, r=request_id, x=_details(details),
        )  # fmt: skip
