"""The link graph of the vaults, behind one Protocol with two backends.

`graph.backend` picks one at start-up (a restart changes it):

- `duckdb` (default): SQL over the store's live links table; nothing to sync.
- `neo4j`: a Neo4j server holding a projection that `GraphSync` refreshes
  from DuckDB after index runs. DuckDB stays the source of truth.

Both answer the same operations with the same result types (`results`), and
one contract test suite runs against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from jarvisd.config import GraphConfig
from jarvisd.graph.results import (
    DIRECTIONS,
    Direction,
    GraphBackendError,
    GraphError,
    GraphLink,
    GraphUnavailable,
    InvalidGraphQuery,
    LinkList,
    Neighbour,
    Neighbourhood,
    NoteNotFound,
    NotePath,
    NoteRef,
    Orphans,
    PerVault,
    SyncReport,
    UnresolvedReport,
    UnresolvedTarget,
    check_depth,
    check_direction,
)
from jarvisd.graph.sync import GraphSync, Projection, read_projection
from jarvisd.pools import Pools
from jarvisd.store import Store

__all__ = [
    "DIRECTIONS",
    "Direction",
    "GraphBackendError",
    "GraphError",
    "GraphLink",
    "GraphStore",
    "GraphSync",
    "GraphUnavailable",
    "InvalidGraphQuery",
    "LinkList",
    "Neighbour",
    "Neighbourhood",
    "NoteNotFound",
    "NotePath",
    "NoteRef",
    "Orphans",
    "PerVault",
    "Projection",
    "SyncReport",
    "UnresolvedReport",
    "UnresolvedTarget",
    "check_depth",
    "check_direction",
    "create_graph_store",
    "read_projection",
]


class GraphStore(Protocol):
    """Link-graph queries over one vault at a time; notes are named by vault-relative path.

    Every query raises NoteNotFound for a path the graph does not hold,
    InvalidGraphQuery for a depth outside 1..graph.max_depth, and, for a
    server backend, GraphUnavailable (cannot reach it) or GraphBackendError
    (it answered with a failure).
    """

    @property
    def backend(self) -> str: ...

    @property
    def needs_sync(self) -> bool:
        """True for a projection that GraphSync must keep in step with DuckDB."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def configure(self, config: GraphConfig) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    async def outgoing(self, vault: str, path: str) -> LinkList:
        """The note's links to notes, resolved or not, in the order written."""
        ...

    async def backlinks(self, vault: str, path: str) -> LinkList:
        """Links from other notes that resolve to this one, by linking note."""
        ...

    async def neighbours(
        self, vault: str, path: str, depth: int, direction: Direction, limit: int
    ) -> Neighbourhood:
        """Notes within `depth` link steps, each at its shortest distance."""
        ...

    async def shortest_path(
        self, vault: str, source: str, target: str, direction: Direction
    ) -> NotePath:
        """One shortest walk from source to target; `found` is False when there is none."""
        ...

    async def unresolved(self, vault: str) -> UnresolvedReport:
        """Link targets that name no note, most linked first, with the notes linking them."""
        ...

    async def orphans(self, vault: str) -> Orphans:
        """Notes with no resolved note link in or out."""
        ...

    async def sync(self, projections: Sequence[Projection]) -> SyncReport:
        """Hold exactly these vaults' notes and links (a no-op where nothing is projected)."""
        ...


def create_graph_store(config: GraphConfig, store: Store, pools: Pools) -> GraphStore:
    """The backend `graph.backend` names; the Neo4j driver is imported only when chosen."""
    if config.backend == "duckdb":
        from jarvisd.graph.duckdb import DuckDBGraph

        return DuckDBGraph(config, store, pools)
    if config.backend == "neo4j":
        from jarvisd.graph.neo4j import Neo4jGraph

        return Neo4jGraph(config)
    raise ValueError(f"unknown graph.backend {config.backend!r}; use duckdb or neo4j")
