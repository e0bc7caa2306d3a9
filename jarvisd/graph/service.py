"""The graph component: a backend, its sync, and queries by note path or title.

The daemon's `Knowledge` makes one once the store is open, starts its backend
with `start()` and subscribes `on_index_changed` / `on_index_event` to the
indexer with the other "index changed" listeners. It resolves a note reference against DuckDB (the
source of truth, whichever backend answers), checks depth and direction
against the live config, and records each query's latency as `graph:<op>`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol, TypeVar, runtime_checkable

from jarvisd.config import Config, ConfigDiff
from jarvisd.graph import (
    Direction,
    GraphStore,
    GraphSync,
    InvalidGraphQuery,
    LinkList,
    Neighbourhood,
    NoteNotFound,
    NotePath,
    Orphans,
    PerVault,
    UnresolvedReport,
    check_depth,
    check_direction,
    create_graph_store,
)
from jarvisd.indexing.progress import IndexEvent, RunReport
from jarvisd.logs import get_logger
from jarvisd.notes.service import Found, NoteNotFoundError, NotesService
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools
from jarvisd.store import Store

T = TypeVar("T")
# The replies that name one note, and so may say how it was chosen.
Located = TypeVar("Located", LinkList, Neighbourhood)
log = get_logger("jarvisd.graph")

DEFAULT_LIMIT = 500
MAX_LIMIT = 10_000


@runtime_checkable
class Invalidating(Protocol):
    """A backend that answers from its own copy of the store (duckdb's snapshots)."""

    def invalidate(self) -> None:
        """The store changed: stop answering from what was read before."""
        ...


class GraphService:
    name = "graph"

    def __init__(self, config: Config, store: Store, pools: Pools, metrics: Metrics) -> None:
        self._config = config
        self._store = store
        self._pools = pools
        self._metrics = metrics
        self._backend: GraphStore | None = None
        self._notes: NotesService | None = None
        self._sync: GraphSync | None = None

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Open the backend (and the sync of a projection backend)."""
        self._notes = NotesService(lambda: self._config, self._store, self._pools)
        backend = create_graph_store(self._config.graph, self._store, self._pools)
        await backend.start()
        self._backend = backend
        if backend.needs_sync:
            self._sync = GraphSync(
                backend, self._store, self._pools, lambda: [v.name for v in self._config.vaults]
            )

    async def stop(self, deadline: float) -> None:
        if self._sync is not None:
            await self._sync.stop()
        if self._backend is not None:
            await self._backend.close()

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None:
        self._config = config
        if self._backend is not None and diff.touches("graph"):
            # graph.backend itself needs a restart (it stays); max_depth and the rest apply now.
            self._backend.configure(config.graph)

    # ------------------------------------------------- index changes (knowledge wires them)

    def on_index_changed(self) -> None:
        """After a run that changed the index: a backend with its own copy of the store
        drops it; a projection backend is marked for its next sync."""
        backend = self._backend
        if backend is not None and isinstance(backend, Invalidating):
            backend.invalidate()
        if self._sync is not None:
            self._sync.mark_changed()

    def on_index_event(self, event: IndexEvent) -> None:
        """Every indexer progress event: a failed run may have written notes too."""
        backend = self._backend
        if backend is not None and isinstance(backend, Invalidating) and failed_run(event):
            backend.invalidate()
        if self._sync is not None:
            self._sync.on_index_event(event)

    @property
    def backend(self) -> GraphStore:
        if self._backend is None:
            raise RuntimeError("the graph is not started yet")
        return self._backend

    @property
    def notes(self) -> NotesService:
        if self._notes is None:
            raise RuntimeError("the graph is not started yet")
        return self._notes

    @property
    def max_depth(self) -> int:
        return self._config.graph.max_depth

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self._config.graph.backend}
        if self._backend is not None:
            out = self._backend.describe()
        if self._sync is not None:
            out["last_sync"] = self._sync.last
        return out

    async def sync_now(self) -> dict[str, Any]:
        """Push the store to the projection now (nothing to do for duckdb)."""
        if self._sync is None:
            return {"backend": self.backend.backend, "synced": False, "reason": "nothing to sync"}
        report = await self._sync.sync()
        return {
            "backend": self.backend.backend,
            "synced": report is not None,
            **(self._sync.last or {}),
        }

    # ---------------------------------------------------------------- queries

    async def _timed(self, operation: str, work: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        try:
            return await work()
        finally:
            self._metrics.latency.observe(f"graph:{operation}", time.perf_counter() - started)

    async def _on_note(
        self, vault: str | None, reference: str, query: Callable[[str, str], Awaitable[Located]]
    ) -> Located:
        """`query(vault, path)` for the note `reference` names, in the vault named.

        With no vault named and several configured, the note is looked up in
        all of them first (see NotesService.find), and the reply says which
        vaults it was found in. Otherwise the usual reference is a path: it goes
        straight to the backend (one query, one thread hop); only when no note
        has it is it resolved as a normalised path or a title, and asked again.
        """
        vaults = self.notes.vaults(vault)
        if len(vaults) > 1:
            found = await self.notes.find(None, reference)
            result = await query(found.vault.name, found.path)
            return replace(result, match=found.match(reference))
        chosen = vaults[0]
        guess = reference.strip()
        if not guess.lower().endswith(".md"):
            guess += ".md"
        try:
            return await query(chosen.name, guess)
        except NoteNotFound:
            path = await self.notes.resolve(chosen, reference)
            if path == guess:
                raise
            return await query(chosen.name, path)

    async def links(self, vault: str | None, reference: str) -> LinkList:
        return await self._timed(
            "links", lambda: self._on_note(vault, reference, self.backend.outgoing)
        )

    async def backlinks(self, vault: str | None, reference: str) -> LinkList:
        return await self._timed(
            "backlinks", lambda: self._on_note(vault, reference, self.backend.backlinks)
        )

    async def neighbours(
        self,
        vault: str | None,
        reference: str,
        depth: int,
        direction: str,
        limit: int = DEFAULT_LIMIT,
    ) -> Neighbourhood:
        checked: Direction = check_direction(direction)
        check_depth(depth, self.max_depth)
        check_limit(limit)

        async def query(name: str, path: str) -> Neighbourhood:
            return await self.backend.neighbours(name, path, depth, checked, limit)

        return await self._timed("neighbours", lambda: self._on_note(vault, reference, query))

    async def path(
        self, vault: str | None, source: str, target: str, direction: str = "both"
    ) -> NotePath:
        checked: Direction = check_direction(direction)

        async def work() -> NotePath:
            name, start, end = await self._both_ends(vault, source, target)
            return await self.backend.shortest_path(name, start, end, checked)

        return await self._timed("path", work)

    async def _both_ends(self, vault: str | None, source: str, target: str) -> tuple[str, str, str]:
        """The vault and paths of a walk's two ends: the first vault that holds both."""
        start = await self.notes.find(vault, source)
        end = await self.notes.find(vault, target)
        ends = {hit.vault.name: hit.path for hit in end.hits}
        for hit in start.hits:
            if hit.vault.name in ends:
                return hit.vault.name, hit.path, ends[hit.vault.name]
        raise NoteNotFoundError(
            f"no vault holds both {source!r} (in {_vault_names(start)}) "
            f"and {target!r} (in {_vault_names(end)})"
        )

    async def unresolved(self, vault: str | None) -> UnresolvedReport | PerVault:
        names = [chosen.name for chosen in self.notes.vaults(vault)]

        async def work() -> UnresolvedReport | PerVault:
            reports = [await self.backend.unresolved(name) for name in names]
            return reports[0] if len(reports) == 1 else PerVault(tuple(reports))

        return await self._timed("unresolved", work)

    async def orphans(self, vault: str | None) -> Orphans | PerVault:
        names = [chosen.name for chosen in self.notes.vaults(vault)]

        async def work() -> Orphans | PerVault:
            reports = [await self.backend.orphans(name) for name in names]
            return reports[0] if len(reports) == 1 else PerVault(tuple(reports))

        return await self._timed("orphans", work)


def _vault_names(found: Found) -> str:
    return ", ".join(hit.vault.name for hit in found.hits)


def failed_run(event: IndexEvent) -> bool:
    """An indexer event for a run that failed: it may have written notes before it did.

    Its notes count as unchanged to the next run, so on_change alone would
    leave them out of a backend's copy until some other change.
    """
    return isinstance(event, RunReport) and event.state != "done"


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidGraphQuery(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit
