"""The data services as one component: store, embedder, indexer, watcher, search, graph, ask.

The daemon owns the process (sockets, signals, reload); this owns the notes.
It opens DuckDB off the event loop, warms the model in the background after
READY (importing sentence-transformers alone takes seconds), catches up with
what changed while the daemon was down, and closes the store with a
checkpoint on the way out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Set
from typing import Any

from jarvisd.ask import AskService, KnowledgeSources
from jarvisd.config import Config, ConfigDiff
from jarvisd.graph.service import GraphService
from jarvisd.indexing.indexer import Indexer, RunReport
from jarvisd.indexing.watcher import VaultWatcher
from jarvisd.jobs import JobScheduler
from jarvisd.lifecycle import (
    Background,
    Component,
    announce_stopping,
    start_in_order,
    stop_in_reverse,
)
from jarvisd.logs import get_logger
from jarvisd.model.embedder import Embedder
from jarvisd.observe.memory import MemoryMode
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools
from jarvisd.reports import (
    EmbeddingStatus,
    KnowledgeStatus,
    MaintenanceReport,
    MaintenanceStep,
    StoreStatus,
)
from jarvisd.search import SearchService
from jarvisd.store import Recovery, Store, damage_text, first_line, is_damage_while_serving

log = get_logger("jarvisd.knowledge")

# What every daemon serves; clients (jarvisctl mcp) list their tools from these.
CAPABILITIES = ("search", "graph", "notes", "notes.list")


class Knowledge:
    """A component of the daemon made of components: once the store is open, its
    parts start in order (graph, indexer, its own background tasks, search, ask,
    watcher) and stop in reverse, and each reload reaches every one of them."""

    name = "knowledge"

    def __init__(self, config: Config, metrics: Metrics, pools: Pools, jobs: JobScheduler) -> None:
        self._config = config
        self._metrics = metrics
        self._pools = pools
        self._jobs = jobs
        self.embedder = Embedder(config.embedding)
        self._store: Store | None = None
        self._indexer: Indexer | None = None
        self._search: SearchService | None = None
        self._graph: GraphService | None = None
        self._memory_mode = MemoryMode.FULL  # the first sample may set it before start()
        self.watcher = VaultWatcher(config, self._on_files_changed)
        sources = KnowledgeSources(lambda: self.search, lambda: self.indexer, lambda: self.graph)
        self.ask = AskService(config, sources, self.embedder, pools, metrics)
        self._background = Background()
        self._started: list[Component] = []
        self.model_state = "not loaded"
        # `jarvisd --rebuild-index`: why, until the first open sets the files aside.
        self.rebuild_requested: str | None = None
        # Recovery from a damaged database (store.recovery): why the daemon is unhealthy
        # while a recovery runs, the last recovery, and whether its rebuild still runs.
        self.unhealthy: str | None = None
        self.recovery: Recovery | None = None
        self.rebuilding = False
        self._recovering = False
        self.on_recovered: Callable[[Recovery], None] = lambda recovery: None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the store is not open yet")
        return self._store

    @property
    def indexer(self) -> Indexer:
        if self._indexer is None:
            raise RuntimeError("the indexer is not started yet")
        return self._indexer

    @property
    def search(self) -> SearchService:
        if self._search is None:
            raise RuntimeError("search is not started yet")
        return self._search

    @property
    def graph(self) -> GraphService:
        if self._graph is None:
            raise RuntimeError("the graph is not started yet")
        return self._graph

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        config = self._config
        dimension = await self._pools.run("io", self.embedder.probe_dimension)
        identity = f"{config.embedding.model}|{config.embedding.quantize}"
        store = await self._pools.run("io", self._open_store, dimension, identity)
        self._store = store
        self._graph = GraphService(config, store, self._pools, self._metrics)
        self._indexer = Indexer(config, store, self.embedder, self._pools, self._metrics)
        self._search = SearchService(
            config,
            store,
            self.embedder,
            self._pools,
            self._metrics,
            indexing=self._indexer.first_run_progress,
        )
        self._search.on_memory_mode(self._memory_mode)
        self._search.on_error = self.storage_error
        self._search.rebuilding = self._rebuilding_reason
        self._wire_index_listeners(self._indexer, self._search, self._graph)
        # Stopped in reverse: the watcher and answers first (they read search), search
        # before the background index runs are cancelled (a cancelled run still reports
        # its change), the indexer's last write before the graph, the store last.
        parts: list[Component] = [
            self._graph,
            self._indexer,
            self._background,
            self._search,
            self.ask,
            self.watcher,
        ]
        await start_in_order(parts, self._started)
        self._jobs.register(
            "index",
            self.index_job,
            schedule_key="index",
            description="Index changed notes in every vault",
        )
        self._jobs.register(
            "maintenance",
            self.run_maintenance,
            schedule_key="maintenance",
            description="DuckDB maintenance: ANALYZE, HNSW rebuild, CHECKPOINT",
        )
        if store.recovery is not None:
            self._recovered(store.recovery)

    def _wire_index_listeners(
        self, indexer: Indexer, search: SearchService, graph: GraphService
    ) -> None:
        """Every "index changed" listener, in one place, in the order they run."""
        # Cached results go and the search snapshot is rebuilt (or patched).
        indexer.on_change(search.invalidate)
        # The graph drops its snapshots (duckdb) or marks its projection for a sync;
        # a failed run may have written notes too, so its events count as well.
        indexer.on_change(graph.on_index_changed)
        indexer.subscribe(graph.on_index_event)
        # Titles and tags the ask templates know.
        indexer.on_change(self.ask.invalidate)

    def _open_store(self, dimension: int, identity: str) -> Store:
        # A different model (or quantisation) makes stored vectors meaningless: drop
        # them, and the catch-up run re-embeds every note.
        rebuild, self.rebuild_requested = self.rebuild_requested, None
        return Store(
            self._config.database_path,
            self._config.storage,
            dimension,
            model=identity,
            reset_vectors=True,
            # The index is derived from the vault: a database that cannot be opened is
            # kept aside and rebuilt, never a reason to stay down (issue #9).
            recover=True,
            rebuild=rebuild,
        )

    def after_ready(self) -> None:
        """Work that must not delay READY: warming the model, catching up with the vault."""
        if self._memory_mode is MemoryMode.MINIMAL:
            self.indexer.pause("memory mode MINIMAL")
            self.model_state = "not loaded (MINIMAL memory mode)"
        elif self._config.embedding.preload:
            self._spawn(self.load_model(), "preload")
        if self._config.indexing.on_start or self.rebuilding:
            self.start_index_run(False, "recovery" if self.rebuilding else "start")

    def stopping(self) -> None:
        """A stop is requested: its started parts hear it (ask ends the answers it writes)."""
        announce_stopping(self._started, log)

    async def stop(self, deadline: float) -> None:
        await stop_in_reverse(self._started, deadline, log)
        self._started.clear()
        await self._background.stop(deadline)  # what a start that failed early spawned
        if self._store is not None:
            await self._pools.run("io", self._store.close)
            log.info("store.closed", checkpointed=True)

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None:
        self._config = config
        if diff.touches("embedding"):
            self.embedder.configure(config.embedding)
        for part in self._started:
            part.reconfigure(config, diff)
        if diff.touches("storage") and self._store is not None:
            self._spawn(self._reconfigure_store(config, diff), "store")
        if diff.touches("indexing.chunk_tokens", "indexing.chunk_overlap"):
            # New chunking for every note; unchanged chunk texts keep their vectors.
            self._spawn(self.indexer.run(reparse=True, trigger="reload"), "index-reparse")
        if diff.touches("vaults"):
            self.start_index_run(False, "reload")

    async def _reconfigure_store(self, config: Config, diff: ConfigDiff) -> None:
        await self._pools.run("io", self.store.configure, config.storage)
        if diff.touches("storage.hnsw"):
            # A new HNSW setting applies when a run finalizes: after the store has it.
            await self.indexer.run(trigger="reload")

    def on_memory_mode(self, old: MemoryMode, new: MemoryMode, reason: str) -> None:
        """MINIMAL frees the embedding model; going back up reloads it lazily."""
        self._memory_mode = new
        self.ask.on_memory_mode(new)  # the LLM answers in FULL only
        if self._search is not None:
            self._search.on_memory_mode(new)  # before the unload: no search reloads the model
        self.embedder.set_memory_scale(0.5 if new is MemoryMode.LITE else 1.0)
        if new is MemoryMode.MINIMAL:
            # Indexing needs the model: defer runs rather than load it right back.
            if self._indexer is not None:
                self._indexer.pause("memory mode MINIMAL")
            self.model_state = "unloaded (MINIMAL memory mode)"
            self._metrics.set_model("embedding", False)
            self._spawn(self._pools.run("index", self.embedder.unload), "unload")
            log.warning("embedding.unloaded", reason=reason, mode=new.value)
        elif old is MemoryMode.MINIMAL:
            self.model_state = "not loaded (loads on next use)"
            if self._indexer is not None:
                self._indexer.resume()
                self.start_index_run(False, "memory")  # catch up on what was deferred

    # ------------------------------------------------------------------ work

    def _spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        return self._background.spawn(work, name)

    async def load_model(self) -> None:
        started = time.perf_counter()
        self.model_state = "loading"
        try:
            await self._pools.run("index", self.embedder.load)
        except Exception as error:
            self.model_state = f"failed: {error}"
            log.error("embedding.load_failed", error=str(error))
            return
        self.model_state = "loaded"
        self._metrics.set_model("embedding", True, float(self.embedder.memory_bytes()))
        log.info(
            "embedding.loaded",
            model=self.embedder.model_name,
            device=self.embedder.device,
            seconds=round(time.perf_counter() - started, 2),
        )
        await self.ask.warm()  # the templates' examples, in one batch, while nobody waits

    def start_index_run(self, full: bool, trigger: str) -> asyncio.Task[RunReport]:
        return self._spawn(self._index(full=full, trigger=trigger), f"index-{trigger}")

    async def _index(
        self, *, full: bool = False, trigger: str, paths: Set[str] | None = None
    ) -> RunReport:
        report = await self.indexer.run(full=full, trigger=trigger, paths=paths)
        if report.state == "done" and self.rebuilding and not self._recovering:
            self.rebuilding = False
            log.info("store.rebuilt", run=report.id, seconds=report.duration_seconds)
        elif report.state == "failed" and report.error and damage_text(report.error):
            self.storage_error(RuntimeError(report.error))
        return report

    async def index_job(self) -> None:
        report = await self._index(trigger="schedule")
        if report.state not in ("done", "deferred"):
            raise RuntimeError(report.error or "indexing failed")

    async def _on_files_changed(self, paths: Set[str] | None) -> None:
        await self._index(trigger="watch", paths=paths)

    # -------------------------------------------------------------- recovery

    def _rebuilding_reason(self) -> str | None:
        if not self.rebuilding or self.recovery is None:
            return None
        if self.recovery.phase == "requested":
            return (
                "the index is being rebuilt from the vault on request (jarvisd "
                "--rebuild-index), so results may be missing"
            )
        return (
            "the database was damaged and replaced by a fresh one; the index is being "
            f"rebuilt from the vault, so results may be missing ({self.recovery.reason})"
        )

    def _recovered(self, recovery: Recovery) -> None:
        self.recovery = recovery
        self.rebuilding = True
        self.on_recovered(recovery)

    def storage_error(self, error: BaseException) -> None:
        """A read or write failed; a damaged database file starts a recovery."""
        if self._recovering or self._store is None or self._store.closed:
            return
        text = str(error)
        if "database has been invalidated" in text and self.unhealthy is None:
            # DuckDB 1.5.5 invalidates the database after a failed checkpoint (found with
            # the database folder made read-only: "Could not remove file ... .wal:
            # Read-only file system"); every later query fails until a restart. Not
            # damage: the file is fine, so nothing is set aside; /health and status say
            # what to do.
            cause = text.split("Original error:", 1)[-1].strip().strip('"')[:300]
            self.unhealthy = (
                f"the database was invalidated by DuckDB after a failed write ({cause}); "
                "fix the cause (a read-only or full disk) and restart jarvisd"
            )
            log.error("store.invalidated", path=str(self._store.path), error=cause)
            return
        if not (is_damage_while_serving(error) or damage_text(str(error))):
            return
        reason = first_line(error)
        self._recovering = True
        self.unhealthy = f"the database is damaged, recovering: {reason}"
        log.error("store.damaged", path=str(self._store.path), error=reason)
        self._spawn(self._recover_while_serving(reason), "store-recovery")

    async def _recover_while_serving(self, reason: str) -> None:
        try:
            async with self.indexer.lock:  # no index run writes while the files change
                recovery = await self._pools.run("io", self.store.recover, reason)
            await self.indexer.refresh_stats()
        except Exception as error:
            # Still unhealthy: /health says why, and a restart tries the open-time path.
            self.unhealthy = f"the database is damaged and recovery failed: {error}"
            log.error("store.recovery_failed", error=str(error), exc_info=True)
            self._recovering = False
            return
        self._recovering = False
        self.unhealthy = None
        self._recovered(recovery)
        self.indexer.notify_change()  # search and graph drop what they read from the old file
        self.start_index_run(False, "recovery")

    async def run_maintenance(self) -> MaintenanceReport:
        """DuckDB maintenance, never beside an indexing run (it waits for the run)."""
        async with self.indexer.lock:
            started = time.perf_counter()
            before = await self._pools.run("io", lambda: self.store.vector_table)
            steps = await self._pools.run("io", self.store.maintenance)
            after = await self._pools.run("io", lambda: self.store.vector_table)
            if self._search is not None and after != before:
                self._search.invalidate()  # searches must move to the rebuilt vector table
        for step, seconds in steps:
            log.info("maintenance.step", step=step, seconds=round(seconds, 4))
        total = round(time.perf_counter() - started, 4)
        log.info("maintenance.finished", seconds=total)
        return MaintenanceReport(
            steps=tuple(MaintenanceStep(step, seconds) for step, seconds in steps), seconds=total
        )

    def store_status(self) -> StoreStatus:
        return StoreStatus(
            unhealthy_reason=self.unhealthy, rebuilding=self.rebuilding, recovery=self.recovery
        )

    def status(self) -> KnowledgeStatus:
        indexer = self._indexer
        current = indexer.current if indexer else None
        return KnowledgeStatus(
            store=self.store_status(),
            index=indexer.stats if indexer else None,
            indexing=current.progress() if current else None,
            last_index_run=indexer.last if indexer else None,
            embedding=EmbeddingStatus(
                state=self.model_state,
                loaded=self.embedder.loaded,
                model=self._config.embedding.model,
            ),
            watching=self.watcher.active,
            graph=self._graph.status() if self._graph else {"backend": self._config.graph.backend},
            ask=self.ask.status(),
        )

    def model_memory_reports(self) -> dict[str, Callable[[], dict[str, Any]]]:
        """The models it holds, each with its memory report (for /metrics/memory)."""
        return {"embedding": self.embedder.memory_report, "llm": self.ask.llm.memory_report}

    def capabilities(self) -> list[str]:
        """What this daemon answers now: `ask` once the ask service is up (MCP lists it then)."""
        return [*CAPABILITIES, *(["ask"] if self.ask.started else [])]
