"""The one boundary for blocking work: named thread pools sized by `threads:`.

Encoding, DuckDB and file I/O run here so the event loop never blocks. A
resize swaps in a new executor; work already running on the old one finishes
there (nothing is cancelled, nothing is dropped).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, ParamSpec, TypeVar

from jarvisd.config import ThreadsConfig

PoolName = Literal["search", "index", "io", "graph"]
POOL_NAMES: tuple[PoolName, ...] = ("search", "index", "io", "graph")

P = ParamSpec("P")
T = TypeVar("T")


class Pools:
    def __init__(self, config: ThreadsConfig) -> None:
        self._config = config
        self._executors: dict[str, ThreadPoolExecutor] = {
            name: self._executor(name, getattr(config, name)) for name in POOL_NAMES
        }

    @staticmethod
    def _executor(name: str, size: int) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"jarvis-{name}")

    async def run(
        self, pool: PoolName, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a blocking call in a pool, carrying the caller's context (request id)."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        call = functools.partial(context.run, function, *args, **kwargs)
        return await loop.run_in_executor(self._executors[pool], call)

    def sizes(self) -> dict[str, int]:
        return {name: getattr(self._config, name) for name in POOL_NAMES}

    def reconfigure(self, config: ThreadsConfig) -> list[str]:
        """Resize the pools whose size changed; returns their names."""
        resized: list[str] = []
        for name in POOL_NAMES:
            size = getattr(config, name)
            if size != getattr(self._config, name):
                old = self._executors[name]
                self._executors[name] = self._executor(name, size)
                old.shutdown(wait=False)  # running work finishes on the old threads
                resized.append(name)
        self._config = config
        return resized

    def shutdown(self, wait: bool = True) -> None:
        for executor in self._executors.values():
            executor.shutdown(wait=wait, cancel_futures=not wait)
