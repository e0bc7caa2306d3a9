"""The graph component: a backend, its sync, and queries by note path or title.

The daemon's `Knowledge` owns one. It opens nothing until `start()` (the
store must be open first), resolves a note reference against DuckDB (the
source of truth, whichever backend answers), checks depth and direction
against the live config, and records each query's latency as `graph:<op>`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol, TypeVar, runtime_checkable

from jarvisd.config import Config
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
from jarvisd.indexing.indexer import Indexer, IndexEvent, RunReport
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
    def __init__(self, config: Config, pools: Pools, metrics: Metrics) -> None:
        self._config = config
        self._pools = pools
        self._metrics = metrics
        self._backend: GraphStore | None = None
        self._notes: NotesService | None = None
        self._sync: GraphSync | None = None

    # -------------------------------------------------------------- lifecycle

    async def start(self, store: Store, indexer: Indexer | None = None) -> None:
        """Open the backend; with an indexer, keep it in step with the store after runs.

        A projection backend syncs after runs that changed something; a backend
        with its own copy of the store drops that copy after them.
        """
        self._notes = NotesService(lambda: self._config, store, self._pools)
        backend = create_graph_store(self._config.graph, store, self._pools)
        await backend.start()
        self._backend = backend
        if isinstance(backend, Invalidating) and indexer is not None:
            invalidate = backend.invalidate
            indexer.on_change(invalidate)
            indexer.subscribe(lambda event: invalidate() if failed_run(event) else None)
        if backend.needs_sync and indexer is not None:
            sync = GraphSync(
                backend, store, self._pools, lambda: [v.name for v in self._config.vaults]
            )
            indexer.on_change(sync.mark_changed)
            indexer.subscribe(sync.on_index_event)
            self._sync = sync

    async def stop(self) -> None:
        if self._sync is not None:
            await self._sync.stop()
        if self._backend is not None:
            await self._backend.close()

    def reconfigure(self, config: Config) -> None:
        self._config = config
        if self._backend is not None:
            # graph.backend itself needs a restart (it stays); max_depth and the rest apply now.
            self._backend.reconfigure(config.graph)

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
