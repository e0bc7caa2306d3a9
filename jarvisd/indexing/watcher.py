"""Re-index as soon as notes change on disk (watchfiles, debounced).

The watcher says *where* something relevant changed (the paths of one
debounced batch); the indexer's run looks only there (a stat per path, a
walk per folder named) and works out *what*, so renames, folder moves and
editors that write through temp files all come out right. When a vault folder
itself goes or comes back, the catch-up run scans every file, as the
scheduled `schedule.index` pass does (it catches whatever a watch missed).
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from collections.abc import Awaitable, Callable, Set
from pathlib import Path

from jarvisd.config import Config, ConfigDiff
from jarvisd.indexing.vault import compile_excludes
from jarvisd.logs import get_logger

log = get_logger("jarvisd.indexing.watcher")

# How often the vault folders' inodes are checked (a stat each: microseconds).
VAULT_POLL_SECONDS = 1.0


class VaultWatcher:
    name = "watcher"

    def __init__(
        self, config: Config, on_change: Callable[[Set[str] | None], Awaitable[object]]
    ) -> None:
        self._config = config
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._stopped = False
        self._restarts: set[asyncio.Task[None]] = set()  # restarts after a reload

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._stopped = False
        self._begin()

    def _begin(self) -> None:
        if self._config.indexing.watch and self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="watcher")

    async def _halt(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stop.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _restart(self) -> None:
        await self._halt()
        if not self._stopped:
            self._begin()

    async def stop(self, deadline: float) -> None:
        self._stopped = True
        await asyncio.gather(*self._restarts, return_exceptions=True)
        await self._halt()

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None:
        old, self._config = self._config, config
        if diff.touches("indexing", "vaults") and (
            old.indexing.watch,
            old.indexing.debounce,
            old.vaults,
        ) != (config.indexing.watch, config.indexing.debounce, config.vaults):
            # A new watch, on its own task: the old one must end first, and a reload
            # does not wait for that.
            task = asyncio.get_running_loop().create_task(self._restart(), name="watcher-restart")
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

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

    def _identity(self) -> tuple[tuple[int, int] | None, ...]:
        """Each vault folder's (device, inode), None while it is missing."""
        out: list[tuple[int, int] | None] = []
        for vault in self._config.vaults:
            try:
                info = os.stat(vault.root)
            except OSError:
                out.append(None)
                continue
            out.append((info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None)
        return tuple(out)

    async def _guard(self, identity: tuple[tuple[int, int] | None, ...], moved: _Either) -> None:
        """Stop the current watch when a vault folder goes away, comes back or is replaced."""
        while self._identity() == identity and not self._stop.is_set():
            await asyncio.sleep(VAULT_POLL_SECONDS)
        moved.set()

    async def _watch(self) -> None:
        # inotify watches belong to the folder's inode: a vault folder that is removed
        # and comes back (a remounted drive, a restored copy) was never watched again,
        # so edits after its return were not indexed until a restart (found by
        # tests/test_vault_chaos_daemon.py). The guard polls each root's inode every
        # second and restarts the watch, with a catch-up run, when one changes.
        first = True
        while not self._stop.is_set():
            identity = self._identity()
            if not first:
                log.warning(
                    "watcher.vaults_changed",
                    missing=[
                        str(vault.root)
                        for vault, seen in zip(self._config.vaults, identity, strict=True)
                        if seen is None
                    ],
                )
                try:
                    await self._on_change(None)  # all of every vault: what was missed
                except Exception:
                    log.error("watcher.reindex_failed", exc_info=True)
            first = False
            moved = _Either(self._stop)
            guard = asyncio.get_running_loop().create_task(self._guard(identity, moved))
            try:
                roots = [
                    str(vault.root)
                    for vault, seen in zip(self._config.vaults, identity, strict=True)
                    if seen is not None
                ]
                if roots:
                    await self._watch_roots(roots, moved)
                await guard  # returns once a vault folder changes (or is cancelled)
            finally:
                guard.cancel()
                await asyncio.gather(guard, return_exceptions=True)

    async def _watch_roots(self, roots: list[str], stop: _Either) -> None:
        import watchfiles

        debounce_ms = max(1, int(self._config.indexing.debounce * 1000))
        log.info("watcher.started", roots=roots, debounce_ms=debounce_ms)
        try:
            async for changes in watchfiles.awatch(
                *roots,
                watch_filter=self._relevant(),
                debounce=debounce_ms,
                step=50,
                stop_event=stop,
                recursive=True,
                ignore_permission_denied=True,
            ):
                log.debug("watcher.changes", count=len(changes))
                try:
                    await self._on_change({path for _change, path in changes})
                except Exception:
                    log.error("watcher.reindex_failed", exc_info=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.error("watcher.failed", exc_info=True)


class _Either:
    """A stop event for watchfiles: set when the daemon stops or a vault folder changed."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._set = False

    def is_set(self) -> bool:
        return self._set or self._stop.is_set()

    def set(self) -> None:
        self._set = True

    async def wait(self) -> bool:
        while not self.is_set():
            await asyncio.sleep(0.05)
        return True


def _excluded(pattern: re.Pattern[str], relative: str) -> bool:
    return pattern.fullmatch(relative) is not None
