"""Crypto-shredding: complete an operator's pending shred (docs/KEYS.md, "Shredding").

`pqfile keys revoke KEY_ID --shred --yes-destroy-documents` records the request (the key
stops encrypting at once; its documents are not rewrapped). The ShredKeys state of
rotate-keys (statemachines/rotate-keys.asl.json, after the rewrap Map) runs
:func:`shred_pending`, which for each pending shred request:

1. asks the database what the shred destroys (``key_shred_candidates``): the documents
   stored on the key now (lost: every version of their package is deleted, delete markers
   included), and the documents a rotation moved off the key (only their older versions
   whose header names the key are deleted; the current one, on another key, stays);
2. deletes those S3 versions (ListObjectVersions + DeleteObject with VersionId): the shred
   function's role is the only principal the encrypted bucket lets delete under
   ``encrypted/``;
3. calls ``key_shred``: a tombstone and a ``document.shred`` audit row per document lost,
   the wrapped seed destroyed (NULL) and the key ``shredded``, ``key.shred`` audited.

Deleting before the database commit is safe to retry: a crash in between leaves the key
pending with fewer versions, and the next run deletes the rest and commits. Database
backups and point-in-time recovery still hold the wrapped seed until their retention ends:
``complete_at`` (shredded_at + the backup retention) is when shredding is complete.

The same step completes a pending compromise (`pqfile keys revoke KEY_ID --compromised`)
once rotate-keys re-encrypted every document of the key (:func:`purge_compromised`): every
older version of those packages is deleted (they hold the data keys the compromise may have
exposed), then ``key_compromise_complete`` audits the versions deleted per document and
revokes the key.

Pure: depends only on ports (ShredRepository, PackageVersions).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pqfile.errors import PQFileError
from pqfile.format.header import FIXED_SIZE, header_size, parse_header
from pqfile.ports import (
    CompromiseCandidate,
    EventPublisher,
    KeyRequest,
    PackageVersions,
    ShredCandidate,
    ShredRepository,
)
from pqfile.usecases.notices import NoEvents, RevocationMode, announce, key_revoked

OP_SHRED = "key.shred"
OP_DOCUMENT_SHRED = "document.shred"


@dataclass
class Shredding:
    """Everything the shred use case needs, injected."""

    keys: ShredRepository
    versions: PackageVersions
    #: RDS automated backup retention (Terraform ``db_backup_retention_days``).
    backup_retention_days: int
    #: `PQFile Key Revoked` (mode ``shred``) per key shredded, (mode ``compromise``) per
    #: compromise completed (docs/CONTRACTS.md).
    events: EventPublisher = field(default_factory=NoEvents)


@dataclass(frozen=True)
class KeyShredded:
    """One completed shred: the key, the documents lost, and when it is complete."""

    request: int
    key_id: str
    documents_lost: tuple[tuple[str, str], ...]
    versions_deleted: int
    versions_kept: int
    shredded_at: dt.datetime
    complete_at: dt.datetime
    #: Completion events that could not be delivered (logged and counted, never fatal).
    events_lost: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "key_id": self.key_id,
            "documents_lost": [{"document_id": d, "tenant": t} for d, t in self.documents_lost],
            "versions_deleted": self.versions_deleted,
            "versions_kept": self.versions_kept,
            "shredded_at": self.shredded_at.isoformat(),
            "complete_at": self.complete_at.isoformat(),
        }


@dataclass(frozen=True)
class CompromisePurged:
    """One completed compromise: the older package versions deleted per document (every
    version but the re-encrypted one), and the key revoked."""

    request: int
    key_id: str
    versions_deleted: dict[str, int]
    #: Completion events that could not be delivered (logged and counted, never fatal).
    events_lost: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "key_id": self.key_id,
            "documents": len(self.versions_deleted),
            "versions_deleted": sum(self.versions_deleted.values()),
        }


@dataclass(frozen=True)
class ShredReport:
    shredded: list[KeyShredded] = field(default_factory=list)
    #: Compromises completed by this run (their documents were re-encrypted first).
    compromised: list[CompromisePurged] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shredded": [s.to_dict() for s in self.shredded],
            "compromised": [c.to_dict() for c in self.compromised],
        }


def shred_pending(s: Shredding, *, request_id: str | None = None) -> ShredReport:
    """Complete every pending shred request, then every compromise whose documents are all
    re-encrypted, oldest first."""
    shredded = [shred_key(s, pending, request_id=request_id)
                for pending in s.keys.pending_shreds()]  # fmt: skip
    compromised: list[CompromisePurged] = []
    for pending in s.keys.pending_compromises():
        done = purge_compromised(s, pending, request_id=request_id)
        if done is not None:
            compromised.append(done)
    return ShredReport(shredded, compromised)


def purge_compromised(
    s: Shredding, pending: KeyRequest, *, request_id: str | None = None
) -> CompromisePurged | None:
    """Complete a compromise: delete every version but the committed (re-encrypted) one of
    each document a re-encryption moved off the key, then revoke the key in the database
    (a ``document.versions_deleted`` audit row per document). None, with nothing deleted,
    while documents are still on the key. Idempotent up to the commit."""
    deleted: dict[str, int] = {}
    for candidate in s.keys.compromise_candidates(pending.request_id):
        deleted[candidate.document_id] = _delete_all_but(s.versions, candidate)
    if not s.keys.complete_compromise(pending.request_id, deleted=deleted, request_id=request_id):
        return None
    lost = announce(
        s.events,
        key_revoked(key_id=pending.key_id, suite=pending.suite, mode=RevocationMode.COMPROMISE),
    )
    return CompromisePurged(pending.request_id, pending.key_id, deleted, events_lost=lost)


def _delete_all_but(versions: PackageVersions, c: CompromiseCandidate) -> int:
    """Delete every version of one package object (delete markers included) but the one
    its row commits to; the number deleted."""
    deleted = 0
    for version in versions.list_versions(c.bucket, c.key):
        if version.version_id != c.keep_version_id:
            versions.delete_version(c.bucket, c.key, version.version_id)
            deleted += 1
    return deleted


def shred_key(s: Shredding, pending: KeyRequest, *, request_id: str | None = None) -> KeyShredded:
    """Delete every package version still wrapped to the key, then shred it in the
    database. Idempotent up to the commit (versions already gone are not listed again)."""
    deleted = kept = 0
    for candidate in s.keys.shred_candidates(pending.request_id):
        d, k = _delete_versions(s.versions, candidate, pending.key_id)
        deleted, kept = deleted + d, kept + k
    outcome = s.keys.shred(pending.request_id, versions_deleted=deleted, request_id=request_id)
    lost = announce(
        s.events,
        key_revoked(
            key_id=pending.key_id,
            suite=pending.suite,
            mode=RevocationMode.SHRED,
            at=outcome.shredded_at,
        ),
    )
    return KeyShredded(
        request=pending.request_id,
        key_id=pending.key_id,
        documents_lost=outcome.lost,
        versions_deleted=deleted,
        versions_kept=kept,
        shredded_at=outcome.shredded_at,
        complete_at=complete_at(outcome.shredded_at, s.backup_retention_days),
        events_lost=lost,
    )


def complete_at(shredded_at: dt.datetime, backup_retention_days: int) -> dt.datetime:
    """When the last backup holding the wrapped seed has expired."""
    return shredded_at + dt.timedelta(days=backup_retention_days)


def _delete_versions(
    versions: PackageVersions, candidate: ShredCandidate, key_id: str
) -> tuple[int, int]:
    """(deleted, kept) versions of one package object."""
    deleted = kept = 0
    for version in versions.list_versions(candidate.bucket, candidate.key):
        if candidate.lost or (
            not version.delete_marker
            and _wrapped_to(versions, candidate, version.version_id) == key_id
        ):
            versions.delete_version(candidate.bucket, candidate.key, version.version_id)
            deleted += 1
        else:
            kept += 1
    return deleted, kept


def _wrapped_to(versions: PackageVersions, c: ShredCandidate, version_id: str) -> str | None:
    """The key id a version's header names; None when it is not a readable package (such
    a version is kept: a shred deletes only what it can attribute to the key)."""
    try:
        prefix = versions.read_prefix(c.bucket, c.key, version_id, FIXED_SIZE)
        size = header_size(prefix)
        head = prefix if size == len(prefix) else versions.read_prefix(
            c.bucket, c.key, version_id, size
        )
        return parse_header(head).key_id
    except (PQFileError, ValueError):
        return None
