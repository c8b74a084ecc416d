"""The commit half of the ingest workflow: StoreDocument, WriteAudit and the Catch path
RecordFailure (statemachines/ingest.asl.json); usecases/ingest.py holds the first half
(FetchDocument, SelectKey, EncryptDocument) and re-exports these.

StoreDocument deletes the plaintext version only after the row is committed and the package,
on a key that still decrypts, was read back and verified; RecordFailure keeps the upload,
tagged, for a re-run (docs/OPERATIONS.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pqfile.errors import (
    DocumentNotFoundError,
    InvalidEventError,
    KeyNotFoundError,
    KeyNotUsableError,
    PQFileError,
    StorageError,
)
from pqfile.keys.model import Purpose
from pqfile.ports import AuditOutcome, DocumentRecord, DocumentStatus, ObjectInfo
from pqfile.usecases.common import Pipeline
from pqfile.usecases.events import SourceRef, parse_object_created, tenant_of
from pqfile.usecases.ingest_steps import (
    FAILED_TAG,
    OP_ENCRYPT,
    FailureReport,
    IngestStep,
    StoreOutcome,
    StoreResult,
)
from pqfile.usecases.notices import announce, document_encrypted, document_failed

log = logging.getLogger(__name__)


def store_document(
    p: Pipeline, document_id: str, source: SourceRef, encrypted: ObjectInfo
) -> StoreResult:
    """Verify the package, commit the row, then delete the plaintext version.

    The plaintext goes only once a package is committed on a key that still decrypts and
    that package was read back: its header names this document and the row's key.
    """
    current = p.blobs.stat(encrypted.bucket, encrypted.key, encrypted.version_id)
    if current.size != encrypted.size or (
        encrypted.etag and current.etag and current.etag != encrypted.etag
    ):
        raise StorageError("the encrypted object does not match what the encrypt step wrote")
    record = _check_package(p, document_id, encrypted)
    if record.status is not DocumentStatus.STORED:
        # Early; the database checks again as it commits (document_mark_stored).
        _require_key(p, record.key_id, Purpose.ENCRYPT)
    record, stored_now = p.documents.mark_stored(
        document_id,
        encrypted_bucket=encrypted.bucket,
        encrypted_key=encrypted.key,
        encrypted_version_id=encrypted.version_id,
        encrypted_size=encrypted.size,
    )
    outcome = StoreOutcome.STORED if stored_now else StoreOutcome.DUPLICATE
    kept = encrypted
    if not stored_now:
        winner = record.encrypted_version_id
        if encrypted.version_id and winner and winner != encrypted.version_id:
            # A concurrent execution committed first: our package is a redundant version.
            # On AWS the bucket policy lets only the shred role delete under encrypted/, so
            # the clean-up may be refused: the version is then kept (it holds no plaintext)
            # and the committed one stays the document's package.
            try:
                p.blobs.delete_version(encrypted.bucket, encrypted.key, encrypted.version_id)
            except StorageError:
                log.warning(
                    "redundant package version kept",
                    extra={"document_id": document_id, "version_id": encrypted.version_id},
                )
        kept = p.blobs.stat(
            record.encrypted_bucket or encrypted.bucket,
            record.encrypted_key or encrypted.key,
            winner,
        )
        _check_package(p, document_id, kept)  # the committed package, read back too
    # The committed package must stay readable: its key may not have been revoked meanwhile.
    _require_key(p, record.key_id, Purpose.DECRYPT)
    deleted = _delete_plaintext(p, source)
    if deleted:
        p.documents.mark_plaintext_deleted(document_id)
    lost = 0
    if stored_now:
        # Announced once, by the execution that committed it; after the commit, so a lost
        # event never loses a document (docs/CONTRACTS.md, "Completion events").
        lost = announce(p.events, document_encrypted(p.documents.get(document_id) or record))
    return StoreResult(outcome, kept, deleted, lost)


def _require_key(p: Pipeline, key_id: str | None, purpose: Purpose) -> None:
    """Raise KeyNotUsableError unless ``key_id``'s status (read now) allows ``purpose``."""
    if not key_id:
        raise KeyNotUsableError("the document has no key recorded")
    try:
        p.keys.get_key(key_id).require(purpose)
    except KeyNotFoundError:
        raise KeyNotUsableError(f"key {key_id} does not exist") from None


def _check_package(p: Pipeline, document_id: str, encrypted: ObjectInfo) -> DocumentRecord:
    """Re-read the package header: it must name this document and the recorded key."""
    record = p.documents.get(document_id)
    if record is None:
        raise DocumentNotFoundError(f"no document {document_id}")
    src = p.blobs.open_read(encrypted.bucket, encrypted.key, encrypted.version_id)
    try:
        key_id, package_document_id = p.cipher.package_ids(src)
    finally:
        src.close()
    if package_document_id != document_id or key_id != record.key_id:
        raise StorageError("the encrypted object is not this document's package")
    return record


