"""The ingest workflow, one function per Step Functions state (statemachines/ingest.asl.json).

Steps pass references only (bucket, key, version id, document id, key id). Every step is
idempotent, keyed by the upload's identity (docs/DESIGN.md, "Shape"):

- the document id is derived from (bucket, key, version id or ETag), so a replay finds the
  same row and the same encrypted object key;
- the first writer wins everywhere: the key recorded on the row, the `stored` commit;
  a concurrent loser deletes its own redundant encrypted version;
- fail-safe on keys: encrypt and store refuse a key that is no longer active for
  encryption (KeyNotUsableError, recorded by RecordFailure with the upload kept), and a
  re-run's SelectKey replaces such a key on the row with a fresh one (the database does the
  same check: sql/migrations/0010, document_assign_key / document_mark_stored);
- the plaintext version is deleted only after the row is committed and the package, on a
  key that still decrypts, was read back and verified.

This module holds the first half (FetchDocument, SelectKey, EncryptDocument);
usecases/ingest_commit.py the commit half (StoreDocument, WriteAudit, RecordFailure),
re-exported here so handlers and tests import the workflow from one place.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pqfile.crypto.kem import Suite
from pqfile.errors import (
    DocumentNotFoundError,
    KeyNotFoundError,
    KeyNotUsableError,
    NoActiveKeyError,
    StorageError,
)
from pqfile.keys.model import KeyStatus
from pqfile.ports import DocumentRecord, DocumentStatus, ObjectInfo
from pqfile.usecases.common import (
    PACKAGE_CONTENT_TYPE,
    CountingReader,
    Pipeline,
)
from pqfile.usecases.events import (
    SourceRef,
    document_id_for,
    encrypted_key_for,
    parse_object_created,
    require_tenant,
    uploader_of,
)
from pqfile.usecases.ingest_commit import (
    audit_ingest,
    failed_step,
    record_failure,
    store_document,
)
from pqfile.usecases.ingest_parallel import encrypt_in_parallel
from pqfile.usecases.ingest_steps import (
    CONTENT_TYPE_CONTEXT,
    DEFAULT_CONTENT_TYPE,
    FAILED_TAG,
    OP_DECRYPT,
    OP_ENCRYPT,
    FetchResult,
    FetchStatus,
    KeyChoice,
)
from pqfile.usecases.parts import check_document_size, plan_parts

__all__ = [
    "CONTENT_TYPE_CONTEXT",
    "FAILED_TAG",
    "OP_DECRYPT",
    "OP_ENCRYPT",
    "audit_ingest",
    "encrypt_document",
    "failed_step",
    "fetch_document",
    "record_failure",
    "select_key",
    "store_document",
    "suite_wanted",
]

log = logging.getLogger(__name__)


def fetch_document(p: Pipeline, event: Mapping[str, Any]) -> FetchResult:
    """Check the event, then the object's existence, size and identity; open the row."""
    s = p.settings.storage
    source = parse_object_created(event, uploads_bucket=s.uploads_bucket)
    if source.size is not None:
        # At once, from the event: not after the encrypt step's 15-minute timeout.
        _check_size(p, source.size)
    document_id = document_id_for(source)
    tenant = require_tenant(source)
    uploaded_by = uploader_of(event)
    existing = p.documents.get(document_id)
    if existing is not None and existing.status is DocumentStatus.STORED:
        # A replay of an event already processed: the plaintext is gone by design.
        return FetchResult(
            document_id, source, DEFAULT_CONTENT_TYPE, FetchStatus.STORED, uploaded_by
        )

    try:
        info = p.blobs.stat(source.bucket, source.key, source.version_id)
    except DocumentNotFoundError:
        # A concurrent execution may have finished and deleted the plaintext just now.
        existing = p.documents.get(document_id)
        if existing is not None and existing.status is DocumentStatus.STORED:
            return FetchResult(
                document_id, source, DEFAULT_CONTENT_TYPE, FetchStatus.STORED, uploaded_by
            )
        raise
    if source.size is not None and info.size != source.size:
        raise DocumentNotFoundError(
            f"the object is {info.size} bytes, the event said {source.size}: it changed"
        )
    if source.version_id is None and source.etag and info.etag != source.etag:
        raise DocumentNotFoundError("the object was overwritten after the event")
    _check_size(p, info.size)
    # Pin the identity: from here on, every step reads exactly this version.
    source = SourceRef(
        bucket=source.bucket,
        key=source.key,
        version_id=source.version_id or info.version_id,
        etag=source.etag or info.etag,
        size=info.size,
    )
    if document_id_for(source) != document_id:  # the event lacked the version id
        document_id = document_id_for(source)
    record = p.documents.begin(
        document_id=document_id,
        source_bucket=source.bucket,
        source_key=source.key,
        source_version_id=source.version_id,
        source_etag=source.etag,
        plaintext_size=info.size,
        tenant=tenant,
        content_type=info.content_type or None,
    )
    status = FetchStatus.STORED if record.status is DocumentStatus.STORED else FetchStatus.NEW
    return FetchResult(record.document_id, source, info.content_type, status, uploaded_by)


