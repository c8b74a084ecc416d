"""Ports: every Protocol the use cases depend on, and the values that cross them.

Adapters (``pqfile.adapters``) implement them on AWS and PostgreSQL; the functional tests
implement them in memory. The composition root (``pqfile.wiring``) picks the adapters.
Read this file first: it is the whole surface between the workflows and the outside world.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:
    from pqfile.crypto.kem import PublicKey, SecretKey, Suite
    from pqfile.keys.model import KeyRecord, Purpose


# --- workflow states ---------------------------------------------------------------------------


class DocumentStatus(enum.StrEnum):
    """``documents.status`` (sql/migrations/0003_documents.sql)."""

    PENDING = "pending"  # FetchDocument opened the row; not encrypted yet
    STORED = "stored"  # the package is committed; the plaintext is (being) deleted
    FAILED = "failed"  # RecordFailure marked it; the upload is kept for a re-run


class RotationStatus(enum.StrEnum):
    """``key_rotations.status`` (sql/migrations/0002_keys.sql)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class AuditOutcome(enum.StrEnum):
    """``access_logs.outcome`` (sql/migrations/0004_audit.sql)."""

    SUCCESS = "success"
    FAILURE = "failure"
    REFUSED = "refused"
    #: retrieve's row committed before any decryption (sql/migrations/0011); the outcome
    #: row follows.
    ATTEMPT = "attempt"


# --- objects (S3) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD (or a completed write) tells about one object version."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None = None
    content_type: str = "application/octet-stream"


