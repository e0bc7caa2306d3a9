"""What asking reads from the rest of the daemon, as one Protocol over the services.

Templates and retrieval need passages (search), the notes' titles, tags and
times (the search snapshot), index counts (the indexer) and backlinks (the
graph); `KnowledgeSources` gets them from the running services, and tests
can give their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from jarvisd.graph.results import LinkList
from jarvisd.graph.service import GraphService
from jarvisd.indexing.indexer import Indexer
from jarvisd.search import SearchService
from jarvisd.search.passages import Passage
from jarvisd.search.snapshot import NoteInfo


@dataclass(frozen=True, slots=True)
class IndexFacts:
    notes: int
    chunks: int
    links: int
    last_run_at: float | None  # Unix time the last indexing run finished; None: never
    indexing: bool


class AskSources(Protocol):
    async def passages(self, question: str, limit: int) -> list[Passage]: ...

    async def notes(self) -> list[NoteInfo]: ...

    def index_facts(self) -> IndexFacts: ...

    async def backlinks(self, reference: str) -> LinkList: ...


class KnowledgeSources:
    """AskSources over the live services (looked up on each call: they start after us)."""

    def __init__(
        self,
        search: Callable[[], SearchService],
        indexer: Callable[[], Indexer],
        graph: Callable[[], GraphService],
    ) -> None:
        self._search = search
        self._indexer = indexer
        self._graph = graph

    async def passages(self, question: str, limit: int) -> list[Passage]:
        return await self._search().passages(question, limit)

    async def notes(self) -> list[NoteInfo]:
        return await self._search().notes()

    def index_facts(self) -> IndexFacts:
        indexer = self._indexer()
        stats = indexer.stats
        last = indexer.last
        return IndexFacts(
            notes=int(stats.get("notes", 0)),
            chunks=int(stats.get("chunks", 0)),
            links=int(stats.get("links", 0)),
            last_run_at=None if last is None else last.finished_at,
            indexing=indexer.running,
        )

    async def backlinks(self, reference: str) -> LinkList:
        return await self._graph().backlinks(None, reference)