def _check_size(p: Pipeline, size: int) -> None:
    """DocumentTooLargeError for what the encrypt step could not store (usecases/parts.py)."""
    check_document_size(
        size,
        max_document_size=p.settings.storage.max_document_size,
        segment_size=p.settings.encryption.segment_size,
    )


#: Selections tried when the key just selected stops being active before it is recorded.
_ASSIGN_ATTEMPTS = 3


def select_key(p: Pipeline, document_id: str, suite: str | None = None) -> KeyChoice:
    """The key this document is encrypted to: a replay gets the key recorded first, unless
    that key is no longer active for encryption (revoked, expired or queued for rotation
    since): then a fresh key is selected and replaces it on the row."""
    record = p.documents.get(document_id)
    if record is None:
        raise DocumentNotFoundError(f"no document {document_id}")
    if record.key_id and record.suite:
        if _still_encrypts(p, record.key_id):
            return KeyChoice(record.key_id, record.suite)
        log.warning(
            "the document's key no longer encrypts: selecting another",
            extra={"document_id": document_id, "key_id": record.key_id},
        )
    wanted = Suite.from_name(_suite_of(p, record, suite))
    size = record.plaintext_size or 0
    for attempt in range(_ASSIGN_ATTEMPTS):
        try:
            public = p.keys.select_encryption_key(wanted, size)
        except NoActiveKeyError:
            # The ingest pipeline never creates keys (docs/KEYS.md, roles): only the
            # rotate-keys workflow's MaintainPool does. The workflow retries this error with
            # backoff, then records the failure and keeps the upload for a re-run.
            log.warning("key pool empty", extra={"suite": wanted.value, "document_id": document_id})
            raise
        try:
            record = p.documents.assign_key(document_id, public.key_id)
        except KeyNotUsableError:
            # The key stopped being active between selection and assignment: select again.
            if attempt + 1 == _ASSIGN_ATTEMPTS:
                raise
            continue
        break
    assert record.key_id and record.suite  # assign_key returns the winning key
    return KeyChoice(record.key_id, record.suite)


def _suite_of(p: Pipeline, record: DocumentRecord, suite: str | None) -> str:
    """The suite a document's key is selected from: the one asked for, else the one already
    recorded on its row (a replay keeps it), else the deployment's for this upload:
    PQFILE_SUITE_BY_PREFIX's longest prefix of its key, else PQFILE_DEFAULT_SUITE
    (docs/KEYS.md, "Suites of new documents")."""
    return suite or record.suite or p.settings.encryption.suite_for(record.source_key)


