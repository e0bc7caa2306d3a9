"""The default graph backend: the store's `notes` and `links`, read into memory per vault.

Links, backlinks, neighbourhoods and paths are answered from a `VaultGraph`
snapshot (see `snapshot`): read from DuckDB on first use, rebuilt after every
index change (`invalidate`, which the GraphService calls on the indexer's
`on_change`), and after `sync()`, which asks for answers as the store holds
them now. The reports (unresolved links, orphans) are SQL on the live
tables: they are rare, and each is a single aggregate.

Walks are breadth-first: a note is reached once, at its shortest distance,
and `via` is the smallest-id note one step nearer (see `adjacency`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from jarvisd.config import GraphConfig
from jarvisd.graph.adjacency import Walk, shortest_trail, walk
from jarvisd.graph.results import (
    Direction,
    LinkList,
    Neighbour,
    Neighbourhood,
    NotePath,
    NoteRef,
    Orphans,
    SyncReport,
    UnresolvedReport,
    UnresolvedTarget,
    check_depth,
)
from jarvisd.graph.snapshot import Snapshots, VaultGraph, read_vault_graph
from jarvisd.graph.sync import Projection
from jarvisd.logs import get_logger
from jarvisd.pools import Pools
from jarvisd.store import Store

T = TypeVar("T")
log = get_logger("jarvisd.graph.duckdb")

# Longest walk a shortest-path search follows; the walk also ends once the
# target is reached or no new note is found, so this only bounds pathological input.
MAX_PATH_HOPS = 64


class DuckDBGraph:
    """GraphStore over the store's own tables; queries run on the `graph` thread pool."""

    backend = "duckdb"
    needs_sync = False

    def __init__(self, config: GraphConfig, store: Store, pools: Pools) -> None:
        self._config = config
        self._store = store
        self._pools = pools
        self._snapshots = Snapshots(self._read)
        self._refreshes: set[asyncio.Task[list[VaultGraph]]] = set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        # Wait rather than cancel: a cancelled task leaves its build running on the pool,
        # inside a read transaction, while the store closes.
        await asyncio.gather(*self._refreshes, return_exceptions=True)

    def configure(self, config: GraphConfig) -> None:
        self._config = config

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "max_depth": self._config.max_depth,
            "generation": self._snapshots.generation,
            "snapshots": {item.vault: item.describe() for item in self._snapshots.held()},
        }

    # -------------------------------------------------------------- snapshots

    def invalidate(self) -> None:
        """The store changed: answer from a new snapshot, and start building it now.

        Only vaults already asked about are rebuilt ahead of their next query;
        a vault nobody queries is never read.
        """
        self._snapshots.invalidate()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a blocking caller): the next query builds it
        task = loop.create_task(self._pools.run("graph", self._snapshots.refresh))
        self._refreshes.add(task)
        task.add_done_callback(self._refreshed)

    def _refreshed(self, task: asyncio.Task[list[VaultGraph]]) -> None:
        self._refreshes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Not fatal: the next query of the vault tries again, and raises to its caller.
            log.warning("graph.snapshot_failed", error=str(task.exception()))

    def _read(self, vault: str, generation: int) -> VaultGraph:
        graph = read_vault_graph(self._store, vault, generation)
        log.info(
            "graph.snapshot_built",
            vault=vault,
            notes=graph.note_count,
            links=graph.links.count,
            memory_bytes=graph.memory_bytes,
            seconds=round(graph.build_seconds, 4),
        )
        return graph

    async def _on(self, vault: str, query: Callable[[VaultGraph], T]) -> T:
        return await self._pools.run("graph", lambda: query(self._snapshots.get(vault)))

    # ----------------------------------------------------------------- links

    async def outgoing(self, vault: str, path: str) -> LinkList:
        def query(graph: VaultGraph) -> LinkList:
            number = graph.number(path)
            return LinkList(vault, graph.ref(number), graph.outgoing(number))

        return await self._on(vault, query)

    async def backlinks(self, vault: str, path: str) -> LinkList:
        def query(graph: VaultGraph) -> LinkList:
            number = graph.number(path)
            return LinkList(vault, graph.ref(number), graph.backlinks(number))

        return await self._on(vault, query)

    # ----------------------------------------------------------------- walks

    async def neighbours(
        self, vault: str, path: str, depth: int, direction: Direction, limit: int
    ) -> Neighbourhood:
        check_depth(depth, self._config.max_depth)

        def query(graph: VaultGraph) -> Neighbourhood:
            number = graph.number(path)
            found = walk(graph.adjacency[direction], number, depth)
            listed = _nearest(graph, found, limit)
            note = graph.ref(number)
            return Neighbourhood(vault, note, depth, direction, listed, found.total, limit)

        return await self._on(vault, query)

    async def shortest_path(
        self, vault: str, source: str, target: str, direction: Direction
    ) -> NotePath:
        def query(graph: VaultGraph) -> NotePath:
            start, end = graph.number(source), graph.number(target)
            trail = shortest_trail(graph.adjacency[direction], start, end, MAX_PATH_HOPS)
            notes = tuple(graph.ref(number) for number in trail)
            return NotePath(vault, graph.ref(start), graph.ref(end), direction, notes)

        return await self._on(vault, query)

    # ---------------------------------------------------------------- reports

    async def unresolved(self, vault: str) -> UnresolvedReport:
        rows = await self._pools.run("graph", self._store.unresolved_targets, vault)
        targets = tuple(
            UnresolvedTarget(target, count, tuple(sources)) for target, count, sources in rows
        )
        return UnresolvedReport(vault, targets)

    async def orphans(self, vault: str) -> Orphans:
        rows = await self._pools.run("graph", self._store.orphan_notes, vault)
        return Orphans(vault, tuple(NoteRef(path, title) for path, title in rows))

    async def sync(self, projections: Sequence[Projection]) -> SyncReport:
        """Nothing to push; answers from now on are read afresh from the store."""
        self.invalidate()
        return SyncReport(self.backend, vaults=tuple(item.vault for item in projections))


def _nearest(graph: VaultGraph, found: Walk, limit: int) -> tuple[Neighbour, ...]:
    """The first `limit` notes of a walk: nearest first, then by path."""
    listed: list[Neighbour] = []
    paths, titles = graph.paths, graph.titles
    for distance, level in enumerate(found.levels, start=1):
        wanted = limit - len(listed)
        if wanted <= 0:
            break
        ordered = level[np.argsort(graph.path_ranks[level])][:wanted]
        parents = found.parents[ordered].tolist()
        listed.extend(
            Neighbour(paths[note], titles[note], distance, paths[parent])
            for note, parent in zip(ordered.tolist(), parents, strict=True)
        )
    return tuple(listed)
