"""``documents`` (ports.DocumentRepository): the document index.

Reads are SELECTs; every write is one call to a SECURITY DEFINER function of
sql/migrations/0010, 0011 and 0016 (document_begin, document_assign_key, document_mark_stored,
document_mark_plaintext_deleted, document_record_failure), granted only to the step that
makes it. Every write is idempotent: a document's source identity (bucket, key, and version
id or ETag) is unique, and the first writer of a key assignment or a stored package wins.
The database refuses a key that is not active for encryption (IllegalTransitionError).
:func:`list_documents` is the operators' read (`pqfile documents list`).
"""

# SQL text only ever interpolates this module's constant column lists; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from pqfile.adapters.postgres.connection import Database, DatabaseError
from pqfile.errors import DocumentNotFoundError
from pqfile.keys.audit_chain import (
    MAX_DOCUMENT_ID_CHARS,
    MAX_REQUEST_ID_CHARS,
    bounded_details,
    bounded_text,
    canonical_details,
)
from pqfile.ports import DocumentRecord

_DOC_COLUMNS = (
    "document_id, source_bucket, source_key, source_version_id, source_etag, status, key_id, "
    "suite, encrypted_bucket, encrypted_key, encrypted_version_id, plaintext_size, "
    "encrypted_size, error, tenant, source_content_type, stored_at"
)
_SOURCE_REF = "coalesce('v:' || CAST(:version_id AS text), 'e:' || CAST(:etag AS text))"


def _doc(r: Sequence[Any]) -> DocumentRecord:
    return DocumentRecord(
        document_id=r[0],
        source_bucket=r[1],
        source_key=r[2],
        source_version_id=r[3],
        source_etag=r[4],
        status=r[5],
        key_id=r[6],
        suite=r[7],
        encrypted_bucket=r[8],
        encrypted_key=r[9],
        encrypted_version_id=r[10],
        plaintext_size=None if r[11] is None else int(r[11]),
        encrypted_size=None if r[12] is None else int(r[12]),
        error=r[13],
        tenant=r[14],
        source_content_type=r[15],
        stored_at=r[16],
    )


