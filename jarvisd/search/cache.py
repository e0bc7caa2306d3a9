"""The search result cache: a thread-safe TTL cache keyed on the normalised request.

Correctness over cleverness: every index change clears it (a search right
after an edit must never come back with the old text), and so does any change
of the settings a result depends on. The memory mode scales its capacity
(LITE keeps half, MINIMAL a quarter) without forgetting the configured size.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import asdict, dataclass
from typing import Any

from cachetools import TTLCache

from jarvisd.config import ResultCacheConfig


@dataclass(frozen=True, slots=True)
class CacheReport:
    hits: int
    misses: int
    entries: int
    capacity: int
    ttl_seconds: float

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        lookups = self.hits + self.misses
        out["hit_ratio"] = round(self.hits / lookups, 4) if lookups else None
        return out


class ResultCache:
    def __init__(self, config: ResultCacheConfig) -> None:
        self._lock = threading.Lock()
        self._config = config
        self._scale = 1.0
        self._hits = 0
        self._misses = 0
        self._cache: TTLCache[Hashable, Any] = self._new_cache()

    @property
    def capacity(self) -> int:
        return int(self._config.size * self._scale)

    def _new_cache(self) -> TTLCache[Hashable, Any]:
        # TTLCache refuses maxsize 0; a capacity of 0 is handled by get/put instead.
        return TTLCache(maxsize=max(1, self.capacity), ttl=self._config.ttl)

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            value = self._cache.get(key) if self.capacity > 0 else None
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            if self.capacity > 0:
                self._cache[key] = value

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        with self._lock:
            self._cache.expire()
            return len(self._cache)

    def configure(self, config: ResultCacheConfig, scale: float | None = None) -> None:
        """A new size, ttl or memory-mode scale; the freshest entries that fit are kept."""
        with self._lock:
            if config == self._config and (scale is None or scale == self._scale):
                return
            self._config = config
            if scale is not None:
                self._scale = scale
            old = self._cache
            self._cache = self._new_cache()
            if self.capacity == 0:
                return
            entries = list(old.items())  # least recently used first
            for key, value in entries[-self.capacity :]:
                self._cache[key] = value

    def report(self) -> CacheReport:
        with self._lock:
            self._cache.expire()
            return CacheReport(
                self._hits, self._misses, len(self._cache), self.capacity, self._config.ttl
            )