def suite_wanted(p: Pipeline, document_id: str, suite: str | None = None) -> str:
    """The suite :func:`select_key` selects from for this document (the pool-size metric of
    an empty pool names it)."""
    record = p.documents.get(document_id)
    if record is None:
        return suite or p.settings.encryption.default_suite
    return _suite_of(p, record, suite)


def _still_encrypts(p: Pipeline, key_id: str) -> bool:
    try:
        return p.keys.get_key(key_id).status is KeyStatus.ACTIVE
    except KeyNotFoundError:
        return False


def encrypt_document(
    p: Pipeline,
    document_id: str,
    source: SourceRef,
    key_id: str,
    content_type: str = DEFAULT_CONTENT_TYPE,
) -> ObjectInfo:
    """Stream the upload through encrypt_stream into a multipart upload under encrypted/.

    Memory is bounded by one body segment plus one multipart part, whatever the size. An
    upload of several parts is encrypted by ``PQFILE_INGEST_WORKERS`` threads instead
    (usecases/ingest_parallel.py): memory about workers x (part + 2 segments).
    """
    s = p.settings.storage
    record = p.documents.get(document_id)
    if record is None:
        raise DocumentNotFoundError(f"no document {document_id}")
    target_key = encrypted_key_for(document_id)
    if record.status is DocumentStatus.STORED and record.encrypted_key:
        # Already done by an earlier or concurrent execution: nothing to write.
        return p.blobs.stat(
            record.encrypted_bucket or s.encrypted_bucket,
            record.encrypted_key,
            record.encrypted_version_id,
        )
    if record.key_id != key_id:
        raise KeyNotUsableError(
            f"document {document_id} is not on key {key_id} (re-selected meanwhile): re-run"
        )
    # Only an active key whose attestation verifies is encrypted to (KeyNotUsableError,
    # CustodyError otherwise): never a key revoked since SelectKey, never a planted one.
    public = p.keys.encryption_key(key_id)
    context = {"pqfile:source-bucket": source.bucket, CONTENT_TYPE_CONTEXT: content_type}
    size = source.size if source.size is not None else record.plaintext_size or 0
    # Parts large enough that S3's 10,000-part limit never cuts the package short.
    plan = plan_parts(
        size,
        segment_size=p.settings.encryption.segment_size,
        preferred_part_size=s.part_size,
    )
    try:
        if (
            s.ingest_workers > 1
            and plan.parts > 1
            and source.size is not None
            and (source.version_id and source.version_id != "null")
        ):
            # Several parts of a pinned version: encrypted by several threads
            # (usecases/ingest_parallel.py; the same package format, byte for byte).
            return encrypt_in_parallel(
                p, document_id, source, source.size, public, context, plan, target_key,
                workers=s.ingest_workers,
            )  # fmt: skip
        body = p.blobs.open_read(source.bucket, source.key, source.version_id)
    except DocumentNotFoundError:
        # Gone because a concurrent execution committed and deleted it: reuse its package.
        record = p.documents.get(document_id)
        if record is not None and record.status is DocumentStatus.STORED and record.encrypted_key:
            return p.blobs.stat(
                record.encrypted_bucket or s.encrypted_bucket,
                record.encrypted_key,
                record.encrypted_version_id,
            )
        raise
    reader = CountingReader(body)
    writer = p.blobs.open_write(
        s.encrypted_bucket,
        target_key,
        content_type=PACKAGE_CONTENT_TYPE,
        part_size=plan.part_size,
    )
    try:
        p.cipher.encrypt_stream(
            reader,  # type: ignore[arg-type]
            writer,
            public,
            context,
            segment_size=p.settings.encryption.segment_size,
            document_id=document_id,
        )
        if source.size is not None and reader.count != source.size:
            raise StorageError(
                f"read {reader.count} bytes, the object has {source.size}: it changed"
            )
        written = writer.complete()
    except BaseException:
        writer.abort()
        raise
    finally:
        reader.close()
    return written
