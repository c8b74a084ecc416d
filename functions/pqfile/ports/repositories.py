"""Repositories: the audit log, the document index, and the key pool storage.

The key services in pqfile.keys (KeyPool, KeyCustody, RotationRuns) run on KeyStorage:
storage only, SQL in adapters/postgres/ and dicts in tests/functional/fakes.py. The services
check early (which key, when to refill or rotate, custody, attestation); every write is one
call to a SECURITY DEFINER function (sql/migrations/0010) that is the authority: it checks
the transition and its invariants and appends the audit row in the same transaction.
Refusals come back as IllegalTransitionError (PQ001) or PermissionDeniedError.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from pqfile.keys.model import KeyRecord, KeyStatus, NewKey, SealedSeed, SelectedKey
    from pqfile.keys.rotation_runs import RotationRun

from pqfile.ports.model import (
    DocumentRecord,
    KeyRequest,
)


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
        content_type: str | None = None,
    ) -> DocumentRecord:
        """Insert a `pending` row, or return the existing row for this source identity.
        ``tenant`` is the key's first folder under uploads/ (the database checks it);
        ``content_type`` is the upload's, as S3 reported it (kept on the row)."""
        ...

    def get(self, document_id: str) -> DocumentRecord | None: ...

    def find_by_encrypted_object(self, bucket: str, key: str) -> DocumentRecord | None: ...

    def find_stored_by_source(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> DocumentRecord | None:
        """The newest `stored` document ingested from the upload ``bucket``/``key`` (of
        that ``version_id`` when given, else any version), or None."""
        ...

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

    def documents_after(
        self, key_id: str, after: str | None, limit: int
    ) -> list[tuple[str, bool]]:
        """(document id, package stored) of documents encrypted to ``key_id`` whose id sorts
        after ``after`` (None: from the first), ordered, at most ``limit``."""
        ...

    def pool_keys(self, suite: str, *, exclude: str, limit: int) -> list[tuple[str, int]]:
        """(key id, usage count) of the active, attested keys of ``suite`` other than
        ``exclude``, not past their rotate_after, least used first, at most ``limit``."""
        ...

    def get_run(self, rotation_id: int) -> RotationRun | None: ...

    def successor(
        self, old_key_id: str, *, suite: str | None = None, exclude: Sequence[str] = ()
    ) -> str | None:
        """The least-used active, attested key of ``suite`` (None: the old key's suite)
        other than the old key and those in ``exclude``, not past its rotate_after (a run's
        candidate new key)."""
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
        new_key_id: str,
        encrypted_version_id: str | None,
        encrypted_size: int,
        actor: str | None,
        request_id: str | None,
    ) -> bool:
        """Point a stored document still on the run's old key at ``new_key_id`` (an active,
        attested key of the run's target suite) and its package version, count one use of
        that key, audited; False if it was not on the old key."""
        ...

    def record_reencrypt(
        self,
        rotation_id: int,
        document_id: str,
        *,
        new_key_id: str,
        encrypted_version_id: str | None,
        encrypted_size: int,
        from_kdf: str,
        to_kdf: str,
        actor: str | None,
        request_id: str | None,
    ) -> bool:
        """As :meth:`record_rewrap` for a re-encrypted document (a fresh data key), audited
        ``document.reencrypt`` with both keys, suites and KDFs."""
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
