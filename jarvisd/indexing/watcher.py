"""Re-index as soon as notes change on disk (watchfiles, debounced).

The watcher only decides *that* something relevant changed; the indexer's
incremental run (a stat per file) works out *what*, so renames, folder moves
and editors that write through temp files all come out right.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from jarvisd.config import Config
from jarvisd.indexing.vault import compile_excludes
from jarvisd.logs import get_logger

log = get_logger("jarvisd.indexing.watcher")


class VaultWatcher:
    def __init__(self, config: Config, on_change: Callable[[], Awaitable[object]]) -> None:
        self._config = config
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._config.indexing.watch and self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def reconfigure(self, config: Config) -> None:
        old, self._config = self._config, config
        if (old.indexing.watch, old.indexing.debounce, old.vaults) != (
            config.indexing.watch,
            config.indexing.debounce,
            config.vaults,
        ):
            await self.stop()
            await self.start()

    def _relevant(self) -> Callable[[object, str], bool]:
        roots = [
            (str(vault.root.resolve()), compile_excludes(vault.exclude))
            for vault in self._config.vaults
        ]

        def relevant(_change: object, path: str) -> bool:
            for root, exclude in roots:
                if path == root or path.startswith(root + "/"):
                    relative = path[len(root) + 1 :]
                    if exclude is not None and _excluded(exclude, relative):
                        return False
                    # a note, or a folder (a moved folder moves its notes)
                    return path.lower().endswith(".md") or "." not in Path(path).name
            return False

        return relevant

    async def _watch(self) -> None:
        import watchfiles

        roots = [str(vault.root) for vault in self._config.vaults if vault.root.is_dir()]
        if not roots:
            return
        debounce_ms = max(1, int(self._config.indexing.debounce * 1000))
        log.info("watcher.started", roots=roots, debounce_ms=debounce_ms)
        try:
            async for changes in watchfiles.awatch(
                *roots,
                watch_filter=self._relevant(),
                debounce=debounce_ms,
                step=50,
                stop_event=self._stop,
                recursive=True,
                ignore_permission_denied=True,
            ):
                log.debug("watcher.changes", count=len(changes))
                try:
                    await self._on_change()
                except Exception:
                    log.error("watcher.reindex_failed", exc_info=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.error("watcher.failed", exc_info=True)


def _excluded(pattern: re.Pattern[str], relative: str) -> bool:
    return pattern.fullmatch(relative) is not None
