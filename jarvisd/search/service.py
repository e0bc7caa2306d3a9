"""`SearchService`: the one object the API asks for searches.

It owns the snapshot (see `snapshot`), the result cache and the memory-mode
policy, and runs every search as one call in the `search` thread pool, so the
event loop never blocks. Freshness rule: every index change (the indexer's
`on_change`) clears the result cache and marks the snapshot stale; a search
that starts after the change waits for a snapshot made after it, so it can
never answer with the text an edit replaced. The next snapshot is the last
one patched with the notes that changed (`patching.refresh_snapshot`), so an
edit costs what it changed, not what the vault holds. Once patches have left
enough dead rows, a whole build compacts them in the background; it replaces
the snapshot only if no newer one came meanwhile (the changes it already
holds are patched in again by the next patch, which changes nothing).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from jarvisd.config import Config, ConfigDiff
from jarvisd.indexing.progress import Progress
from jarvisd.logs import get_logger
from jarvisd.model.embedder import Embedder, EmbedderError
from jarvisd.observe.memory import MemoryMode
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools
from jarvisd.search.cache import ResultCache
from jarvisd.search.passages import Passage, best_passages
from jarvisd.search.patching import refresh_snapshot, wants_compaction
from jarvisd.search.ranking import Encoder, Ranked, rank
from jarvisd.search.replies import SearchReply
from jarvisd.search.request import SearchError, SearchRequest, normalise_query, parse_request
from jarvisd.search.snapshot import NoteInfo, Snapshot, build_snapshot
from jarvisd.search.terms import Stemmer
from jarvisd.store import Changes, Store

log = get_logger("jarvisd.search")

RESULTS_CACHE = "results"
EMBEDDING_CACHE = "query_embeddings"
# Share of search.cache.size kept per memory mode.
CACHE_SCALE = {MemoryMode.FULL: 1.0, MemoryMode.LITE: 0.5, MemoryMode.MINIMAL: 0.25}
MINIMAL_REASON = (
    "memory is low (MINIMAL memory mode): the embedding model is unloaded, so this "
    "answer comes from keyword search only"
)


# The first index run's progress while it goes on (`Indexer.first_run_progress`).
FirstRun = Callable[[], Progress | None]


class SearchService:
    name = "search"

    def __init__(
        self,
        config: Config,
        store: Store,
        embedder: Embedder,
        pools: Pools,
        metrics: Metrics,
        indexing: FirstRun | None = None,
    ) -> None:
        """`indexing`: the first index run's progress (`Indexer.first_run_progress`)."""
        self._config = config
        self._indexing = indexing
        self._store = store
        self._embedder = embedder
        self._pools = pools
        self._metrics = metrics
        self._stemmer = Stemmer()
        self.cache = ResultCache(config.search.cache)
        self._mode = MemoryMode.FULL
        self._generation = 0  # bumped by every index change
        self._snapshot: Snapshot | None = None
        self._refresh: asyncio.Task[Snapshot] | None = None
        self._compaction: asyncio.Task[None] | None = None
        self._stopped = False
        self._embedding_counts = (0, 0)  # query-cache hits and misses already reported
        # Set by Knowledge: a failed read may mean a damaged database (it recovers), and
        # while a recovered index is rebuilt every reply says so (the reason, or None).
        self.on_error: Callable[[BaseException], None] = lambda error: None
        self.rebuilding: Callable[[], str | None] = lambda: None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Warm the snapshot in the background; the first search waits for it if need be."""
        self._refresh_task()

    async def stop(self, deadline: float) -> None:
        # An indexing run cancelled by the same shutdown still reports its change:
        # no snapshot is built on a store that is closing.
        self._stopped = True
        for task in (self._refresh, self._compaction):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._refresh = self._compaction = None

    def invalidate(self) -> None:
        """After an index change: forget results, rebuild the snapshot before answering."""
        self._generation += 1
        self.cache.clear()
        if not self._stopped:
            self._refresh_task()

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None:
        self._config = config
        if diff.touches("search"):
            self.cache.configure(config.search.cache, CACHE_SCALE[self._mode])
            self.cache.clear()  # thresholds and fusion settings shape every cached answer

    def on_memory_mode(self, mode: MemoryMode) -> None:
        """LITE halves the result cache; MINIMAL quarters it and drops the vectors."""
        old, self._mode = self._mode, mode
        self.cache.configure(self._config.search.cache, CACHE_SCALE[mode])
        if (old is MemoryMode.MINIMAL) != (mode is MemoryMode.MINIMAL):
            self.cache.clear()  # cached answers were (or were not) degraded
        snapshot = self._snapshot
        if mode is MemoryMode.MINIMAL and snapshot is not None and snapshot.vectors is not None:
            self._snapshot = snapshot.without_vectors()
        elif old is MemoryMode.MINIMAL and mode is not MemoryMode.MINIMAL and snapshot is not None:
            self._refresh_task()  # the vectors come back before the next semantic search

    # -------------------------------------------------------------------- snapshot

    def _refresh_task(self) -> asyncio.Task[Snapshot]:
        if self._refresh is None or self._refresh.done():
            loop = asyncio.get_running_loop()
            self._refresh = loop.create_task(self._build(), name="search-snapshot")
            self._refresh.add_done_callback(self._snapshot_done)
        return self._refresh

    def _snapshot_done(self, task: asyncio.Task[Snapshot]) -> None:
        # A search waiting on the build gets the error itself; this one is for the log.
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("search.snapshot_failed", error=str(error))
            if error is not None:
                self.on_error(error)

    async def _build(self) -> Snapshot:
        generation = self._generation
        with_vectors = not self._minimal
        snapshot = await self._pools.run(
            "search", refresh_snapshot, self._store, self._snapshot, generation, with_vectors
        )
        if self._snapshot is None or self._snapshot.generation <= generation:
            self._snapshot = snapshot
        else:
            # Not the base of the next patch: the changes it took must not be lost.
            self._store.give_back_changes(Changes(everything=True))
        log.info("search.snapshot_built", **snapshot.describe())
        if self._generation != generation:
            # Changed again while building: build once more, without waiting for a search.
            asyncio.get_running_loop().call_soon(self._refresh_task)
        elif (
            self._snapshot is snapshot
            and wants_compaction(snapshot)
            and (self._compaction is None or self._compaction.done())
        ):
            self._compaction = asyncio.get_running_loop().create_task(
                self._compact(snapshot), name="search-compaction"
            )
        return snapshot

    async def _compact(self, current: Snapshot) -> None:
        """A whole build to drop the dead rows patches left, off the hot path."""
        try:
            compacted = await self._pools.run(
                "search", build_snapshot, self._store, current.generation, not self._minimal
            )
        except Exception as error:  # the next patch tries again; searches go on meanwhile
            log.warning("search.compaction_failed", error=str(error))
            return
        if self._snapshot is current and not self._stopped:
            self._snapshot = compacted
            log.info("search.snapshot_compacted", **compacted.describe())

    async def _fresh_snapshot(self, generation: int, vectors: bool) -> Snapshot:
        """A snapshot built after index change number `generation` (waits for one)."""
        while True:
            snapshot = self._snapshot
            if (
                snapshot is not None
                and snapshot.generation >= generation
                # Vectors come back with the next build once the model may be used again.
                and (snapshot.semantic_source != "none" or not vectors or self._minimal)
            ):
                return snapshot
            task = self._refresh_task()
            try:
                await asyncio.shield(task)
            except Exception:
                # A failed build is not kept: the next search starts another one.
                if task is self._refresh:
                    self._refresh = None
                raise

    @property
    def _minimal(self) -> bool:
        return self._mode is MemoryMode.MINIMAL

    # ---------------------------------------------------------------------- search

    async def search_params(self, params: Mapping[str, str]) -> SearchReply:
        """Parse query parameters and search; SearchError for a request past a bound."""
        try:
            names = [vault.name for vault in self._config.vaults]
            request = parse_request(params, self._config.search, vaults=names)
        except SearchError:
            mode = params.get("mode") or "hybrid"
            label = mode if mode in ("hybrid", "semantic", "keyword") else "invalid"
            self._metrics.observe_search(label, 0.0, "rejected")
            raise
        return await self.search(request)

    async def search(self, request: SearchRequest) -> SearchReply:
        started = time.perf_counter()
        self._embedder.threads.mark_interactive()  # indexing leaves a core free for a while
        degraded = self._degraded_reason(request)
        key = (*request.cache_key, degraded)
        cached = self.cache.get(key)
        self._metrics.observe_cache(RESULTS_CACHE, cached is not None)
        if cached is not None:
            return self._finish(request, cached, started, "cached", cached=True)
        # A search that has to wait for the model to load (the first after a cold
        # start: seconds, once) says nothing about search speed: it is counted,
        # but kept out of the latency window the search_slow alert reads.
        cold = request.mode != "keyword" and degraded is None and not self._embedder.loaded
        generation = self._generation
        try:
            reply, degraded = await self._answer(request, generation, degraded)
        except Exception as error:
            seconds = time.perf_counter() - started
            self._metrics.observe_search(request.mode, seconds, "error", window=not cold)
            self.on_error(error)
            raise
        if generation == self._generation:  # no index change while we searched
            self.cache.put(key, reply)
        result = "degraded" if degraded else "ok"
        return self._finish(request, reply, started, result, cached=False, cold=cold)

    def _degraded_reason(self, request: SearchRequest) -> str | None:
        if request.mode == "keyword":
            return None
        if self._minimal:
            return MINIMAL_REASON
        return None

    async def _answer(
        self, request: SearchRequest, generation: int, degraded: str | None
    ) -> tuple[SearchReply, str | None]:
        semantic = request.mode != "keyword" and degraded is None
        snapshot = await self._fresh_snapshot(generation, vectors=semantic)
        encode: Encoder | None = self._embedder.encode_query if semantic else None
        try:
            ranked = await self._pools.run("search", self._rank, snapshot, request, encode)
        except EmbedderError as error:
            # The model cannot be loaded: still answer, from keywords, and say why.
            degraded = f"the embedding model is unavailable ({error}); keyword search only"
            log.warning("search.degraded", reason=degraded)
            ranked = await self._pools.run("search", self._rank, snapshot, request, None)
        self._report_embedding_cache()
        reply = SearchReply(
            query=request.query,
            mode=request.mode,
            limit=request.limit,
            offset=request.offset,
            total=ranked.total,
            next_offset=_next_offset(request, ranked.total),
            filters=request.filters.as_dict() if request.filters.active else None,
            results=ranked.results,
            degraded_reason=degraded,
            semantic_weight=ranked.semantic_weight,
        )
        return reply, degraded

    def _rank(self, snapshot: Snapshot, request: SearchRequest, encode: Encoder | None) -> Ranked:
        return rank(self._store, self._stemmer, snapshot, request, self._config.search, encode)

    def _finish(
        self,
        request: SearchRequest,
        reply: SearchReply,
        started: float,
        result: str,
        *,
        cached: bool,
        cold: bool = False,
    ) -> SearchReply:
        seconds = time.perf_counter() - started
        self._metrics.observe_search(request.mode, seconds, result, window=not cold)
        self._metrics.cache_entries.labels(RESULTS_CACHE).set(len(self.cache))
        # Asked afresh on every reply, cached or not: the run moves on between them.
        return reply.answered(
            cached=cached,
            took_ms=round(seconds * 1000, 3),
            rebuilding=self.rebuilding(),
            indexing=self._indexing() if self._indexing is not None else None,
        )

    def _report_embedding_cache(self) -> None:
        """The embedder counts its own LRU; forward the new hits and misses to Prometheus."""
        stats = self._embedder.cache_stats()
        hits, misses = self._embedding_counts
        self._embedding_counts = (stats.hits, stats.misses)
        if stats.hits > hits:
            self._metrics.cache_hits.labels(EMBEDDING_CACHE).inc(stats.hits - hits)
        if stats.misses > misses:
            self._metrics.cache_misses.labels(EMBEDDING_CACHE).inc(stats.misses - misses)
        self._metrics.cache_entries.labels(EMBEDDING_CACHE).set(stats.size)

    # -------------------------------------------------------------------- for ask

    async def passages(self, question: str, limit: int) -> list[Passage]:
        """The best passages for a question (hybrid; keyword only when the model is away)."""
        self._embedder.threads.mark_interactive()
        request = SearchRequest(
            query=normalise_query(question)[: self._config.search.max_query_chars],
            limit=limit,
            threshold=self._config.search.similarity_threshold,
        )
        semantic = not self._minimal
        snapshot = await self._fresh_snapshot(self._generation, vectors=semantic)
        encode: Encoder | None = self._embedder.encode_query if semantic else None
        store, stemmer, config = self._store, self._stemmer, self._config.search
        try:
            return await self._pools.run(
                "search", best_passages, store, stemmer, snapshot, request, config, encode
            )
        except EmbedderError as error:
            log.warning("search.degraded", reason=f"the embedding model is unavailable ({error})")
            return await self._pools.run(
                "search", best_passages, store, stemmer, snapshot, request, config, None
            )

    async def notes(self) -> list[NoteInfo]:
        """Every indexed note (title, path, tags, mtime) as of the latest index change."""
        snapshot = await self._fresh_snapshot(self._generation, vectors=False)
        return snapshot.listed_notes()

    # ---------------------------------------------------------------------- report

    def stats(self) -> dict[str, Any]:
        snapshot = self._snapshot
        return {
            "memory_mode": self._mode.value,
            "generation": self._generation,
            "snapshot": snapshot.describe() if snapshot is not None else None,
            "caches": {
                RESULTS_CACHE: self.cache.report().as_dict(),
                EMBEDDING_CACHE: self._embedder.cache_stats().as_dict(),
            },
            "model_loaded": self._embedder.loaded,
        }


def _next_offset(request: SearchRequest, total: int) -> int | None:
    following = request.offset + request.limit
    return following if following < total else None
