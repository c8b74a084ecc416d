"""Key rotation: keep the pool full, queue old keys, rewrap their documents, expire them.

The scheduled workflow (statemachines/rotate-keys.asl.json) runs these use cases in order:

1. :func:`maintain_pool` queues every active key past its age or usage caps, refills each
   configured suite to its target, and lists the rotation runs to work on (queued and
   still-running ones, so an interrupted rotation is resumed by the next execution).
2. :func:`plan_rewrap` starts a run (picks the new key: the least-used active key of the
   same suite) and returns the next batch of documents still on the old key.
3. :func:`rewrap_document` moves one document: the package header is rewrapped from the
   old key to the new one (the data key is unchanged, so the body is copied byte for byte,
   never re-encrypted), written as a new version of the same object, verified, and only
   then is the documents row pointed at the new key and version (``document.rewrap``).
4. :func:`finish_rotation` expires the old key once no document uses it any more.

Crash safety: the documents row names the exact object version it was committed with, and
that version is never modified, so the old package stays readable until the row moves. A
crash between the write and the row update leaves an unreferenced new version behind; the
retry rewraps the committed version again and commits that one. A concurrent writer is
detected by the conditional write (``If-Match`` on the object's current ETag) and reported
as a ``TransientError`` for Step Functions to retry.

Pure: depends only on the ports below (the Postgres key store, S3 in handlers/rotate.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pqfile.crypto import envelope
from pqfile.errors import (
    DecryptionError,
    DocumentNotFoundError,
    InvalidEventError,
    MalformedPackageError,
    PQFileError,
    StorageError,
    TransientError,
)
from pqfile.format.header import FIXED_SIZE, header_size, parse_header
from pqfile.keys.model import Purpose
from pqfile.ports import AuditLog, DocumentRecord, ObjectInfo

if TYPE_CHECKING:
    from pqfile.crypto.kem import PublicKey, SecretKey

#: The actor rotation writes into audit rows.
ROTATION_ACTOR = "pqfile-rotate"
OP_REWRAP = "document.rewrap"
OP_MAINTAIN = "key.pool_maintained"


class RotationIncompleteError(PQFileError):
    """The old key still has documents: it keeps decrypting, the run stays open."""


# --- ports -----------------------------------------------------------------------------------


class RotationRunView(Protocol):
    """One rotation run (a row of ``key_rotations``)."""

    @property
    def rotation_id(self) -> int: ...

    @property
    def old_key_id(self) -> str: ...

    @property
    def new_key_id(self) -> str | None: ...

    @property
    def status(self) -> str: ...

    @property
    def documents_total(self) -> int: ...

    @property
    def documents_rewrapped(self) -> int: ...


class KeyView(Protocol):
    @property
    def key_id(self) -> str: ...

    @property
    def suite(self) -> str: ...


class RotationKeyStore(Protocol):
    """What rotation needs of the key store (adapters/postgres.py PostgresKeyStore, with the
    pqfile_rotate role). Every lifecycle change it makes is audited by the store."""

    def get_key(self, key_id: str) -> KeyView: ...

    def refill(
        self, suite: str, *, actor: str | None = None, request_id: str | None = None
    ) -> Sequence[object]: ...

    def queue_due_for_rotation(
        self, *, actor: str | None = None, request_id: str | None = None
    ) -> list[tuple[str, str]]: ...

    def rotations(self, status: str | None = None) -> Sequence[RotationRunView]: ...

    def begin_rotation(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRunView:
        """Start a queued run (choose the new key); a started run is returned unchanged."""
        ...

    def documents_on_key(self, key_id: str, limit: int = 100) -> list[str]: ...

    def record_rewrap(
        self,
        rotation_id: int,
        document_id: str,
        *,
        encrypted_version_id: str | None,
        encrypted_size: int,
        actor: str | None = None,
        request_id: str | None = None,
    ) -> bool:
        """Point the document at the run's new key (audited); False if already moved."""
        ...

    def finish_rotation(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRunView: ...

    def load_secret_key(self, key_id: str, purpose: Purpose = Purpose.DECRYPT) -> SecretKey: ...

    def public_key(self, key_id: str) -> PublicKey: ...


class DocumentReader(Protocol):
    def get(self, document_id: str) -> DocumentRecord | None: ...


class PackageStore(Protocol):
    """Object access rotation needs: ranged reads, and a new version with a new head."""

    def stat(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo: ...

    def read_range(
        self, bucket: str, key: str, version_id: str | None, start: int, length: int
    ) -> bytes:
        """``length`` bytes from ``start`` of one object version (fewer only at its end)."""
        ...

    def replace_head(
        self,
        bucket: str,
        key: str,
        *,
        source: ObjectInfo,
        body_offset: int,
        new_head: bytes,
        if_match: str,
    ) -> ObjectInfo:
        """Write a new version of ``key``: ``new_head`` then ``source``'s bytes from
        ``body_offset`` on, copied unchanged. Written only if the object's current ETag is
        still ``if_match``; otherwise raise TransientError (a concurrent change)."""
        ...


# --- wiring ----------------------------------------------------------------------------------


@dataclass
class Rotation:
    """Everything the rotation use cases need, injected."""

    keys: RotationKeyStore
    documents: DocumentReader
    packages: PackageStore
    audit: AuditLog
    encrypted_bucket: str
    #: Suites whose pool is kept at its target (suites of queued keys are refilled too).
    suites: tuple[str, ...] = ("xwing",)
    #: Documents per PlanRewrap batch (one Map state's items).
    batch_size: int = 100
    actor: str = ROTATION_ACTOR


def _run_dict(run: RotationRunView) -> dict[str, Any]:
    return {
        "rotation_id": run.rotation_id,
        "old_key_id": run.old_key_id,
        "new_key_id": run.new_key_id,
        "status": run.status,
    }


# --- 1. pool maintenance ---------------------------------------------------------------------


def maintain_pool(r: Rotation, *, request_id: str | None = None) -> dict[str, Any]:
    """Queue keys due for rotation, refill the pools, list the runs to work on."""
    queued = r.keys.queue_due_for_rotation(actor=r.actor, request_id=request_id)
    runs = [*r.keys.rotations("running"), *r.keys.rotations("queued")]
    suites = list(r.suites)
    for run in runs:  # the rotation target must exist: refill the old key's suite too
        suite = r.keys.get_key(run.old_key_id).suite
        if suite not in suites:
            suites.append(suite)
    created: dict[str, int] = {}
    for suite in suites:
        created[suite] = len(r.keys.refill(suite, actor=r.actor, request_id=request_id))
    r.audit.append(
        operation=OP_MAINTAIN,
        outcome="success",
        actor=r.actor,
        request_id=request_id,
        details={
            "queued": [k for k, _ in queued],
            "created": created,
            "rotations": [run.rotation_id for run in runs],
        },
    )
    return {
        "queued": [{"key_id": k, "reason": reason} for k, reason in queued],
        "created": created,
        "rotations": [_run_dict(run) for run in runs],
    }


# --- 2. planning -----------------------------------------------------------------------------


def plan_rewrap(r: Rotation, rotation_id: int, *, request_id: str | None = None) -> dict[str, Any]:
    """Start the run if needed; return the next batch of documents on its old key.

    ``more`` is true when the batch is full and holds work, so the workflow plans again
    after it (documents leave the list as they are rewrapped). Documents without a stored
    package (an ingest still in flight, or one that failed) are left out: they cannot be
    rewrapped, and they keep the old key from expiring until they are stored or removed.
    """
    run = r.keys.begin_rotation(rotation_id, actor=r.actor, request_id=request_id)
    if run.status != "running" or run.new_key_id is None:
        return {**_run_dict(run), "documents": [], "more": False, "skipped": 0}
    ids = r.keys.documents_on_key(run.old_key_id, limit=r.batch_size)
    items: list[dict[str, Any]] = []
    skipped = 0
    for document_id in ids:
        record = r.documents.get(document_id)
        if record is None or record.status != "stored" or not record.encrypted_key:
            skipped += 1
            continue
        items.append({"rotation_id": run.rotation_id, "document_id": document_id})
    return {
        **_run_dict(run),
        "documents": items,
        "more": len(ids) >= r.batch_size and bool(items),
        "skipped": skipped,
    }


# --- 3. rewrap one document ------------------------------------------------------------------


@dataclass(frozen=True)
class RewrapResult:
    document_id: str
    outcome: str  # rewrapped | already_rewrapped | not_on_old_key
    key_id: str | None
    version_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "outcome": self.outcome,
            "key_id": self.key_id,
            "version_id": self.version_id,
        }


def rewrap_document(
    r: Rotation, rotation_id: int, document_id: str, *, request_id: str | None = None
) -> RewrapResult:
    """Move one document of a running rotation onto the run's new key. Idempotent."""
    run = r.keys.begin_rotation(rotation_id, actor=r.actor, request_id=request_id)
    record = r.documents.get(document_id)
    if record is None:
        raise DocumentNotFoundError(f"no document {document_id}")
    if run.new_key_id is not None and record.key_id == run.new_key_id:
        return RewrapResult(document_id, "already_rewrapped", record.key_id,
                            record.encrypted_version_id)  # fmt: skip
    if record.key_id != run.old_key_id:
        return RewrapResult(document_id, "not_on_old_key", record.key_id)
    if run.status != "running" or run.new_key_id is None:
        raise PQFileError(f"rotation run {rotation_id} is {run.status}, not running")
    try:
        written = _rewrite_package(r, run.old_key_id, run.new_key_id, record)
    except PQFileError as exc:
        if not isinstance(exc, TransientError):
            r.audit.append(
                operation=OP_REWRAP,
                outcome="failure",
                actor=r.actor,
                document_id=document_id,
                key_id=run.old_key_id,
                request_id=request_id,
                details={"rotation_id": rotation_id, "reason": type(exc).__name__},
            )
        raise
    moved = r.keys.record_rewrap(
        rotation_id,
        document_id,
        encrypted_version_id=written.version_id,
        encrypted_size=written.size,
        actor=r.actor,
        request_id=request_id,
    )
    if not moved:  # a concurrent worker committed its own (equally valid) version first
        current = r.documents.get(document_id)
        return RewrapResult(
            document_id,
            "already_rewrapped",
            current.key_id if current else None,
            current.encrypted_version_id if current else None,
        )
    return RewrapResult(document_id, "rewrapped", run.new_key_id, written.version_id)


def _rewrite_package(
    r: Rotation, old_key_id: str, new_key_id: str, record: DocumentRecord
) -> ObjectInfo:
    bucket = record.encrypted_bucket or r.encrypted_bucket
    key = record.encrypted_key
    if not key:
        raise DocumentNotFoundError(f"document {record.document_id} has no package")
    version = record.encrypted_version_id
    # The committed version: its identity and size (never modified by this function).
    source = r.packages.stat(bucket, key, version)
    prefix = r.packages.read_range(bucket, key, version, 0, FIXED_SIZE)
    size = header_size(prefix)
    if size > source.size:
        raise MalformedPackageError("the package is shorter than its header")
    head = prefix if size == len(prefix) else r.packages.read_range(bucket, key, version, 0, size)
    if len(head) != size:
        raise MalformedPackageError("the package is shorter than its header")
    header = parse_header(head)
    if header.key_id != old_key_id or header.document_id != record.document_id.encode():
        raise DecryptionError()  # the package is not the one the row describes
    old_secret = r.keys.load_secret_key(old_key_id, Purpose.REWRAP)
    new_public = r.keys.public_key(new_key_id)
    if new_public.suite is not header.suite:
        raise PQFileError("a rotation moves a document to a key of the same suite")
    new_head = envelope.rewrap_header(head, old_secret, new_public)  # verifies the old header
    # The conditional write detects any change to the object after this point.
    current = r.packages.stat(bucket, key)
    written = r.packages.replace_head(
        bucket, key, source=source, body_offset=size, new_head=new_head, if_match=current.etag
    )
    _verify(r, written, new_key_id, new_head, expected_size=source.size - size + len(new_head))
    return written


def _verify(
    r: Rotation, written: ObjectInfo, new_key_id: str, new_head: bytes, *, expected_size: int
) -> None:
    """Read the new version back: its size, its header bytes, and the header opens with the
    new key. Only then may the row move."""
    info = r.packages.stat(written.bucket, written.key, written.version_id)
    if info.size != expected_size:
        raise StorageError("the rewrapped package has the wrong size")
    head = r.packages.read_range(written.bucket, written.key, written.version_id, 0, len(new_head))
    if head != new_head:
        raise StorageError("the rewrapped package's header did not read back")
    secret = r.keys.load_secret_key(new_key_id, Purpose.REWRAP)
    envelope.open_header(parse_header(head), secret)


# --- 4. finish -------------------------------------------------------------------------------


def finish_rotation(
    r: Rotation, rotation_id: int, *, request_id: str | None = None
) -> dict[str, Any]:
    """Expire the old key when no document uses it; refuse (run left open) otherwise."""
    run = r.keys.begin_rotation(rotation_id, actor=r.actor, request_id=request_id)
    if run.status != "running":
        return {**_run_dict(run), "documents_rewrapped": run.documents_rewrapped}
    left = r.keys.documents_on_key(run.old_key_id, limit=1)
    if left:
        raise RotationIncompleteError(
            f"rotation run {rotation_id}: documents still use key {run.old_key_id}"
        )
    done = r.keys.finish_rotation(rotation_id, actor=r.actor, request_id=request_id)
    if done.status != "completed":
        raise RotationIncompleteError(f"rotation run {rotation_id} is {done.status}")
    return {**_run_dict(done), "documents_rewrapped": done.documents_rewrapped}


def rotation_id_from(event: Mapping[str, Any]) -> int:
    """The run id of a workflow event (``{"rotation_id": N, ...}``)."""
    value = event.get("rotation_id") if isinstance(event, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidEventError("rotation_id is missing")
    try:
        return int(value)
    except ValueError:
        raise InvalidEventError("rotation_id must be an integer") from None
