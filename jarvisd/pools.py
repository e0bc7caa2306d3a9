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

from jarvisd.config import Config, ConfigDiff, ThreadsConfig

PoolName = Literal["search", "index", "io", "graph", "llm"]
# Sized by `threads:`; the `llm` pool is sized by llm.max_concurrent (one thread per
# answer generated at a time: generation holds its thread for seconds).
THREAD_POOLS: tuple[PoolName, ...] = ("search", "index", "io", "graph")
POOL_NAMES: tuple[PoolName, ...] = (*THREAD_POOLS, "llm")

P = ParamSpec("P")
T = TypeVar("T")


class Pools:
    def __init__(self, config: ThreadsConfig, llm: int = 1) -> None:
        self._sizes: dict[str, int] = {name: getattr(config, name) for name in THREAD_POOLS}
        self._sizes["llm"] = llm
        self._executors: dict[str, ThreadPoolExecutor] = {
            name: self._executor(name, size) for name, size in self._sizes.items()
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
        return dict(self._sizes)

    def resize(self, name: PoolName, size: int) -> bool:
        """A new executor for `name` when its size changed; running work finishes on the old."""
        if self._sizes[name] == size:
            return False
        old = self._executors[name]
        self._executors[name] = self._executor(name, size)
        self._sizes[name] = size
        old.shutdown(wait=False)  # running work finishes on the old threads
        return True

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None:
        """Resize the pools whose size changed (`llm` follows llm.max_concurrent, in ask)."""
        if diff.touches("threads"):
            for name in THREAD_POOLS:
                self.resize(name, getattr(config.threads, name))

    def shutdown(self, wait: bool = True) -> None:
        for executor in self._executors.values():
            executor.shutdown(wait=wait, cancel_futures=not wait)