def _delete_plaintext(p: Pipeline, source: SourceRef) -> bool:
    if source.version_id and source.version_id != "null":
        p.blobs.delete_version(source.bucket, source.key, source.version_id)
        return True
    # Unversioned bucket: delete only if the key still holds the object we encrypted.
    try:
        info = p.blobs.stat(source.bucket, source.key)
    except DocumentNotFoundError:
        return True
    if source.etag and info.etag != source.etag:
        log.warning("upload replaced since the event; leaving the newer object in place")
        return False
    p.blobs.delete_version(source.bucket, source.key, None)
    return True


def audit_ingest(
    p: Pipeline,
    document_id: str,
    outcome: str,
    *,
    request_id: str | None = None,
    uploaded_by: Mapping[str, str] | None = None,
) -> int:
    """One audit row per execution; details.result says `stored` (this execution committed
    the document) or `duplicate` (a replay found it done); details name the tenant and what
    the S3 event said about the uploader (``requester``, ``source_ip``)."""
    record = p.documents.get(document_id)
    if record is None:
        raise DocumentNotFoundError(f"no document {document_id}")
    return p.audit.append(
        operation=OP_ENCRYPT,
        outcome=AuditOutcome.SUCCESS,
        document_id=document_id,
        key_id=record.key_id,
        request_id=request_id,
        details={
            "result": str(outcome),
            "source_bucket": record.source_bucket,
            "source_key": record.source_key,
            "source_version_id": record.source_version_id,
            "encrypted_key": record.encrypted_key,
            "encrypted_version_id": record.encrypted_version_id,
            "plaintext_size": record.plaintext_size,
            "encrypted_size": record.encrypted_size,
            "suite": record.suite,
            "tenant": record.tenant,
            **{k: v for k, v in (uploaded_by or {}).items() if k in ("requester", "source_ip")},
        },
    )


#: Executions started before the workflow named the failed step: the last result present.
_STEP_BY_RESULT = (
    ("stored", IngestStep.AUDIT),
    ("encrypted", IngestStep.STORE),
    ("key", IngestStep.ENCRYPT),
    ("document", IngestStep.SELECT_KEY),
)


def failed_step(state: Mapping[str, Any]) -> IngestStep:
    """The Task that failed: ``failed_step`` as the workflow's Catch names it; for an
    execution started under an older definition, inferred from the results present."""
    named = state.get("failed_step")
    if isinstance(named, str) and named in {step.value for step in IngestStep}:
        return IngestStep(named)
    return next((s for k, s in _STEP_BY_RESULT if k in state), IngestStep.FETCH)


def record_failure(
    p: Pipeline, state: Mapping[str, Any], *, request_id: str | None = None
) -> FailureReport:
    """The Catch path: keep the upload (tagged), mark the row failed, audit the failure.

    ``state`` is the workflow state at the failure (ingest_steps.FailureRequest): the
    original event, the results of the steps that completed, ``error`` ({Error, Cause}) from
    the Catch and ``failed_step``.
    """
    raw_error = state.get("error")
    error: Mapping[str, Any] = raw_error if isinstance(raw_error, Mapping) else {}
    error_type = str(error.get("Error", "Unknown"))[:200]
    step = failed_step(state)

    document = state.get("document") if isinstance(state.get("document"), Mapping) else None
    source: SourceRef | None = None
    document_id: str | None = None
    if document is not None:
        document_id = str(document.get("document_id")) or None
        try:
            source = SourceRef.from_dict(document.get("source") or {})
        except InvalidEventError:
            source = None
    else:
        try:
            source = parse_object_created(state, uploads_bucket=p.settings.storage.uploads_bucket)
        except PQFileError:
            source = None  # a foreign or malformed event: touch nothing

    tagged = False
    if source is not None and source.bucket == p.settings.storage.uploads_bucket:
        try:
            p.blobs.tag_version(
                source.bucket,
                source.key,
                source.version_id,
                {FAILED_TAG: "failed", "pqfile-error": _tag_value(error_type)},
            )
            tagged = True
        except DocumentNotFoundError:
            tagged = False  # nothing left to keep
    # The row (never a stored one) and its audit row change together (document_record_failure).
    seq = p.documents.record_failure(
        document_id,
        error=f"{step}: {error_type}",
        request_id=request_id,
        details={
            "step": step.value,
            "error": error_type,
            "source_bucket": source.bucket if source else None,
            "source_key": source.key if source else None,
            "source_version_id": source.version_id if source else None,
            "upload_kept": tagged,
        },
    )
    lost = announce(
        p.events,
        document_failed(
            document_id=document_id,
            tenant=tenant_of(source.key) if source else None,
            source=(
                {"bucket": source.bucket, "key": source.key, "version_id": source.version_id}
                if source
                else None
            ),
            step=step.value,
            error_type=error_type,
        ),
    )
    return FailureReport(step, error_type, document_id, tagged, seq, lost)


def _tag_value(value: str) -> str:
    # S3 tag values: letters, digits, spaces and + - = . _ : / @, at most 256 characters.
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 +-=._:/@")
    return "".join(c if c in allowed else "_" for c in value)[:256]