class PostgresDocumentRepository:
    """ports.DocumentRepository over ``documents``; every write is idempotent."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def begin(
        self,
        *,
        document_id: str,
        source_bucket: str,
        source_key: str,
        source_version_id: str | None,
        source_etag: str | None,
        plaintext_size: int,
        tenant: str,
        content_type: str | None = None,
    ) -> DocumentRecord:
        if source_version_id is None and source_etag is None:
            raise ValueError("a document's source needs a version id or an ETag")
        rows = self._db.run(
            f"SELECT {_DOC_COLUMNS} FROM document_begin(:document_id, :bucket, :key, "
            ":version_id, :etag, :size, :tenant, :content_type)",
            document_id=document_id,
            bucket=source_bucket,
            key=source_key,
            version_id=source_version_id,
            etag=source_etag,
            size=plaintext_size,
            tenant=tenant,
            content_type=content_type[:255] if content_type else None,
        )
        if rows:
            return _doc(rows[0])
        existing = self.find_by_source(source_bucket, source_key, source_version_id, source_etag)
        if existing is None:
            raise DatabaseError(f"document id {document_id} is taken by another source object")
        return existing

    def find_by_source(
        self, bucket: str, key: str, version_id: str | None, etag: str | None
    ) -> DocumentRecord | None:
        rows = self._db.run(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE source_bucket = :bucket "
            f"AND source_key = :key AND source_ref = {_SOURCE_REF}",
            bucket=bucket,
            key=key,
            version_id=version_id,
            etag=etag,
        )
        return _doc(rows[0]) if rows else None

    def get(self, document_id: str) -> DocumentRecord | None:
        rows = self._db.run(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE document_id = :d", d=document_id
        )
        return _doc(rows[0]) if rows else None

    def get_document(self, document_id: str) -> DocumentRecord:
        record = self.get(document_id)
        if record is None:
            raise DocumentNotFoundError(f"no document {document_id}")
        return record

    def find_by_encrypted_object(self, bucket: str, key: str) -> DocumentRecord | None:
        rows = self._db.run(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE encrypted_bucket = :b "
            "AND encrypted_key = :k ORDER BY created_at LIMIT 1",
            b=bucket,
            k=key,
        )
        return _doc(rows[0]) if rows else None

    def find_stored_by_source(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> DocumentRecord | None:
        rows = self._db.run(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE source_bucket = :b "
            "AND source_key = :k AND status = 'stored' "
            "AND (CAST(:v AS text) IS NULL OR source_version_id = CAST(:v AS text)) "
            "ORDER BY stored_at DESC NULLS LAST, created_at DESC, document_id LIMIT 1",
            b=bucket,
            k=key,
            v=version_id,
        )
        return _doc(rows[0]) if rows else None

    def assign_key(self, document_id: str, key_id: str) -> DocumentRecord:
        rows = self._db.run(
            f"SELECT {_DOC_COLUMNS} FROM document_assign_key(:d, :k)", d=document_id, k=key_id
        )
        if not rows:
            raise DocumentNotFoundError(f"no document {document_id}")
        return _doc(rows[0])

    def mark_stored(
        self,
        document_id: str,
        *,
        encrypted_bucket: str,
        encrypted_key: str,
        encrypted_version_id: str | None,
        encrypted_size: int,
    ) -> tuple[DocumentRecord, bool]:
        rows = self._db.run(
            "SELECT document_mark_stored(:d, :b, :k, :v, :n)",
            b=encrypted_bucket,
            k=encrypted_key,
            v=encrypted_version_id,
            n=encrypted_size,
            d=document_id,
        )
        return self.get_document(document_id), bool(rows[0][0])

    def mark_plaintext_deleted(self, document_id: str) -> None:
        self._db.run("SELECT document_mark_plaintext_deleted(:d)", d=document_id)

    def record_failure(
        self,
        document_id: str | None,
        *,
        error: str,
        details: Mapping[str, object],
        request_id: str | None = None,
    ) -> int:
        rows = self._db.run(
            "SELECT document_record_failure(:d, :e, :details, :req)",
            d=bounded_text(document_id, MAX_DOCUMENT_ID_CHARS),
            e=error[:2000],
            details=canonical_details(bounded_details(details)),
            req=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return int(rows[0][0])


@dataclass(frozen=True)
class DocumentSummary:
    """One line of `pqfile documents list` (a documents row, its tombstone if shredded)."""

    document_id: str
    tenant: str
    status: str
    key_id: str | None
    suite: str | None
    plaintext_size: int | None
    source: str
    created_at: dt.datetime
    stored_at: dt.datetime | None
    shredded_at: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def list_documents(
    db: Database,
    *,
    key_id: str | None = None,
    tenant: str | None = None,
    status: str | None = None,
    limit: int = 1000,
) -> list[DocumentSummary]:
    """Documents by key, tenant and status (SELECT on documents and document_tombstones:
    pqfile_operator or pqfile_auditor), oldest first, at most ``limit``."""
    rows = db.run(
        "SELECT d.document_id, d.tenant, d.status, d.key_id, d.suite, d.plaintext_size, "
        "d.source_bucket || '/' || d.source_key, d.created_at, d.stored_at, t.shredded_at "
        "FROM documents d LEFT JOIN document_tombstones t ON t.document_id = d.document_id "
        "WHERE (CAST(:k AS text) IS NULL OR d.key_id = CAST(:k AS text)) "
        "AND (CAST(:t AS text) IS NULL OR d.tenant = CAST(:t AS text)) "
        "AND (CAST(:s AS text) IS NULL OR d.status = CAST(:s AS text)) "
        "ORDER BY d.created_at, d.document_id LIMIT :n",
        k=key_id,
        t=tenant,
        s=status,
        n=limit,
    )
    return [
        DocumentSummary(
            document_id=str(r[0]),
            tenant=str(r[1]),
            status=str(r[2]),
            key_id=r[3],
            suite=r[4],
            plaintext_size=None if r[5] is None else int(r[5]),
            source=str(r[6]),
            created_at=r[7],
            stored_at=r[8],
            shredded_at=r[9],
        )
        for r in rows
    ]
