"""Crypto-shredding (pqfile.usecases.shred): what a pending shred destroys, and the one
store allowed to delete package versions (docs/KEYS.md, "Shredding")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pqfile.ports.model import KeyRequest


@dataclass(frozen=True)
class ShredCandidate:
    """A document whose package versions a shred must look at. ``lost``: it is stored on
    the key now, so every version goes; otherwise a rotation moved it off the key and only
    the versions whose header names the key go."""

    document_id: str
    bucket: str
    key: str
    lost: bool


@dataclass(frozen=True)
class CompromiseCandidate:
    """A document a re-encryption moved off a compromised key: every version of its package
    but ``keep_version_id`` (the one its row commits to, under a fresh data key) goes."""

    document_id: str
    bucket: str
    key: str
    keep_version_id: str


@dataclass(frozen=True)
class PackageVersion:
    """One version of a package object (a delete marker holds no data)."""

    version_id: str
    delete_marker: bool = False


@dataclass(frozen=True)
class ShredOutcome:
    """What key_shred() committed: the documents lost (id, tenant) and when the seed went."""

    lost: tuple[tuple[str, str], ...]
    shredded_at: dt.datetime


class ShredRepository(Protocol):
    """The pqfile_shred role's view (sql/migrations/0013)."""

    def pending_shreds(self) -> list[KeyRequest]: ...

    def shred_candidates(self, request: int) -> list[ShredCandidate]: ...

    def shred(
        self, request: int, *, versions_deleted: int, request_id: str | None
    ) -> ShredOutcome: ...

    def pending_compromises(self) -> list[KeyRequest]: ...

    def compromise_candidates(self, request: int) -> list[CompromiseCandidate]:
        """Empty while documents are still on the key (they are re-encrypted first)."""
        ...

    def complete_compromise(
        self, request: int, *, deleted: Mapping[str, int], request_id: str | None
    ) -> bool:
        """Audit the versions deleted per document and revoke the key; False (nothing
        changed) while documents remain on it."""
        ...


class PackageVersions(Protocol):
    """Every version of one package object; only the shred function's role may delete."""

    def list_versions(self, bucket: str, key: str) -> list[PackageVersion]: ...

    def read_prefix(self, bucket: str, key: str, version_id: str, length: int) -> bytes: ...

    def delete_version(self, bucket: str, key: str, version_id: str) -> None: ...
