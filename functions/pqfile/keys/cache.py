"""A small in-memory cache of unwrapped secret keys: TTL plus a size cap.

It spares KMS calls, nothing more: callers must check the key's status in the database
before using a cached key, so a revocation takes effect at once (docs/KEYS.md, "Custody").
Expired secrets do not linger: every ``put`` and ``get`` purges entries whose time is up,
oldest first, at most ``purge_batch`` per call (the work per call stays bounded, and since
every call purges, an idle-but-called cache holds no expired secret for long). Values never
appear in ``repr`` or in exceptions.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class UnwrappedKeyCache(Generic[V]):
    """Least-recently-used cache with a time to live, safe to share between threads."""

    def __init__(
        self,
        *,
        ttl_seconds: float = 300.0,
        max_entries: int = 256,
        clock: Callable[[], float] = time.monotonic,
        purge_batch: int = 64,
    ) -> None:
        if ttl_seconds <= 0 or max_entries < 1 or purge_batch < 1:
            raise ValueError("ttl_seconds, max_entries and purge_batch must be positive")
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._purge_batch = purge_batch
        # Recency order (least recently used first) for the size cap ...
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        # ... and expiry order (the TTL is constant, so insertion order) for the purge.
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"UnwrappedKeyCache(entries={len(self._entries)}, ttl={self._ttl}, max={self._max})"

    def __len__(self) -> int:
        return len(self._entries)

    def _remove(self, key: str) -> None:
        self._entries.pop(key, None)
        self._expiry.pop(key, None)

    def _purge(self, now: float) -> None:
        """Drop expired entries, oldest first, at most ``purge_batch`` of them (lock held)."""
        for _ in range(self._purge_batch):
            oldest = next(iter(self._expiry.items()), None)
            if oldest is None or oldest[1] > now:
                return
            self._remove(oldest[0])

    def get(self, key: str) -> V | None:
        now = self._clock()
        with self._lock:
            self._purge(now)
            entry = self._entries.get(key)
            if entry is None or entry[0] <= now:
                if entry is not None:
                    self._remove(key)
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: str, value: V) -> None:
        now = self._clock()
        expires = now + self._ttl
        with self._lock:
            self._purge(now)
            self._remove(key)
            self._entries[key] = (expires, value)
            self._expiry[key] = expires
            while len(self._entries) > self._max:
                self._remove(next(iter(self._entries)))

    def discard(self, key: str) -> None:
        with self._lock:
            self._remove(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._expiry.clear()
