"""`Store`: the one object the rest of jarvisd uses to reach DuckDB.

Synchronous and thread-safe; callers run it in the thread pools. One writer
connection serialised by a lock (DuckDB allows one writer anyway, and a single
writer never meets a write-write conflict), and one read cursor per thread
(`connection.cursor()` is a separate connection to the same database instance:
readers see committed snapshots and never wait for the writer). The read
methods are `StoreReads`'s (`reading`), a mixin over those cursors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import numpy.typing as npt

from jarvisd.config import StorageConfig, VaultConfig
from jarvisd.indexing.links import LinkResolver
from jarvisd.indexing.parsed import ParsedNote
from jarvisd.logs import get_logger
from jarvisd.store import bm25, indexes, linking, recovery, schema, writes
from jarvisd.store.columns import SnapshotReads
from jarvisd.store.connection import apply_settings, open_database
from jarvisd.store.errors import NoteWriteError, StoreClosedError, StoreError, naming_a_full_disk
from jarvisd.store.maintenance import Step, maintenance, timed
from jarvisd.store.reading import StoreReads
from jarvisd.store.records import Changes, LinkKey, LinkWork
from jarvisd.store.recovery import Recovery
from jarvisd.store.writes import Subject

log = get_logger("jarvisd.store")

T = TypeVar("T")
Connection = duckdb.DuckDBPyConnection
# Rebuild the HNSW vector table once this share of its vectors changed: until then
# search scores the newer chunks exactly, which stays cheap at 20 %.
REBUILD_SHARE = 0.2


def links_task(vault: str) -> str:
    return f"links:{vault}"


class Store(StoreReads, SnapshotReads):
    """The notes database: schema, per-note transactions, search indexes, upkeep; the
    reads are `StoreReads`'s (`reading`) and the search snapshot's `SnapshotReads`'s
    (`columns`)."""

    def __init__(
        self,
        path: Path,
        config: StorageConfig,
        dimension: int = 384,
        model: str | None = None,
        *,
        reset_vectors: bool = False,
        recover: bool = False,
        rebuild: str | None = None,
    ) -> None:
        """With `recover`, a database that cannot be opened because of its content is
        kept aside and replaced by a fresh one (`recovery` says so); see `recovery`.
        With `rebuild` (why: `jarvisd --rebuild-index`), the files are kept aside the
        same way before opening, whatever their state, and `recovery` says so."""
        self._path = Path(path)
        self._config = config
        self._dimension = int(dimension)
        self._write_lock = threading.RLock()
        # One HNSW index scan at a time: three at once segfault in vss (DuckDB 1.5.5).
        self._vector_lock = threading.Lock()
        self._cursor_lock = threading.Lock()
        self._local = threading.local()
        self._cursors: list[tuple[threading.Thread, Connection]] = []
        self._closed = False
        self._model = model
        # Bumped when a recovery replaces the database: threads' cursors are then stale.
        self._generation = 0
        self._pending: set[str] = set()
        self._links_unknown: set[str] = set()
        self._link_work: dict[str, LinkWork] = {}
        self._resolvers: dict[str, LinkResolver] = {}  # per vault, kept up to date by LinkWork
        # Since the last take_changes; a new process's first snapshot is built whole.
        self._changes = Changes(everything=True)
        self._changes_lock = threading.Lock()
        self.recovery: Recovery | None = None
        self._broken: str | None = None  # set when a reopen after a fatal error failed
        if rebuild is not None:
            kept = recovery.set_aside(self._path)
            self.recovery = Recovery(reason=rebuild, kept=kept, at=time.time(), phase="requested")
            log.warning(
                "store.set_aside", path=str(self._path), kept=[str(p) for p in kept], reason=rebuild
            )
        try:
            self._connect(reset_vectors)
        except (duckdb.Error, StoreError) as error:
            if not recover or not recovery.is_damage(error):
                raise
            self.recovery = self._replace_database(recovery.first_line(error), "open")

    def _connect(self, reset_vectors: bool) -> None:
        """Open the file, migrate, check the embedding, read the pending work."""
        self._root = _open(self._path, self._config)
        try:
            # The root only spawns cursors; writes go through their own cursor.
            self._writer = self._root.cursor()
            self._schema_version = schema.migrate(self._writer, self._path, self._dimension)
            if schema.check_embedding(
                self._writer, self._path, self._dimension, self._model, reset_vectors
            ):
                log.warning(
                    "store.vectors_reset",
                    path=str(self._path),
                    dimension=self._dimension,
                    model=self._model,
                )
            if indexes.drop_legacy_vector_index(self._writer):
                log.warning("store.legacy_hnsw_dropped", path=str(self._path))
            rows = self._writer.execute("SELECT task FROM pending_work").fetchall()
            self._pending = {str(row[0]) for row in rows}
            # Link work left by an earlier process is not known in detail: those vaults'
            # next resolution is a whole one; after it, only the links edits touched.
            self._links_unknown = {
                task.removeprefix("links:") for task in self._pending if task.startswith("links:")
            }
            self._link_work = {}
            self._resolvers = {}
            with self._changes_lock:  # a fresh or replaced database: the snapshot is rebuilt
                self._changes = Changes(everything=True)
        except BaseException:
            self._root.close()
            raise

    def _replace_database(self, reason: str, phase: str) -> Recovery:
        """Keep the damaged files aside, open a fresh database in their place."""
        kept = recovery.set_aside(self._path)
        self._connect(reset_vectors=True)
        self._generation += 1
        done = Recovery(reason=reason, kept=kept, at=time.time(), phase=phase)
        log.error(
            "store.recovered",
            path=str(self._path),
            kept=[str(path) for path in kept],
            reason=reason,
            phase=phase,
        )
        return done

    def recover(self, reason: str) -> Recovery:
        """While serving: close every connection, keep the files aside, start fresh.

        A query another thread runs on a cursor being closed ends with an error
        ("No open result set"), measured on DuckDB 1.5.5; the close waits for it.
        No checkpoint first: writing into a damaged file can only spread the damage.
        """
        with self._write_lock, self._cursor_lock:
            self._check_open()
            for _, cursor in self._cursors:
                _close_quietly(cursor)
            self._cursors.clear()
            _close_quietly(self._writer)
            _close_quietly(self._root)
            self.recovery = self._replace_database(reason, "serving")
            return self.recovery

    # ------------------------------------------------------------------ plumbing

    @property
    def path(self) -> Path:
        return self._path

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def schema_version(self) -> int:
        return self._schema_version

    @property
    def closed(self) -> bool:
        return self._closed

    def reader(self) -> Connection:
        """This thread's read cursor, for the store's own read statements (`StoreReads`)."""
        cursor: Connection | None = getattr(self._local, "cursor", None)
        if (
            cursor is None
            or self._closed
            or getattr(self._local, "generation", None) != self._generation
        ):
            with self._cursor_lock:
                self._check_open()
                # Threads of a replaced pool are gone: their cursors can go too.
                for thread, old in self._cursors:
                    if not thread.is_alive():
                        old.close()
                self._cursors = [item for item in self._cursors if item[0].is_alive()]
                cursor = self._root.cursor()
                self._cursors.append((threading.current_thread(), cursor))
            self._local.cursor = cursor
            self._local.generation = self._generation
        return cursor

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the store {self._path} is closed")
        if self._broken is not None:
            raise StoreError(self._broken)

    def _transaction(self, action: Callable[[Connection], T], tasks: Iterable[str] = ()) -> T:
        """Run `action` in one transaction on the writer, recording the derived work it owes."""
        with self._write_lock:
            self._check_open()
            connection = self._writer
            new_tasks = [task for task in tasks if task not in self._pending]
            connection.execute("BEGIN TRANSACTION")
            try:
                result = action(connection)
                for task in new_tasks:
                    connection.execute("INSERT OR IGNORE INTO pending_work VALUES (?)", [task])
                connection.execute("COMMIT")
            except BaseException as error:
                _rollback(connection)
                self._reopen_if_invalidated(error)
                raise
            self._pending.update(new_tasks)
            return result

    def _changed(
        self,
        action: Callable[[Connection, Changes], T],
        tasks: Iterable[str] = (),
        vault: str | None = None,
    ) -> T:
        """`_transaction` for writes that say what they changed, recorded once committed."""
        changes = Changes()
        result = self._transaction(lambda connection: action(connection, changes), tasks)
        with self._changes_lock:
            self._changes.merge(changes)
            if vault is not None:
                self._link_work.setdefault(vault, LinkWork()).merge(changes.links)
        return result

    def take_changes(self) -> Changes:
        """What writes changed since the last call (the search snapshot patches with it)."""
        with self._changes_lock:
            changes, self._changes = self._changes, Changes()
        return changes

    def give_back_changes(self, changes: Changes) -> None:
        """Changes a snapshot took but did not use (its build failed): owed again."""
        with self._changes_lock:
            self._changes.merge(changes)

    def _done(self, connection: Connection, task: str) -> None:
        connection.execute("DELETE FROM pending_work WHERE task = ?", [task])

    # -------------------------------------------------------------------- writes

    def write_note(
        self,
        vault: str,
        note: ParsedNote,
        vectors: npt.NDArray[np.float32],
        size: int,
        mtime_ns: int,
        subject: Subject | None = None,
    ) -> int:
        """Replace everything stored for (vault, note.path) in one transaction; the note id.
        `subject`: (text hash, vector) of the note's subject text (`ParsedNote.subject`)."""
        checked = self._checked_vectors(vault, note, vectors)
        if subject is not None:
            subject = (subject[0], self._checked_subject(vault, note.path, subject[1]))
        try:
            return self._changed(
                lambda c, changes: writes.write_note(
                    c, vault, note, checked, size, mtime_ns, changes, subject
                ),
                (links_task(vault),),
                vault,
            )
        except duckdb.Error as error:
            raise NoteWriteError(
                f"could not write {vault}:{note.path}, its previous version is kept: {error}"
            ) from error

    def _checked_vectors(
        self, vault: str, note: ParsedNote, vectors: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        array = np.asarray(vectors)
        expected = (len(note.chunks), self._dimension)
        if not note.chunks and array.size == 0:
            return np.zeros(expected, dtype=np.float32)
        if array.shape != expected:
            raise NoteWriteError(
                f"{vault}:{note.path}: got vectors of shape {array.shape}, expected {expected} "
                f"(one {self._dimension}-dimensional vector per chunk); nothing was written"
            )
        if not np.isfinite(array).all():
            raise NoteWriteError(
                f"{vault}:{note.path}: the vectors hold NaN or infinite values (a model "
                "problem); nothing was written"
            )
        return array.astype(np.float32, copy=False)

    def _checked_subject(
        self, vault: str, path: str, vector: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        array = np.asarray(vector, dtype=np.float32).reshape(-1)
        if array.shape != (self._dimension,) or not np.isfinite(array).all():
            raise NoteWriteError(
                f"{vault}:{path}: the subject vector has shape {array.shape} or values that are "
                f"not finite (expected {self._dimension} finite floats); nothing was written"
            )
        return array

    def write_subjects(
        self, identifiers: Sequence[int], hashes: Sequence[str], vectors: npt.NDArray[np.float32]
    ) -> int:
        """Subject vectors for notes that have none (`notes_without_subject`), in one
        transaction; notes deleted or given one meanwhile are skipped. How many written."""
        if not identifiers:
            return 0
        checked = np.asarray(vectors, dtype=np.float32)
        if checked.shape != (len(identifiers), self._dimension) or not np.isfinite(checked).all():
            raise NoteWriteError(
                f"subject vectors of shape {checked.shape} for {len(identifiers)} notes, or not "
                "finite; nothing was written"
            )
        return self._changed(
            lambda c, changes: writes.write_subjects(c, identifiers, hashes, checked, changes)
        )

    def touch_note(self, vault: str, path: str, size: int, mtime_ns: int) -> bool:
        """Record a new stat for unchanged content; False when the note is not stored."""
        return self._changed(
            lambda c, changes: writes.touch_note(c, vault, path, size, mtime_ns, changes)
        )

    def rename_note(
        self, vault: str, old_path: str, new_path: str, size: int, mtime_ns: int
    ) -> bool:
        """Move a note, keeping its chunks and vectors; False when old_path is not stored."""
        if old_path == new_path:
            return self.touch_note(vault, new_path, size, mtime_ns)
        return self._changed(
            lambda c, changes: writes.rename_note(
                c, vault, old_path, new_path, size, mtime_ns, changes
            ),
            (links_task(vault),),
            vault,
        )

    def delete_note(self, vault: str, path: str) -> bool:
        """Delete a note and all it owns; links to it become unresolved."""
        return self.delete_notes(vault, [path]) > 0

    def delete_notes(self, vault: str, paths: Sequence[str]) -> int:
        """Delete many notes in ONE transaction; returns how many were stored.

        One transaction: a folder deleted on disk disappears from the index at
        once (and one commit is far cheaper than thousands); each note is still
        all-or-nothing, and a failed batch changes nothing and can be retried.
        """
        if not paths:
            return 0
        return self._changed(
            lambda c, changes: writes.delete_notes(c, vault, paths, changes),
            (links_task(vault),),
            vault,
        )

    # --------------------------------------------------------------------- links

    def set_link_targets(self, vault: str, mapping: Mapping[LinkKey, str | None]) -> int:
        """Point links at note paths (None: unresolved) in one transaction; links changed."""
        return self._transaction(lambda c: linking.set_link_targets(c, vault, mapping))

    def resolve_links(self, vault: str, *, whole: bool = True) -> int:
        """Resolve the vault's links with `LinkResolver`; links whose target changed.

        `whole`: every link; else only those the edits since the last resolution
        can have changed (`LinkWork`), unless an earlier process left link work
        whose detail is lost (then every link all the same)."""
        with self._write_lock:
            with self._changes_lock:
                work = self._link_work.pop(vault, LinkWork())
            # Popped: a failed resolution leaves none, and the next one builds it afresh.
            resolver = self._resolvers.pop(vault, None)
            every = whole or vault in self._links_unknown

            def resolve(connection: Connection) -> int:
                nonlocal resolver
                if every:
                    changed, resolver = linking.resolve_vault_links(connection, vault)
                else:
                    if resolver is None:
                        resolver = linking.vault_resolver(connection, vault)
                    changed = linking.resolve_links_of(connection, vault, work, resolver)
                self._done(connection, links_task(vault))
                return changed

            try:
                changed = self._transaction(resolve)
            except BaseException:
                with self._changes_lock:
                    self._link_work.setdefault(vault, LinkWork()).merge(work)
                raise
            if resolver is not None:
                self._resolvers[vault] = resolver
            self._pending.discard(links_task(vault))
            self._links_unknown.discard(vault)
            return changed

    # ------------------------------------------------------------------- indexes

    def rebuild_bm25(self) -> None:
        """BM25's tables rebuilt from every chunk in one transaction. Never needed in
        operation (writes keep them current); a check, and the reference tests compare with."""
        self._changed(lambda connection, changes: _everything(bm25.rebuild, connection, changes))

    def ensure_vector_index(self, rebuild_share: float = REBUILD_SHARE) -> bool:
        """Build, rebuild or drop the HNSW vector table as `storage.hnsw` asks; True when
        one exists after. Tables an earlier call replaced are dropped first."""
        hnsw = self._config.hnsw
        with self._write_lock, self._vector_lock:  # no index scan while a table goes
            retired = self._transaction(indexes.drop_retired_vector_tables)
        if retired:
            log.info("store.vector_tables_dropped", tables=retired)
        started = time.perf_counter()

        def building(table: str, chunks: int) -> None:
            # Before the build: one that a kill cut short is built whole by the next run.
            log.info("store.vector_index_building", table=table, chunks=chunks)

        change = self._transaction(
            lambda c: indexes.ensure_vector_index(c, hnsw, rebuild_share, building)
        )
        if change.built or change.retired:
            log.info(
                "store.vector_index",
                exists=change.exists,
                built=change.built,
                retired=change.retired,
                seconds=round(time.perf_counter() - started, 3),
            )
        return change.exists

    def finalize(self, vaults: Iterable[VaultConfig | str], force: bool = False) -> list[Step]:
        """Derived work after an index run: link targets, HNSW; each step timed (BM25
        changed with each note already).

        Only what writes left pending (recorded in the database, so a crash
        between the writes and this still gets it done), and of the links only
        those the edits can have changed; everything with force (`--full`).
        """
        steps: list[Step] = []
        names = [vault if isinstance(vault, str) else vault.name for vault in vaults]
        for name in names:
            # No resolver yet (a new process): built here, in the start-up run, not
            # in the first edit's (1.3 s at 10,000 notes on 2 busy cores).
            if force or links_task(name) in self._pending or name not in self._resolvers:
                resolve = partial(self.resolve_links, name, whole=force)
                steps.append(timed(links_task(name), resolve))
        steps.append(timed("vector_index", self.ensure_vector_index))
        return steps

    # --------------------------------------------------------------- maintenance

    def maintenance(self) -> list[Step]:
        """ANALYZE, HNSW vector table refresh, CHECKPOINT: (step, seconds) each."""
        try:
            with self._write_lock, naming_a_full_disk(self._path, "maintenance"):
                self._check_open()
                return maintenance(self._writer, partial(self.ensure_vector_index, 0.0))
        except BaseException as error:
            self._reopen_if_invalidated(error)
            raise

    def checkpoint(self) -> None:
        try:
            with self._write_lock:
                self._check_open()
                self._writer.execute("CHECKPOINT")
        except BaseException as error:
            self._reopen_if_invalidated(error)
            raise

    def _reopen_if_invalidated(self, error: BaseException) -> None:
        """After a fatal error DuckDB invalidates the whole instance: every later query
        fails with "database has been invalidated" until it is opened again. Measured
        with 1.5.5: a CHECKPOINT (maintenance's, or the automatic one at 16 MiB of WAL
        inside a commit) that runs out of disk. The files are intact (the failed
        checkpoint wrote nothing that counts) and open again even while the disk is
        full, so they are opened again in place and the WAL replays. Other fatal
        errors (a read-only folder: the WAL cannot be removed, nor reopened for
        writing) are left to the caller: the daemon turns unhealthy and says why."""
        if self._closed or not recovery.is_invalidation(error):
            return
        if "no space left" not in " ".join(map(str, recovery.chain(error))).lower():
            return
        with self._write_lock, self._cursor_lock:
            for _, cursor in self._cursors:
                _close_quietly(cursor)
            self._cursors.clear()
            _close_quietly(self._writer)
            _close_quietly(self._root)
            try:
                self._connect(reset_vectors=False)
            except (duckdb.Error, StoreError) as reopen_error:
                # Every later use says so, in the words the daemon's health check knows.
                self._broken = (
                    f"the database has been invalidated by DuckDB after a failed write "
                    f"({recovery.first_line(error)}) and could not be opened again "
                    f"({recovery.first_line(reopen_error)}); fix the cause and restart jarvisd"
                )
                log.error("store.reopen_failed", path=str(self._path), error=self._broken)
                return
            self._generation += 1
        log.warning(
            "store.reopened",
            path=str(self._path),
            reason=recovery.first_line(error),
            advice="DuckDB stopped after a fatal error; the files were intact and are open again",
        )

    def configure(self, config: StorageConfig) -> None:
        """threads, memory_limit, temp_directory and ef_search now; other HNSW keys at finalize."""
        with self._write_lock:
            self._check_open()
            apply_settings(self._writer, self._path, config)
            self._config = config

    def close(self) -> None:
        """Checkpoint and close every connection; a second call does nothing."""
        with self._write_lock:
            if self._closed:
                return
            try:
                self._writer.execute("CHECKPOINT")
            except duckdb.Error as error:
                log.warning("store.checkpoint_failed", path=str(self._path), error=str(error))
            self._closed = True
            with self._cursor_lock:
                for _, cursor in self._cursors:
                    cursor.close()
                self._cursors.clear()
            self._writer.close()
            self._root.close()


def _everything(
    action: Callable[[Connection], None], connection: Connection, changes: Changes
) -> None:
    action(connection)
    changes.everything = True


def _open(path: Path, config: StorageConfig) -> Connection:
    try:
        return open_database(path, config)
    except duckdb.IOException as error:
        text = str(error).lower()
        hint = ""
        if "lock" in text:
            hint = ". Another jarvisd (or any DuckDB client) has it open: stop that first"
        elif "permission denied" in text:
            hint = ". Check the permissions of the file and its folder"
        raise StoreError(f"cannot open the database {path}: {error}{hint}") from error
    except duckdb.Error as error:
        raise StoreError(f"cannot open the database {path}: {error}") from error


def _close_quietly(connection: Connection) -> None:
    try:
        connection.close()
    except duckdb.Error as error:
        log.debug("store.close_failed", error=str(error))


def _rollback(connection: Connection) -> None:
    try:
        connection.execute("ROLLBACK")
    except duckdb.Error as error:
        # Nothing to roll back (the failure ended the transaction) is fine; anything
        # else is logged, the original error is the one worth raising.
        log.debug("store.rollback", error=str(error))
