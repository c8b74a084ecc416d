"""Pool policy: how many keys to keep, when a key must be rotated (docs/KEYS.md, "Pool").

Pure functions over :class:`~pqfile.keys.model.KeyRecord`. ``PoolPolicy``'s defaults are
the pool's defaults everywhere (the CLI's options, the rotate-keys settings): refer to
them, do not repeat them. :class:`~pqfile.keys.pool.KeyPool` applies the policy; the
selection itself ("least-used active key, no lock contention") is one statement of the
key repository (adapters/postgres/keys.py).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pqfile.keys.model import KeyRecord


class RotationReason(enum.Enum):
    AGE = "age"
    DOCUMENT_CAP = "document_cap"
    BYTES_CAP = "bytes_cap"
    #: Created before key attestation (migration 0010): never selected, so rotated away.
    UNATTESTED = "unattested"


@dataclass(frozen=True)
class PoolPolicy:
    """Targets and limits. Defaults: 100 active keys per suite, refilled when below 80,
    rotated after 30 days, 1,000,000 documents or 1 TiB encrypted per key."""

    target_active: int = 100
    floor_active: int = 80
    max_age: dt.timedelta = dt.timedelta(days=30)
    max_documents: int = 1_000_000
    max_bytes: int = 1 << 40

    def __post_init__(self) -> None:
        if self.target_active < 1:
            raise ValueError("target_active must be at least 1")
        if not 0 <= self.floor_active <= self.target_active:
            raise ValueError("floor_active must be between 0 and target_active")
        if self.max_age <= dt.timedelta(0):
            raise ValueError("max_age must be positive")
        if self.max_documents < 1 or self.max_bytes < 1:
            raise ValueError("usage caps must be positive")

    def keys_to_create(self, active_count: int) -> int:
        """How many keys a refill creates: none while at or above the floor, else up to target."""
        if active_count >= self.floor_active and active_count > 0:
            return 0
        return max(0, self.target_active - active_count)

    def rotation_reason(self, key: KeyRecord, now: dt.datetime) -> RotationReason | None:
        """Why an active key must be queued for rotation now, or None."""
        from pqfile.keys.model import KeyStatus  # not at import: config loads this module

        if key.status is not KeyStatus.ACTIVE:
            return None
        if now >= key.rotate_after:
            return RotationReason.AGE
        if key.usage_count >= self.max_documents:
            return RotationReason.DOCUMENT_CAP
        if key.bytes_encrypted >= self.max_bytes:
            return RotationReason.BYTES_CAP
        if key.attestation is None:
            return RotationReason.UNATTESTED
        return None

    def due_for_rotation(
        self, keys: Iterable[KeyRecord], now: dt.datetime
    ) -> list[tuple[KeyRecord, RotationReason]]:
        due: list[tuple[KeyRecord, RotationReason]] = []
        for key in keys:
            reason = self.rotation_reason(key, now)
            if reason is not None:
                due.append((key, reason))
        return due


@dataclass(frozen=True)
class UsageSpread:
    """Summary of how evenly the pool is used (``pqfile keys status``)."""

    keys: int
    min_usage: int
    max_usage: int
    total_usage: int

    @property
    def ratio(self) -> float | None:
        """max/min usage; None while some key is unused or the pool is empty."""
        if self.keys == 0 or self.min_usage == 0:
            return None
        return self.max_usage / self.min_usage


def usage_spread(usages: Iterable[int]) -> UsageSpread:
    values = list(usages)
    if not values:
        return UsageSpread(0, 0, 0, 0)
    return UsageSpread(len(values), min(values), max(values), sum(values))
