"""scan -> plan -> parse -> embed -> store, incrementally, one run at a time.

A run costs a stat per unchanged file. Files whose stat changed are hashed:
same content means a touch, a known content at a new path means a rename
(vectors kept), anything else is parsed and written, one transaction per note.
Work is pipelined in windows: while the model encodes window k (the
bottleneck), window k+1 is read and parsed and window k-1 is written, and text
whose vector is already stored is never encoded again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from jarvisd.config import Config, ConfigDiff, VaultConfig
from jarvisd.indexing.parsed import subject_text
from jarvisd.indexing.planner import ParsedBatch, Plan, plan_vault, read_and_parse
from jarvisd.indexing.progress import IndexEvent, Progress, RunReport
from jarvisd.indexing.vault import FileInfo
from jarvisd.logs import get_logger
from jarvisd.model.embedder import Embedder
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools
from jarvisd.store import Store, text_hash

__all__ = ["IndexEvent", "Indexer", "Progress", "ProgressListener", "RunReport"]

log = get_logger("jarvisd.indexing.indexer")

WINDOW_FILES = 48  # files parsed, encoded and written together
SUBJECT_BATCH = 512  # notes whose missing subject vectors are encoded together
RATE_PROBE = 64  # texts encoded alone at the start of a run, to time the model early

ProgressListener = Callable[[IndexEvent], None]


class Indexer:
    name = "indexer"

    def __init__(
        self, config: Config, store: Store, embedder: Embedder, pools: Pools, metrics: Metrics
    ) -> None:
        self._config = config
        self._store = store
        self._embedder = embedder
        self._pools = pools
        self._metrics = metrics
        self.lock = asyncio.Lock()  # one run at a time; maintenance takes it too
        self._listeners: set[ProgressListener] = set()
        self._change_listeners: list[Callable[[], None]] = []
        self._run_ids = 0
        self._queued: asyncio.Future[RunReport] | None = None
        self._queued_paths: set[str] | None = None  # what the queued run looks at
        self._paused: str | None = None
        self.current: RunReport | None = None
        self.last: RunReport | None = None
        self._completed = False  # a run of this process has finished its work (state done)
        self.stats: dict[str, int] = {}  # the store's counts (Store.stats)

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self.refresh_stats()

    async def stop(self, deadline: float) -> None:
        # A run cancelled mid-window may still have a write on the io pool: let it land.
        async with self.lock:
            pass

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None:
        # Every run reads vaults, excludes and chunking from here; the owner decides
        # which changes call for a run (knowledge.py).
        self._config = config

    # ---------------------------------------------------------------- wiring

    def subscribe(self, listener: ProgressListener) -> Callable[[], None]:
        """Receive progress events; returns the unsubscribe function."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def on_change(self, callback: Callable[[], None]) -> None:
        """Called after a run that changed the index (search caches listen here)."""
        self._change_listeners.append(callback)

    def notify_change(self) -> None:
        """Tell every listener the index changed under it (a recovered database)."""
        for callback in self._change_listeners:
            callback()

    def _emit(self, event: IndexEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    async def refresh_stats(self) -> dict[str, int]:
        self.stats = await self._pools.run("io", self._store.stats)
        self._metrics.index_notes.set(self.stats.get("notes", 0))
        return self.stats

    # ------------------------------------------------------------------ runs

    def pause(self, reason: str) -> None:
        """Defer runs (a run going on stops after its current window, all it wrote kept)."""
        self._paused = reason

    def resume(self) -> None:
        self._paused = None

    @property
    def paused(self) -> str | None:
        return self._paused

    @property
    def running(self) -> bool:
        return self.lock.locked()

    def first_run_progress(self) -> Progress | None:
        """While this process's first index run is still working: notes done and to do.

        Until it finishes, searches answer from the index as it was before it
        (empty on a first start: nothing is searchable before the run's end), so
        they say so. None once a run has finished (a failed or deferred one does
        not count: the next run is still the first to finish).
        """
        report = self.current
        if report is None or self._completed:
            return None
        return report.progress()

    async def run(
        self,
        *,
        full: bool = False,
        trigger: str = "request",
        reparse: bool = False,
        paths: Iterable[str] | None = None,
    ) -> RunReport:
        """Index every vault, one run at a time.

        `paths` (absolute, as a watcher reports them): look only there, a stat
        per path (and per note of a folder named), not one per note of the
        vault; None: scan every vault whole.

        Asked during a run, it queues one more run; everyone who asks while that
        one waits shares it (a burst of file events costs one extra run, not many),
        and it looks at every path any of them named (everywhere, if one asked so).
        """
        wanted = None if paths is None else set(paths)
        if not (full or reparse) and self._queued is not None:
            if wanted is None or self._queued_paths is None:
                self._queued_paths = None
            else:
                self._queued_paths |= wanted
            return await asyncio.shield(self._queued)
        if not self.lock.locked():
            async with self.lock:
                return await self._run_once(
                    full=full, trigger=trigger, reparse=reparse, paths=wanted
                )
        queued: asyncio.Future[RunReport] = asyncio.get_running_loop().create_future()
        if not (full or reparse):
            self._queued, self._queued_paths = queued, wanted
        try:
            async with self.lock:
                if self._queued is queued:
                    self._queued, wanted = None, self._queued_paths
                report = await self._run_once(
                    full=full, trigger=trigger, reparse=reparse, paths=wanted
                )
                queued.set_result(report)
                return report
        finally:
            if self._queued is queued:
                self._queued = None
            if not queued.done():
                queued.cancel()

    async def _run_once(
        self, *, full: bool, trigger: str, reparse: bool = False, paths: set[str] | None = None
    ) -> RunReport:
        self._run_ids += 1
        report = RunReport(id=self._run_ids, trigger=trigger, full=full, reparse=reparse)
        report.scope = "vaults" if paths is None or full or reparse else "paths"
        self.current = report
        started = time.perf_counter()
        if self._paused is not None:
            return self._deferred(report)
        log.info("index.started", run=report.id, trigger=trigger, full=full)
        vector_table_changed = False
        try:
            report.changed |= await self._pools.run("io", self._forget_vaults, report)
            for vault in self._config.vaults:
                report.changed |= await self._index_vault(vault, report, paths)
            report.changed |= await self._encode_missing_subjects(report)
            report.phase = "finalizing"
            self._emit(report.progress())
            vector_table_changed = await self._pools.run("io", self._finalize, report.full)
            report.state = "done"
            self._metrics.index_succeeded()
        except _Deferred:
            report.state = "deferred"
            report.error = f"deferred: {self._paused}"
            log.warning("index.deferred", run=report.id, reason=self._paused)
        except Exception as error:
            report.state = "failed"
            report.error = f"{type(error).__name__}: {error}"
            log.error("index.failed", run=report.id, error=report.error, exc_info=True)
        finally:
            report.duration_seconds = round(time.perf_counter() - started, 4)
            report.finished_at = time.time()
            self._metrics.index_duration.observe(report.duration_seconds)
            self.current = None
            self.last = report
            self._completed |= report.state == "done"
            # Whatever was written is in the store even if the run then failed or was
            # deferred: caches over the store must see it. So must searches when the
            # HNSW vector table changed (semantic search reads the one its snapshot names).
            # A touch changes only a note's mtime, which search results show as `modified`.
            touched = report.files_touched > 0
            if report.changed or report.files_indexed or vector_table_changed or touched:
                for callback in self._change_listeners:
                    callback()
            await self.refresh_stats()
            self._emit(report)
        log.info("index.finished", **_summary(report))
        return report

    def _deferred(self, report: RunReport) -> RunReport:
        report.state = "deferred"
        report.error = f"deferred: {self._paused}"
        report.finished_at = time.time()
        log.info("index.deferred", run=report.id, reason=self._paused, trigger=report.trigger)
        self.current = None
        return report

    def _forget_vaults(self, report: RunReport) -> bool:
        """Notes of a vault no longer in `vaults:` leave the index; its files stay.

        So a first config naming your own vault replaces the bundled example in
        search results, and is not searched beside it.
        """
        configured = {vault.name for vault in self._config.vaults}
        forgotten = False
        for name in self._store.vault_names():
            if name in configured:
                continue
            deleted = self._store.delete_notes(name, list(self._store.file_states(name)))
            self._store.resolve_links(name)  # clears the links work the deletes left
            report.files_deleted += deleted
            forgotten = True
            log.info("index.vault_forgotten", vault=name, notes=deleted)
        return forgotten

    def _finalize(self, full: bool) -> bool:
        """Derived indexes after the notes: link targets (all of them on `--full`, else
        only those the run's edits can have changed), HNSW.

        The store records pending work in the same transaction as each write, so a
        run killed before this point still gets it done by the next run. True when
        the HNSW vector table was built, rebuilt or dropped.
        """
        before = self._store.vector_table
        for step, seconds in self._store.finalize(self._config.vaults, force=full):
            log.info("index.finalize_step", step=step, seconds=round(seconds, 4))
        return self._store.vector_table != before

    async def _index_vault(
        self, vault: VaultConfig, report: RunReport, paths: set[str] | None
    ) -> bool:
        report.phase = "scanning"
        self._emit(report.progress())
        relative = None if report.scope == "vaults" else in_vault(vault, paths or ())
        if relative is not None and not relative:
            return False  # nothing named in this vault
        plan: Plan = await self._pools.run(
            "io",
            plan_vault,
            self._store,
            vault,
            self._config.indexing.max_file_bytes,
            report.full or report.reparse,
            relative,
        )
        self._account_plan(plan, report)
        report.encoding.planned(plan.to_index)
        cold = plan.to_index and not self._embedder.loaded
        report.phase = "loading model" if cold else "encoding"
        self._emit(report.progress())
        await self._pools.run("io", self._apply_cheap_changes, vault, plan)
        report.changed |= plan.changes > len(plan.to_index)
        if plan.to_index:
            await self._pipeline(vault, plan, report)
        return plan.changes > 0 or report.files_indexed > 0

    async def _encode_missing_subjects(self, report: RunReport) -> bool:
        """Subject vectors for notes that have none: every note after the migration that
        added them (its chunks are not encoded again), a note renamed to a new title.
        One read when there are none. True when some were written."""
        after, written = 0, 0
        while True:
            rows = await self._pools.run(
                "io", self._store.notes_without_subject, SUBJECT_BATCH, after
            )
            if not rows:
                return written > 0
            after = rows[-1][0]
            texts = {row[0]: subject_text(row[1], row[2], row[3]) for row in rows}
            wanted = [(note_id, text) for note_id, text in texts.items() if text]
            if not wanted:
                continue
            if self._paused is not None:
                raise _Deferred
            digests = [text_hash(text) for _, text in wanted]
            known = await self._pools.run(
                "io", self._store.subject_vectors_for_hashes, sorted(set(digests))
            )
            fresh = sorted(
                {text for (_, text), d in zip(wanted, digests, strict=True) if d not in known}
            )
            encoded = dict(zip(fresh, await self._encode(fresh, report), strict=True))
            report.encoding.chunks_encoded -= len(fresh)  # subjects, not chunks (above)
            vectors = np.vstack(
                [
                    known[d] if d in known else encoded[t]
                    for (_, t), d in zip(wanted, digests, strict=True)
                ]
            ).astype(np.float32, copy=False)
            ids = [note_id for note_id, _ in wanted]
            written += await self._pools.run(
                "io", self._store.write_subjects, ids, digests, vectors
            )
            log.info("index.subjects", notes=len(ids), encoded=len(fresh))

    def _account_plan(self, plan: Plan, report: RunReport) -> None:
        report.files_seen += plan.files_seen
        report.files_hashed += plan.hashed
        report.files_unchanged += len(plan.unchanged)
        report.files_touched += len(plan.touched)
        report.files_renamed += len(plan.renamed)
        report.files_deleted += len(plan.deleted)
        report.files_to_index += len(plan.to_index)
        for skipped in plan.skipped:
            report.skip(skipped.path, skipped.reason, skipped.detail)
            self._metrics.index_files.labels(result="skipped").inc()
            log.warning(
                "index.skipped", path=skipped.path, reason=skipped.reason, detail=skipped.detail
            )
        for result, count in (
            ("unchanged", len(plan.unchanged)),
            ("renamed", len(plan.renamed)),
            ("deleted", len(plan.deleted)),
            ("touched", len(plan.touched)),
        ):
            if count:
                self._metrics.index_files.labels(result=result).inc(count)

    def _apply_cheap_changes(self, vault: VaultConfig, plan: Plan) -> None:
        """Touches, renames and deletes: no parsing, no encoding."""
        for info in plan.touched:
            self._store.touch_note(vault.name, info.path, info.size, info.mtime_ns)
        for old_path, info in plan.renamed:
            self._store.rename_note(vault.name, old_path, info.path, info.size, info.mtime_ns)
            log.info("index.renamed", old=old_path, new=info.path)
        for path in plan.deleted:
            self._store.delete_note(vault.name, path)

    # -------------------------------------------------------------- pipeline

    async def _pipeline(self, vault: VaultConfig, plan: Plan, report: RunReport) -> None:
        windows = [
            plan.to_index[i : i + WINDOW_FILES] for i in range(0, len(plan.to_index), WINDOW_FILES)
        ]
        indexing = self._config.indexing
        # The parser's estimate is within a few % of the tokenizer and costs nothing;
        # chunk_tokens sits well below max_seq_length to absorb the difference.
        count_tokens = None

        def parse(window: Sequence[FileInfo]) -> ParsedBatch:
            return read_and_parse(
                self._store, vault, window, indexing, count_tokens, reuse_vectors=not report.full
            )

        loop = asyncio.get_running_loop()
        next_parse = loop.create_task(self._pools.run("io", parse, windows[0]))
        writing: asyncio.Task[None] | None = None
        for number in range(len(windows)):
            batch = await next_parse
            if number + 1 < len(windows):
                next_parse = loop.create_task(self._pools.run("io", parse, windows[number + 1]))
            for path, reason, detail in batch.failed:
                report.skip(path, reason, detail)
                self._metrics.index_files.labels(result="skipped").inc()
                log.warning("index.skipped", path=path, reason=reason, detail=detail)
            if self._paused is not None:
                raise _Deferred  # the windows written so far stay; the next run resumes
            # Progress counts chunks, as the run's report does: the subjects encoded in
            # the chunks' batches (one short text per note) are timed but not counted.
            report.encoding.parsed(windows[number], len(batch.texts) - batch.subjects)
            vectors = await self._encode(batch.texts, report)
            report.encoding.chunks_encoded -= batch.subjects
            if writing is not None:
                await writing
            writing = loop.create_task(
                self._pools.run("io", self._write, vault, batch, vectors, report)
            )
        if writing is not None:
            await writing

    async def _encode(self, texts: list[str], report: RunReport) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._embedder.dimension), dtype=np.float32)
        if not self._embedder.loaded:
            # Seconds on a cold start: say so, and keep them out of the encode rate.
            report.phase = "loading model"
            self._emit(report.progress())
            await self._pools.run("index", self._embedder.load)
            report.phase = "encoding"
            report.encoding.start(restart=True)
            self._emit(report.progress())
        report.encoding.start()
        if report.encoding.rate is None and len(texts) > 2 * RATE_PROBE:
            # A first window takes minutes on a busy machine: time the model on a
            # sample first, so the ETA shows within seconds, not after the window. An
            # even spread, since the time per chunk follows its length: the first 64
            # chunks of obsidian-help average 399 characters, a spread 369, all 376.
            probe = set(range(0, len(texts), len(texts) // RATE_PROBE)[:RATE_PROBE])
            order = sorted(probe) + [i for i in range(len(texts)) if i not in probe]
            sample = await self._encode_counted([texts[i] for i in order[:RATE_PROBE]], report)
            self._emit(report.progress())
            rest = await self._encode_counted([texts[i] for i in order[RATE_PROBE:]], report)
            vectors = np.empty((len(texts), sample.shape[1]), dtype=sample.dtype)
            vectors[order] = np.vstack([sample, rest])
            return vectors
        return await self._encode_counted(texts, report)

    async def _encode_counted(self, texts: list[str], report: RunReport) -> np.ndarray:
        vectors = await self._pools.run("index", self._embedder.encode, texts)
        report.encoding.encoded(len(texts))
        return vectors

    def _write(
        self, vault: VaultConfig, batch: ParsedBatch, vectors: np.ndarray, report: RunReport
    ) -> None:
        for item in batch.notes:
            note_vectors = batch.vectors_for(item, vectors)
            self._store.write_note(
                vault.name,
                item.note,
                note_vectors,
                item.info.size,
                item.info.mtime_ns,
                batch.subject_for(item, vectors),
            )
            report.files_indexed += 1
            report.files_changed += 1
            report.chunks += len(item.note.chunks)
            self._metrics.index_files.labels(result="indexed").inc()
            self._metrics.index_chunks.inc(len(item.note.chunks))
        report.chunks_encoded += len(batch.texts) - batch.subjects
        report.chunks_reused += batch.reused
        self._emit(report.progress())


def in_vault(vault: VaultConfig, paths: Iterable[str]) -> set[str] | None:
    """The vault-relative forms of the absolute `paths` inside `vault` (None: the vault
    folder itself was named, so all of it)."""
    roots = {str(vault.root).rstrip("/"), str(vault.root.resolve()).rstrip("/")}
    out: set[str] = set()
    for path in paths:
        for root in roots:
            if path == root:
                return None
            if path.startswith(root + "/"):
                relative = path[len(root) + 1 :].strip("/")
                if relative:
                    out.add(relative)
                break
    return out


class _Deferred(Exception):
    """Indexing paused mid-run (MINIMAL memory mode): stop between windows."""


def _summary(report: RunReport) -> dict[str, Any]:
    keys = (
        "id",
        "trigger",
        "full",
        "scope",
        "state",
        "files_seen",
        "files_changed",
        "files_unchanged",
        "files_touched",
        "files_renamed",
        "files_deleted",
        "files_skipped",
        "chunks",
        "chunks_encoded",
        "chunks_reused",
        "duration_seconds",
        "error",
    )
    out = {key: getattr(report, key) for key in keys}
    out["run"] = out.pop("id")
    if report.skipped_reasons:
        out["skipped_reasons"] = report.skipped_reasons
    return out
