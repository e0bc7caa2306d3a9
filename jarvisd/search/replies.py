"""What a search hands back: one `SearchHit` per note, in one `SearchReply`.

Frozen values with `as_dict()` for JSON, as graph results are, so the API,
the ask service and the benchmarks read one typed shape and the wire keeps the
one the README documents (lists, not tuples, where JSON has arrays: a test
comparing `reply["results"]` with a literal sees what a client sees).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from jarvisd.indexing.progress import Progress


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One note of a reply: its best chunk's snippet and where that chunk is."""

    vault: str
    path: str
    title: str
    score: float
    scores: dict[str, float]  # each mode's own score ("semantic", "keyword")
    modes: tuple[str, ...]  # the modes that found it (past their threshold and filters)
    snippet: str
    highlights: tuple[tuple[int, int], ...]  # character spans of the query's words
    heading_path: tuple[str, ...]
    lines: tuple[int, int]  # the chunk's first and last line in the file
    tags: tuple[str, ...]
    modified: str  # ISO 8601 with the local offset

    def as_dict(self) -> dict[str, Any]:
        return {
            "vault": self.vault,
            "path": self.path,
            "title": self.title,
            "score": self.score,
            "scores": dict(self.scores),
            "modes": list(self.modes),
            "snippet": self.snippet,
            "highlights": [list(span) for span in self.highlights],
            "heading_path": list(self.heading_path),
            "lines": list(self.lines),
            "tags": list(self.tags),
            "modified": self.modified,
        }


@dataclass(frozen=True, slots=True)
class SearchReply:
    """One page of a search, and how it was answered.

    The ranking fills the first fields (that part is cached); the service adds
    the rest on every reply, cached or not: `rebuilding`, `indexing` (the first
    index run's progress while it goes on), `cached` and `took_ms`.
    """

    query: str
    mode: str
    limit: int
    offset: int
    total: int  # notes matched in all
    next_offset: int | None
    filters: dict[str, object] | None
    results: tuple[SearchHit, ...]
    degraded_reason: str | None = None  # why fewer modes answered than were asked for
    semantic_weight: float | None = None  # hybrid: the cosine's weight this query got
    rebuilding_reason: str | None = None  # the index is rebuilt after a recovery
    indexing: Progress | None = None
    cached: bool = False
    took_ms: float = 0.0

    @property
    def degraded(self) -> bool:
        return self.degraded_reason is not None

    @property
    def rebuilding(self) -> bool:
        return self.rebuilding_reason is not None

    def answered(
        self,
        *,
        cached: bool,
        took_ms: float,
        rebuilding: str | None,
        indexing: Progress | None,
    ) -> SearchReply:
        """This reply as sent now: from the cache or not, how long it took, the index's state."""
        return replace(
            self, cached=cached, took_ms=took_ms, rebuilding_reason=rebuilding, indexing=indexing
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "query": self.query,
            "mode": self.mode,
            "limit": self.limit,
            "offset": self.offset,
            "total": self.total,
            "next_offset": self.next_offset,
            "filters": self.filters,
            "degraded": self.degraded,
            "results": [hit.as_dict() for hit in self.results],
        }
        if self.degraded_reason is not None:
            out["degraded_reason"] = self.degraded_reason
        if self.semantic_weight is not None:
            out["semantic_weight"] = self.semantic_weight
        out["rebuilding"] = self.rebuilding
        if self.rebuilding_reason is not None:
            out["rebuilding_reason"] = self.rebuilding_reason
        out["indexing"] = self.indexing.brief() if self.indexing is not None else None
        out["cached"] = self.cached
        out["took_ms"] = self.took_ms
        return out
