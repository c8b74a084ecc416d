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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pqfile.crypto.kem import Suite
from pqfile.errors import (
    DocumentNotFoundError,
    InvalidEventError,
    KeyNotFoundError,
    KeyNotUsableError,
    NoActiveKeyError,
    PQFileError,
    StorageError,
)
from pqfile.keys.model import KeyStatus, Purpose
from pqfile.ports import AuditOutcome, DocumentRecord, DocumentStatus, ObjectInfo
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
    tenant_of,
    uploader_of,
)
from pqfile.usecases.ingest_steps import (
    DEFAULT_CONTENT_TYPE,
    FailureReport,
    FetchResult,
    FetchStatus,
    IngestStep,
    KeyChoice,
    StoreOutcome,
    StoreResult,
)
from pqfile.usecases.notices import announce, document_encrypted, document_failed
from pqfile.usecases.parts import check_document_size, plan_parts

log = logging.getLogger(__name__)

#: Audit operation names of the pipeline (outcomes: success, failure, refused).
OP_ENCRYPT = "document.encrypt"
OP_DECRYPT = "document.decrypt"

#: The encryption-context entry that records the upload's content type (authenticated).
CONTENT_TYPE_CONTEXT = "pqfile:content-type"

#: Tags put on an upload whose ingest failed (kept for a re-run; see docs/OPERATIONS.md).
FAILED_TAG = "pqfile-status"


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

    Memory is bounded by one body segment plus one multipart part, whatever the size.
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
    try:
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
    # Parts large enough that S3's 10,000-part limit never cuts the package short.
    plan = plan_parts(
        source.size if source.size is not None else record.plaintext_size or 0,
        segment_size=p.settings.encryption.segment_size,
        preferred_part_size=s.part_size,
    )
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
