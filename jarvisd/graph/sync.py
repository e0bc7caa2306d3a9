"""Keeping a graph projection (Neo4j) in step with DuckDB, the source of truth.

`read_projection` reads one vault's notes and note links from the store;
`GraphSync` decides when to push them: after every index run that changed
something, after the first run of the process (the server may have been
wiped or replaced while we were down), and after any run that follows a
failed sync. A sync that fails changes nothing in DuckDB and is retried, so
losing the server loses nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from jarvisd.graph.results import GraphError, SyncReport
from jarvisd.indexing.progress import IndexEvent, RunReport
from jarvisd.logs import get_logger
from jarvisd.pools import Pools
from jarvisd.store import Store

log = get_logger("jarvisd.graph.sync")


@dataclass(frozen=True, slots=True)
class ProjectedNote:
    """One note as the projection holds it: its title and its note links, in order.

    `links` are plain dicts because they travel as query parameters as they are.
    """

    path: str
    title: str
    links: tuple[dict[str, Any], ...] = ()

    @property
    def fingerprint(self) -> str:
        """Changes when the title or any link (or what it resolves to) changes."""
        payload = json.dumps([self.title, self.links], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Projection:
    vault: str
    notes: tuple[ProjectedNote, ...] = field(default_factory=tuple)

    @property
    def link_count(self) -> int:
        return sum(len(note.links) for note in self.notes)


def read_projection(store: Store, vault: str) -> Projection:
    """One vault's notes and note links from DuckDB (blocking: run it in a pool)."""
    titles, rows = store.projection_rows(vault)
    links: dict[str, list[dict[str, Any]]] = {}
    for source, ordinal, target, key, kind, line, heading, alias, target_path in rows:
        links.setdefault(str(source), []).append(
            {
                "ordinal": int(ordinal),
                "target": str(target),
                "key": str(key),
                "kind": str(kind),
                "line": int(line),
                "heading": heading,
                "alias": alias,
                "target_path": target_path,
            }
        )
    notes = tuple(
        ProjectedNote(str(path), str(title), tuple(links.get(str(path), ())))
        for path, title in titles
    )
    return Projection(vault, notes)


class ProjectionWriter(Protocol):
    """The part of a GraphStore that a sync needs."""

    @property
    def backend(self) -> str: ...

    async def sync(self, projections: Sequence[Projection]) -> SyncReport: ...


class GraphSync:
    """Pushes DuckDB's notes and links to a projection backend after index runs."""

    def __init__(
        self,
        graph: ProjectionWriter,
        store: Store,
        pools: Pools,
        vaults: Callable[[], list[str]],
    ) -> None:
        self._graph = graph
        self._store = store
        self._pools = pools
        self._vaults = vaults
        # Never synced by this process: the first finished run syncs even if it changed nothing.
        self._dirty = True
        self._task: asyncio.Task[SyncReport | None] | None = None
        self.last: dict[str, Any] | None = None

    def mark_changed(self) -> None:
        """indexer.on_change: the store changed, the projection is behind."""
        self._dirty = True

    def on_index_event(self, event: IndexEvent) -> None:
        """indexer.subscribe: after a finished run, sync if anything is owed."""
        if not isinstance(event, RunReport) or not self._dirty:
            return
        if event.state != "done":
            return
        if self._task is not None and not self._task.done():
            return  # the running sync goes round again when it finishes
        self._task = asyncio.get_running_loop().create_task(
            self._sync_until_clean(), name="graph-sync"
        )

    async def _sync_until_clean(self) -> SyncReport | None:
        """Sync; again if the store changed meanwhile; stop at the first failure."""
        report = await self.sync()
        while report is not None and self._dirty:
            report = await self.sync()
        return report

    async def sync(self) -> SyncReport | None:
        """Sync every configured vault now; None when the server could not take it."""
        self._dirty = False
        started = time.perf_counter()
        vaults = self._vaults()
        try:
            projections = [
                await self._pools.run("io", read_projection, self._store, vault) for vault in vaults
            ]
            report = await self._graph.sync(projections)
        except GraphError as error:
            self._dirty = True  # retried after the next index run
            self.last = {"ok": False, "error": str(error), "at": time.time()}
            log.error(
                "graph.sync_failed",
                backend=self._graph.backend,
                error=str(error),
                retry="after the next index run",
            )
            return None
        self.last = {"ok": True, "at": time.time(), **report.as_dict()}
        log.info(
            "graph.synced",
            backend=report.backend,
            notes=report.notes,
            links=report.links,
            deleted=report.deleted,
            seconds=round(time.perf_counter() - started, 4),
        )
        return report

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
