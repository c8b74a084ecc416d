"""Crypto-shredding (pqfile.usecases.shred): what a pending shred destroys, and the one
store allowed to delete package versions (docs/KEYS.md, "Shredding")."""

from __future__ import annotations

import datetime as dt
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


class PackageVersions(Protocol):
    """Every version of one package object; only the shred function's role may delete."""

    def list_versions(self, bucket: str, key: str) -> list[PackageVersion]: ...

    def read_prefix(self, bucket: str, key: str, version_id: str, length: int) -> bytes: ...

    def delete_version(self, bucket: str, key: str, version_id: str) -> None: ...