class ObjectWriter(Protocol):
    def write(self, data: bytes) -> int: ...

    def complete(self) -> ObjectInfo:
        """Finish the upload and return the new object version."""
        ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    """Object storage (adapters/s3.py). Raises DocumentNotFoundError, TransientError or
    StorageError."""

    def open_read(self, bucket: str, key: str, version_id: str | None = None) -> BinaryIO: ...

    def stat(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo: ...

    def open_write(
        self, bucket: str, key: str, *, content_type: str, kms_key_id: str | None = None
    ) -> ObjectWriter:
        """A streaming writer (multipart upload, bounded memory); abort() on failure."""
        ...

    def delete_version(self, bucket: str, key: str, version_id: str | None) -> None: ...

    def presign_get(self, bucket: str, key: str, version_id: str | None, seconds: int) -> str: ...

    def tag_version(
        self, bucket: str, key: str, version_id: str | None, tags: Mapping[str, str]
    ) -> None: ...


class PackageStore(Protocol):
    """Object access rotation needs (adapters/s3_rewrap.py): ranged reads, and a new
    version with a new head."""

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


# --- the PQF cipher ----------------------------------------------------------------------------


class Writable(Protocol):
    """What encrypt_stream/decrypt_stream write to (they pass memoryviews of reused buffers)."""

    def write(self, data: Any, /) -> Any: ...


class PackageCipher(Protocol):
    """Streaming PQF encryption (docs/FORMAT.md); adapters/cipher.py is pqfile.crypto's."""

    def encrypt_stream(
        self,
        src: BinaryIO,
        dst: Writable,
        recipient: PublicKey,
        context: Mapping[str, str],
        *,
        segment_size: int,
        document_id: str,
    ) -> object: ...

    def decrypt_stream(
        self, src: BinaryIO, dst: Writable, identity: SecretKey, *, document_id: str | None
    ) -> object:
        """Write the plaintext; raise DecryptionError (opaque) if anything fails to verify."""
        ...

    def package_ids(self, src: BinaryIO) -> tuple[str, str]:
        """(key id, document id) from a package's header; needs no key, reads the header only."""
        ...


# --- custody and audit -------------------------------------------------------------------------


class SeedProtector(Protocol):
    """Wraps/unwraps secret key seeds (AWS KMS in production)."""

    def wrap(self, seed: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        """Return (wrapped_seed, kms_key_arn). The context must be given again to unwrap."""
        ...

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """Return the seed; raise pqfile.errors.CustodyError on any refusal."""
        ...


class KeyAttestor(Protocol):
    """MACs over a key's identity (keys/attestation.py; AWS KMS HMAC in production): only
    the key-maintenance function may generate them, the functions that encrypt verify them."""

    def generate(self, message: bytes) -> bytes:
        """The MAC of ``message``; raise CustodyError or TransientError."""
        ...

    def verify(self, message: bytes, mac: bytes) -> bool:
        """Whether ``mac`` is the MAC of ``message`` (a wrong MAC is False, not an error)."""
        ...


class AuditLog(Protocol):
    """Append-only, hash-chained audit trail.

    The database decides who the actor is (docs/KEYS.md, "Roles and grants"): a function
    role is recorded as itself, so functions pass ``actor=None``; only retrieve may name a
    verified principal ARN; a person's claimed name is kept as the detail ``claimed_by``.
    Each role may append only its own operations; details are capped (4 KiB, 1 KiB a field):
    adapters shorten what exceeds the caps before sending.
    """

    def append(
        self,
        *,
        operation: str,
        outcome: str,
        actor: str | None = None,
        document_id: str | None = None,
        key_id: str | None = None,
        request_id: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> int:
        """Append one row (``outcome`` an AuditOutcome); return its sequence number."""
        ...

    def tail(self, limit: int = 20) -> Iterator[Mapping[str, object]]: ...


# --- documents ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentRecord:
    """A row of `documents` (sql/migrations/0003_documents.sql)."""

    document_id: str
    source_bucket: str
    source_key: str
    source_version_id: str | None
    source_etag: str | None
    status: DocumentStatus
    key_id: str | None = None
    suite: str | None = None
    encrypted_bucket: str | None = None
    encrypted_key: str | None = None
    encrypted_version_id: str | None = None
    plaintext_size: int | None = None
    encrypted_size: int | None = None
    error: str | None = None
    #: The first folder under uploads/ (sql/migrations/0011; ``legacy`` for older rows).
    tenant: str | None = None

    def __post_init__(self) -> None:
        # Repositories hand over the column's text; an unknown status fails here, loudly.
        object.__setattr__(self, "status", DocumentStatus(self.status))


class DocumentReader(Protocol):
    def get(self, document_id: str) -> DocumentRecord | None: ...


class DocumentRepository(Protocol):
    """The document index. Every write is idempotent; the first writer wins. The database
    checks each transition (sql/migrations/0010: document_* functions)."""

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
    ) -> DocumentRecord:
        """Insert a `pending` row, or return the existing row for this source identity.
        ``tenant`` is the key's first folder under uploads/ (the database checks it)."""
        ...

    def get(self, document_id: str) -> DocumentRecord | None: ...

    def find_by_encrypted_object(self, bucket: str, key: str) -> DocumentRecord | None: ...

    def assign_key(self, document_id: str, key_id: str) -> DocumentRecord:
        """Give a pending (or failed) document ``key_id``: a key already on the row stays
        unless it is no longer active, then ``key_id`` replaces it. Return the row (with the
        winning key); raise KeyNotUsableError if ``key_id`` is not active and attested."""
        ...

    def mark_stored(
        self,
        document_id: str,
        *,
        encrypted_bucket: str,
        encrypted_key: str,
        encrypted_version_id: str | None,
        encrypted_size: int,
    ) -> tuple[DocumentRecord, bool]:
        """Commit status `stored` unless already stored; return (row, whether we stored it).
        Raise KeyNotUsableError when the document's key is no longer active."""
        ...

    def mark_plaintext_deleted(self, document_id: str) -> None: ...

    def record_failure(
        self,
        document_id: str | None,
        *,
        error: str,
        details: Mapping[str, object],
        request_id: str | None = None,
    ) -> int:
        """Mark the document failed (never a stored one) and append its
        ``document.encrypt``/failure audit row, in one transaction; return the row's seq."""
        ...


# --- keys --------------------------------------------------------------------------------------


class KeyStore(Protocol):
    """The key pool as the ingest and retrieve functions use it."""

    def select_encryption_key(self, suite: Suite, plaintext_size: int = 0) -> PublicKey:
        """An active, attested key of `suite`, least used first (keys whose attestation does
        not verify are skipped); raise NoActiveKeyError if none."""
        ...

    def encryption_key(self, key_id: str) -> PublicKey:
        """The public key of ``key_id`` to encrypt to: raise KeyNotUsableError unless it is
        active, CustodyError unless its attestation verifies, KeyNotFoundError."""
        ...

    def get_key(self, key_id: str) -> KeyRecord:
        """A key's row (public data); raise KeyNotFoundError."""
        ...

    def refill(
        self, suite: Suite, *, actor: str | None = None, request_id: str | None = None
    ) -> Sequence[object]:
        """Top the pool up when below its floor (wraps new seeds with KMS)."""
        ...

    def public_key(self, key_id: str) -> PublicKey:
        """The public key of any known key; raise KeyNotFoundError."""
        ...

    def load_decryption_key(self, key_id: str) -> SecretKey:
        """Unwrap a key's seed.

        Raise KeyNotFoundError, KeyNotUsableError (revoked) or CustodyError.
        """
        ...


class KeyView(Protocol):
    @property
    def key_id(self) -> str: ...

    @property
    def suite(self) -> str: ...


class RotationRunView(Protocol):
    """One rotation run (a row of ``key_rotations``); ``status`` is a RotationStatus value."""

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


class RotationKeyStore(Protocol):
    """The key pool as the rotate-keys workflow uses it (pqfile_maintain and pqfile_rewrap).
    Every lifecycle change it makes is audited by the database in the same transaction."""

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

    def load_secret_key(self, key_id: str, purpose: Purpose = ...) -> SecretKey:
        """Unwrap a key's seed for ``purpose`` (default Purpose.DECRYPT)."""
        ...

    def attested_public_key(self, key_id: str, purpose: Purpose = ...) -> PublicKey:
        """The public key of ``key_id`` once its attestation verified and its status allows
        ``purpose`` (default Purpose.ENCRYPT): the key a rewrap may encrypt to."""
        ...

    def complete_requests(
        self, key_id: str, *, actor: str | None = None, request_id: str | None = None
    ) -> list[int]:
        """Complete the operators' pending revocations of ``key_id`` once no document uses
        it (the workflow never starts one); return the ids completed."""
        ...

    def status_summary(self) -> Mapping[str, Any]:
        """Counts per suite and status: ``{"suites": {suite: {"counts": {status: n}}}}``."""
        ...


# === Key pool storage ========================================================================
# The repositories the key services in pqfile.keys run on (KeyPool, KeyCustody, RotationRuns):
# storage only, SQL in adapters/postgres/ and dicts in tests/functional/fakes.py. The services
# check early (which key, when to refill or rotate, custody, attestation); every write is
# one call to a SECURITY DEFINER function (sql/migrations/0010) that is the authority: it
# checks the transition and its invariants and appends the audit row in the same
# transaction. Refusals come back as IllegalTransitionError (PQ001), PermissionDeniedError.

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from pqfile.keys.model import KeyStatus, NewKey, SealedSeed, SelectedKey
    from pqfile.keys.rotation_runs import RotationRun


@dataclass(frozen=True)
class KeyRequest:
    """A pending operator request on a key (``key_requests``)."""

    request_id: int
    key_id: str
    kind: str  # a keys.model.RequestKind value
    reason: str
    requested_by: str


class KeyRepository(Protocol):
    """Rows of ``encryption_keys`` (and ``key_requests``). Methods marked "in a transaction"
    are meant to run on the repository of ``KeyStorage.transaction()``."""

    def now(self) -> dt.datetime:
        """The database's clock (key ages are measured on it)."""
        ...

    def take_least_used(
        self,
        suite: str,
        *,
        nbytes: int,
        max_documents: int,
        max_bytes: int,
        wait: bool,
        exclude: Sequence[str] = (),
    ) -> SelectedKey | None:
        """Count one use (and ``nbytes``) of the least-used active, attested key of ``suite``
        that is under both caps, not past its rotate_after and not in ``exclude``. Keys
        locked by concurrent callers are skipped, or waited for with ``wait``. None when no
        key was taken. The result carries the key's public key and attestation."""
        ...

    def count_selectable(
        self, suite: str, *, max_documents: int, max_bytes: int, exclude: Sequence[str] = ()
    ) -> int:
        """How many keys ``take_least_used`` could take (locked or not)."""
        ...

    def get_key(self, key_id: str) -> KeyRecord | None: ...

    def list_keys(
        self, suite: str | None = None, status: KeyStatus | None = None
    ) -> list[KeyRecord]:
        """Ordered by suite, creation time, id."""
        ...

    def sealed_seed(self, key_id: str) -> SealedSeed | None:
        """A key's suite, current status and wrapped seed (the roles that unwrap only)."""
        ...

    def status_counts(self) -> list[tuple[str, str, int, float]]:
        """(suite, status, keys, seconds since the oldest of them was created)."""
        ...

    def active_usage(self) -> list[tuple[str, int]]:
        """(suite, usage_count) of every active key."""
        ...

    def lock_pool(self, suite: str) -> None:
        """In a transaction: one refiller per suite at a time."""
        ...

    def count_active(self, suite: str) -> int:
        """Active keys of ``suite`` that carry an attestation (the ones selection can use)."""
        ...

    def create_key(
        self,
        key: NewKey,
        *,
        attestation: bytes,
        max_age: dt.timedelta,
        actor: str | None,
        request_id: str | None,
    ) -> KeyRecord:
        """A new active key, to be rotated after ``max_age``, audited ``key.create``."""
        ...

    def queue_rotation(
        self,
        key_id: str,
        reason: str,
        *,
        max_documents: int,
        max_bytes: int,
        actor: str | None,
        request_id: str | None,
    ) -> bool:
        """active -> rotation_queued with a queued run, audited; False if the key is no
        longer active. The database refuses a key that is not due for ``reason``."""
        ...

    def revoke(
        self, key_id: str, reason: str, *, actor: str | None, request_id: str | None
    ) -> KeyStatus:
        """-> revoked (operators only), audited; return the status it had."""
        ...

    def expire(self, key_id: str, *, actor: str | None, request_id: str | None) -> KeyStatus:
        """active | rotation_queued -> expired (operators only), audited; return the old status."""
        ...

    def request(
        self, key_id: str, kind: str, reason: str, *, actor: str | None, request_id: str | None
    ) -> int:
        """Record an operator's pending request (the key stops encrypting), audited."""
        ...

    def pending_requests(self, key_id: str | None = None) -> list[KeyRequest]: ...

    def complete_request(self, request: int, *, actor: str | None, request_id: str | None) -> bool:
        """Complete a pending revocation once no document uses its key (the key becomes
        revoked, audited); False while documents remain."""
        ...


class RotationRepository(Protocol):
    """Rows of ``key_rotations``, and the ``documents`` rows a run moves between keys."""

    def list_runs(self, status: str | None = None) -> list[RotationRun]:
        """Ordered by id."""
        ...

    def run_counts(self) -> Mapping[str, int] | None:
        """Runs per status; None when the connected role may not read rotation runs."""
        ...

    def documents_on_key(self, key_id: str, limit: int) -> list[str]:
        """Ids of documents encrypted to ``key_id``, ordered, at most ``limit``."""
        ...

    def get_run(self, rotation_id: int) -> RotationRun | None: ...

    def successor(self, old_key_id: str, *, exclude: Sequence[str] = ()) -> str | None:
        """The least-used active, attested key of the old key's suite other than it and
        those in ``exclude``, not past its rotate_after (a run's candidate new key)."""
        ...

    def begin_run(
        self, rotation_id: int, *, new_key_id: str, actor: str | None, request_id: str | None
    ) -> RotationRun:
        """queued -> running onto ``new_key_id`` (documents counted, audited); a run already
        started is returned as it is."""
        ...

    def record_rewrap(
        self,
        rotation_id: int,
        document_id: str,
        *,
        encrypted_version_id: str | None,
        encrypted_size: int,
        actor: str | None,
        request_id: str | None,
    ) -> bool:
        """Point a stored document still on the run's old key at its new key and package
        version, count one use of the new key, audited; False if it was not on the old key."""
        ...

    def finish_run(
        self, rotation_id: int, *, actor: str | None, request_id: str | None
    ) -> RotationRun:
        """Close a running run: completed (old key expired) when no document uses the old
        key, else failed; audited. A run not running is returned as it is."""
        ...


class KeyStorage(Protocol):
    """The key pool's repositories, and transactions spanning them (a unit of work)."""

    @property
    def keys(self) -> KeyRepository: ...

    @property
    def rotations(self) -> RotationRepository: ...

    @property
    def audit(self) -> AuditLog: ...

    def transaction(self) -> AbstractContextManager[KeyStorage]:
        """The same repositories bound to one transaction: what is written through them
        (audit rows included) commits together on a clean exit, or not at all."""
        ...


# === Caller identity =========================================================================
# Who invoked retrieve, proven by STS: the payload's identity_proof is the caller's own
# SigV4-signed sts:GetCallerIdentity request (docs/CONTRACTS.md, "Caller identity proofs").
# The checks are pure (pqfile.auth); adapters/sts_identity.py sends the checked request.

if TYPE_CHECKING:
    from pqfile.auth import VerifiedCaller


class CallerIdentityVerifier(Protocol):
    def verify(self, proof: object, *, request_sha256: str) -> VerifiedCaller:
        """Check ``proof`` (the payload's ``identity_proof``, untrusted JSON) for the request
        whose canonical SHA-256 is ``request_sha256`` (pqfile.auth.retrieve_request_sha256),
        and return the principal STS vouches for. Raise pqfile.auth.IdentityProofError
        (``reason`` is safe to audit); a refused proof causes no outbound request."""
        ...


# --- access rules (sql/migrations/0011) ------------------------------------------------------


class AccessOperation(enum.StrEnum):
    """``access_rules.operation``."""

    RETRIEVE = "retrieve"
    OPERATE = "operate"


@dataclass(frozen=True)
class AccessRule:
    """A row of ``access_rules``: ``principal`` (an ARN or a ``*`` pattern) may do
    ``operation`` on ``tenant`` or on ``document_id`` (exactly one of them)."""

    rule_id: int
    principal: str
    tenant: str | None
    document_id: str | None
    operation: str
    created_by: str
    created_at: dt.datetime


class AccessPolicy(Protocol):
    def allows(self, principal: str, document_id: str, operation: AccessOperation) -> bool:
        """Deny by default: True only when a rule for ``operation`` names the document or
        its tenant and its principal (pattern) matches ``principal``."""
        ...
