"""Key rotation: keep the pool full, queue old keys, rewrap their documents, expire them.

The scheduled workflow (statemachines/rotate-keys.asl.json) runs these use cases in order:

1. :func:`maintain_pool` queues every active key past its age or usage caps, refills each
   configured suite to its target, and lists the rotation runs to work on (queued and
   still-running ones, so an interrupted rotation is resumed by the next execution).
2. :func:`plan_rewrap` starts a run (checks its target suite, picks a first new key: the
   least-used active key of that suite whose attestation verifies), takes the next batch of
   documents on the old key after the execution's cursor, gives each a target key (spread
   over the suite's pool, least used first, as ingest picks keys) and writes the batch as a
   JSON manifest to S3: the items of the workflow's distributed Map.
3. :func:`rewrap_document` moves one document: the package header is rewrapped from the
   old key to the target key (the data key is unchanged, so the body is copied byte for
   byte, never re-encrypted; the suite may change within a hash family), written as a new
   version of the same object, verified, and only then is the documents row pointed at the
   new key and version (``document.rewrap``, both suites in its details). The same step
   RE-ENCRYPTS instead (``keys.rotation_runs.choose_move``, decided per document from the
   package header's KDF byte) when the old key has a pending compromise (a rewrap would
   keep the data key it may have exposed) or when the target suite needs a key schedule
   the package lacks (a SHA-256 package into the CNSA suite): the committed version is
   streamed through ``envelope.reencrypt_stream`` (a fresh data key) into a new version
   written in bounded parts (``PackageStore.rewrite``), verified the same way, and the row
   moves with ``document.reencrypt``.
4. :func:`finish_rotation` expires the old key once no document uses it any more, and
   completes an operator's pending revocation of it (the workflow never starts one).

Each step runs as its function's own database role (pqfile_maintain, pqfile_rewrap): the
database records that role as the actor of every audit row, so nothing here names one.

Restarts: a stopped execution leaves the run ``running``; the next one resumes it, and its
plan lists only documents still on the old key, so nothing is skipped, and a document is
moved once (the row moves only from the old key; a rewrap of a document already moved is
answered ``already_rewrapped`` or ``not_on_old_key`` without writing).

Crash safety: the documents row names the exact object version it was committed with, and
that version is never modified, so the old package stays readable until the row moves. A
crash between the write and the row update leaves an unreferenced new version behind; the
retry rewraps the committed version again and commits that one. A concurrent writer is
detected by the conditional write (``If-Match`` on the object's current ETag) and reported
as a ``TransientError`` for Step Functions to retry.

Pure: depends only on ports (pqfile.ports: RotationKeyStore, PackageStore, DocumentReader,
AuditLog); what the steps take and return is in pqfile.usecases.rotation_steps.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from pqfile.config import (
    DEFAULT_REWRAP_BATCH,
    DEFAULT_REWRAP_CONCURRENCY,
    DEFAULT_SUITE,
    ROTATION_MANIFESTS_PREFIX,
)
from pqfile.crypto import envelope
from pqfile.crypto.kem import PublicKey
from pqfile.errors import (
    DecryptionError,
    DocumentNotFoundError,
    KeyNotUsableError,
    MalformedPackageError,
    PQFileError,
    StorageError,
    TransientError,
)
from pqfile.format.header import FIXED_SIZE, Header, header_size, parse_header
from pqfile.keys.model import Purpose
from pqfile.keys.rotation_runs import Move, check_suite_move, choose_move
from pqfile.ports import (
    AuditLog,
    AuditOutcome,
    DocumentReader,
    DocumentRecord,
    EventPublisher,
    ManifestStore,
    ObjectInfo,
    PackageStore,
    RotationKeyStore,
    RotationRunView,
    RotationStatus,
    Writable,
)
from pqfile.usecases.notices import NoEvents, RevocationMode, announce, key_revoked
from pqfile.usecases.rotation_steps import (
    FinishResult,
    MaintainResult,
    Manifest,
    PlanResult,
    QueuedKey,
    RewrapItem,
    RewrapOutcome,
    RewrapResult,
    RotationFailure,
    RunSummary,
)

OP_REWRAP = "document.rewrap"
OP_REENCRYPT = "document.reencrypt"
OP_MAINTAIN = "key.pool_maintained"
OP_FAILED = "key.rotation_failed"


class RotationIncompleteError(PQFileError):
    """The old key still has documents: it keeps decrypting, the run stays open."""


# --- wiring ----------------------------------------------------------------------------------


@dataclass
class Rotation:
    """Everything the rotation use cases need, injected."""

    keys: RotationKeyStore
    documents: DocumentReader
    packages: PackageStore
    audit: AuditLog
    encrypted_bucket: str
    #: Where PlanRewrap writes its batch manifests (in ``encrypted_bucket``).
    manifests: ManifestStore | None = None
    #: Suites whose pool is kept at its target (suites of queued keys are refilled too).
    suites: tuple[str, ...] = (DEFAULT_SUITE,)
    #: Documents per PlanRewrap batch (one manifest: one distributed Map run's items).
    batch_size: int = DEFAULT_REWRAP_BATCH
    #: Child executions the distributed Map runs at once (its MaxConcurrencyPath).
    concurrency: int = DEFAULT_REWRAP_CONCURRENCY
    #: `PQFile Key Revoked` when a pending revocation completes (docs/CONTRACTS.md).
    events: EventPublisher = field(default_factory=NoEvents)


# --- 1. pool maintenance ---------------------------------------------------------------------


def maintain_pool(r: Rotation, *, request_id: str | None = None) -> MaintainResult:
    """Queue keys due for rotation, refill the pools, list the runs to work on."""
    queued = r.keys.queue_due_for_rotation(request_id=request_id)
    runs = [*r.keys.rotations(RotationStatus.RUNNING), *r.keys.rotations(RotationStatus.QUEUED)]
    suites = list(r.suites)
    for run in runs:  # the rotation target must exist: refill each run's target suite too
        suite = run.to_suite or r.keys.get_key(run.old_key_id).suite
        if suite not in suites:
            suites.append(suite)
    created: dict[str, int] = {}
    for suite in suites:
        created[suite] = len(r.keys.refill(suite, request_id=request_id))
    r.audit.append(
        operation=OP_MAINTAIN,
        outcome=AuditOutcome.SUCCESS,
        request_id=request_id,
        details={
            "queued": [k for k, _ in queued],
            "created": created,
            "rotations": [run.rotation_id for run in runs],
        },
    )
    counts = r.keys.status_summary()["suites"]
    return MaintainResult(
        queued=[QueuedKey(k, reason) for k, reason in queued],
        created=created,
        rotations=[RunSummary.of(run) for run in runs],
        active={s: int(counts.get(s, {}).get("counts", {}).get("active", 0)) for s in created},
    )


# --- 2. planning -----------------------------------------------------------------------------


def plan_rewrap(
    r: Rotation, rotation_id: int, *, after: str | None = None, request_id: str | None = None
) -> PlanResult:
    """Start the run if needed; write the next batch of its documents, after the cursor
    ``after`` (None: from the first), as a manifest with a target key per document.

    ``more`` is true when the batch is full: the workflow plans again from the returned
    cursor, so each document is planned once per execution. Documents without a stored
    package (an ingest still in flight, or one that failed) are left out: they cannot be
    rewrapped, and they keep the old key from expiring until they are stored or removed.
    """
    run = r.keys.begin_rotation(rotation_id, request_id=request_id)
    if run.status != RotationStatus.RUNNING or run.new_key_id is None:
        # (finished meanwhile, e.g. by another execution) an empty manifest: the Map has
        # nothing to do and FinishRotation reports the run as it is
        return PlanResult(RunSummary.of(run), _write_manifest(r, run.rotation_id, []), 0,
                          more=False, after=after, skipped=0,
                          concurrency=r.concurrency)  # fmt: skip
    rows = r.keys.documents_to_rewrap(run.old_key_id, after=after, limit=r.batch_size)
    stored = [document_id for document_id, ok in rows if ok]
    targets = r.keys.rewrap_targets(run.rotation_id, len(stored))
    items = [RewrapItem(run.rotation_id, d, t) for d, t in zip(stored, targets, strict=True)]
    manifest = _write_manifest(r, run.rotation_id, items)
    return PlanResult(
        RunSummary.of(run),
        manifest,
        len(items),
        more=len(rows) >= r.batch_size,
        after=rows[-1][0] if rows else after,
        skipped=len(rows) - len(stored),
        concurrency=r.concurrency,
    )


def _write_manifest(r: Rotation, rotation_id: int, items: list[RewrapItem]) -> Manifest:
    """The batch as a JSON array in S3 (an empty batch too: the Map then has no items)."""
    if r.manifests is None:
        raise PQFileError("no manifest store configured")
    key = f"{ROTATION_MANIFESTS_PREFIX}run-{rotation_id}/{uuid.uuid4().hex}.json"
    info = r.manifests.write_manifest(r.encrypted_bucket, key, [item.to_dict() for item in items])
    return Manifest(info.bucket, info.key)


# --- 3. rewrap one document ------------------------------------------------------------------


def rewrap_document(
    r: Rotation,
    rotation_id: int,
    document_id: str,
    *,
    target_key_id: str | None = None,
    request_id: str | None = None,
) -> RewrapResult:
    """Move one document of a running rotation onto ``target_key_id`` (the manifest's
    choice; another pool key of the run's target suite when that one no longer encrypts).
    Idempotent: a document no longer on the old key is answered without any write."""
    run = r.keys.begin_rotation(rotation_id, request_id=request_id)
    record = r.documents.get(document_id)
    if record is None:
        raise DocumentNotFoundError(f"no document {document_id}")
    if record.key_id != run.old_key_id:
        moved = record.key_id is not None and record.key_id in {target_key_id, run.new_key_id}
        return RewrapResult(
            document_id,
            RewrapOutcome.ALREADY_REWRAPPED if moved else RewrapOutcome.NOT_ON_OLD_KEY,
            record.key_id,
            record.encrypted_version_id if moved else None,
        )
    if run.status != RotationStatus.RUNNING or run.new_key_id is None:
        raise PQFileError(f"rotation run {rotation_id} is {run.status}, not running")
    move = Move.REWRAP
    try:
        new_key_id = _target_key(r, run.rotation_id, target_key_id)
        source, head = _committed_head(r, run, record)
        new_public = r.keys.attested_public_key(new_key_id, Purpose.ENCRYPT)
        # Re-encrypt after a compromise or into a key schedule the package lacks (decided
        # from its header's KDF byte); rewrap otherwise. The downgrade guard holds for both.
        check_suite_move(head.header.suite.value, new_public.suite.value,
                         allow_downgrade=run.allow_downgrade)  # fmt: skip
        move = choose_move(head.header.kdf, new_public.suite.value,
                           compromised=r.keys.key_compromised(run.old_key_id))  # fmt: skip
        if move is Move.REENCRYPT:
            written, new_kdf = _reencrypt_package(r, run, new_key_id, new_public, record, source)
        else:
            written = _rewrite_package(r, run, new_key_id, new_public, record, source, head)
    except PQFileError as exc:
        if not isinstance(exc, TransientError):
            r.audit.append(
                operation=OP_REENCRYPT if move is Move.REENCRYPT else OP_REWRAP,
                outcome=AuditOutcome.FAILURE,
                document_id=document_id,
                key_id=run.old_key_id,
                request_id=request_id,
                details={"rotation_id": rotation_id, "reason": type(exc).__name__},
            )
        raise
    if move is Move.REENCRYPT:
        moved = r.keys.record_reencrypt(
            rotation_id,
            document_id,
            new_key_id=new_key_id,
            encrypted_version_id=written.version_id,
            encrypted_size=written.size,
            from_kdf=head.header.kdf.label,
            to_kdf=new_kdf,
            request_id=request_id,
        )
    else:
        moved = r.keys.record_rewrap(
            rotation_id,
            document_id,
            new_key_id=new_key_id,
            encrypted_version_id=written.version_id,
            encrypted_size=written.size,
            request_id=request_id,
        )
    if not moved:  # a concurrent worker committed its own (equally valid) version first
        current = r.documents.get(document_id)
        return RewrapResult(
            document_id,
            RewrapOutcome.ALREADY_REWRAPPED,
            current.key_id if current else None,
            current.encrypted_version_id if current else None,
        )
    outcome = RewrapOutcome.REENCRYPTED if move is Move.REENCRYPT else RewrapOutcome.REWRAPPED
    return RewrapResult(document_id, outcome, new_key_id, written.version_id)


def _target_key(r: Rotation, rotation_id: int, planned: str | None) -> str:
    """The planned target if it still encrypts (active, attested), else a fresh pick from
    the run's target suite. Both are checked again when the row moves."""
    if planned is not None:
        try:
            r.keys.attested_public_key(planned, Purpose.ENCRYPT)
            return planned
        except KeyNotUsableError:
            pass  # queued or revoked since the plan: pick another pool key
    (chosen,) = r.keys.rewrap_targets(rotation_id, 1)
    return chosen


@dataclass(frozen=True)
class _Head:
    raw: bytes
    header: Header


def _committed_head(
    r: Rotation, run: RotationRunView, record: DocumentRecord
) -> tuple[ObjectInfo, _Head]:
    """The committed version (never modified here) and its header, checked against the row."""
    bucket = record.encrypted_bucket or r.encrypted_bucket
    key = record.encrypted_key
    if not key:
        raise DocumentNotFoundError(f"document {record.document_id} has no package")
    version = record.encrypted_version_id
    source = r.packages.stat(bucket, key, version)
    prefix = r.packages.read_range(bucket, key, version, 0, FIXED_SIZE)
    size = header_size(prefix)
    if size > source.size:
        raise MalformedPackageError("the package is shorter than its header")
    head = prefix if size == len(prefix) else r.packages.read_range(bucket, key, version, 0, size)
    if len(head) != size:
        raise MalformedPackageError("the package is shorter than its header")
    header = parse_header(head)
    if header.key_id != run.old_key_id or header.document_id != record.document_id.encode():
        raise DecryptionError()  # the package is not the one the row describes
    return source, _Head(head, header)


def _rewrite_package(
    r: Rotation,
    run: RotationRunView,
    new_key_id: str,
    new_public: PublicKey,
    record: DocumentRecord,
    source: ObjectInfo,
    head: _Head,
) -> ObjectInfo:
    """A rewrap: a new header for the same data key; the body copied inside S3."""
    old_secret = r.keys.load_secret_key(run.old_key_id, Purpose.REWRAP)
    new_head = envelope.rewrap_header(  # verifies the old header; the format's guard as well
        head.raw, old_secret, new_public, allow_downgrade=run.allow_downgrade
    )
    # The conditional write detects any change to the object after this point.
    current = r.packages.stat(source.bucket, source.key)
    written = r.packages.replace_head(
        source.bucket, source.key, source=source, body_offset=len(head.raw), new_head=new_head,
        if_match=current.etag,
    )  # fmt: skip
    _verify(r, written, new_key_id, new_head,
            expected_size=source.size - len(head.raw) + len(new_head))  # fmt: skip
    return written


def _reencrypt_package(
    r: Rotation,
    run: RotationRunView,
    new_key_id: str,
    new_public: PublicKey,
    record: DocumentRecord,
    source: ObjectInfo,
) -> tuple[ObjectInfo, str]:
    """A re-encryption: the committed version streamed through
    envelope.reencrypt_stream (a fresh data key, the new suite's key schedule) into a new
    version written in bounded parts; read back and verified before the row may move.
    Returns the new version and its KDF label."""
    old_secret = r.keys.load_secret_key(run.old_key_id, Purpose.REWRAP)
    result: list[envelope.EncryptResult] = []

    def transform(src: envelope.BinarySource, dst: Writable) -> None:
        result.append(envelope.reencrypt_stream(
            src, dst, old_secret, new_public, allow_downgrade=run.allow_downgrade,
            expected_document_id=record.document_id,
        ))  # fmt: skip

    current = r.packages.stat(source.bucket, source.key)
    written = r.packages.rewrite(
        source.bucket, source.key, source=source, transform=transform, if_match=current.etag
    )
    (done,) = result
    new_head = done.header.to_bytes()
    _verify(r, written, new_key_id, new_head, expected_size=done.package_size)
    return written, done.header.kdf.label


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
) -> FinishResult:
    """Expire the old key when no document uses it; refuse (run left open) otherwise.
    Then complete any pending revocation an operator requested for the old key."""
    run = r.keys.begin_rotation(rotation_id, request_id=request_id)
    if run.status == RotationStatus.RUNNING:
        left = r.keys.documents_on_key(run.old_key_id, limit=1)
        if left:
            raise RotationIncompleteError(
                f"rotation run {rotation_id}: documents still use key {run.old_key_id}"
            )
        run = r.keys.finish_rotation(rotation_id, request_id=request_id)
        if run.status != RotationStatus.COMPLETED:
            raise RotationIncompleteError(f"rotation run {rotation_id} is {run.status}")
    lost = 0
    if run.status == RotationStatus.COMPLETED:  # (a re-run completes what a crash left)
        if r.keys.complete_requests(run.old_key_id, request_id=request_id):
            suite = r.keys.get_key(run.old_key_id).suite
            lost = announce(
                r.events,
                key_revoked(key_id=run.old_key_id, suite=suite, mode=RevocationMode.PENDING),
            )
    return FinishResult(RunSummary.of(run), run.documents_rewrapped, lost)


# --- the Catch path --------------------------------------------------------------------------


def record_rotation_failure(r: Rotation, failure: RotationFailure) -> int:
    """Audit a failed step of the workflow (its error type only, never its message)."""
    return r.audit.append(
        operation=OP_FAILED,
        outcome=AuditOutcome.FAILURE,
        request_id=failure.execution,
        details={"error": failure.error_type, "rotation_id": failure.rotation_id},
    )
