"""A small in-memory cache of unwrapped secret keys: TTL plus a size cap.

It spares KMS calls, nothing more: callers must check the key's status in the database
before using a cached key, so a revocation takes effect at once (docs/KEYS.md, "Custody").
Values never appear in ``repr`` or in exceptions.
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
    ) -> None:
        if ttl_seconds <= 0 or max_entries < 1:
            raise ValueError("ttl_seconds and max_entries must be positive")
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"UnwrappedKeyCache(entries={len(self._entries)}, ttl={self._ttl}, max={self._max})"

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> V | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= now:
                if entry is not None:
                    del self._entries[key]
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: str, value: V) -> None:
        expires = self._clock() + self._ttl
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
