"""The in-memory read model searches answer from: every chunk's vector and text, per note.

Why in memory: an exact cosine over a float32 matrix is a few milliseconds even
at 100k chunks (a numpy matrix product; DuckDB's own exact scan took ten times
longer, and its HNSW index is used only for a bare ORDER BY ... LIMIT, not once
a query filters or joins), and holding the text too makes a search see the
index exactly as the last finished indexing run left it. Mid-run, the store
already holds some new notes while the BM25 index still points at old chunk
ids; answering from one snapshot (built after the run, read in one DuckDB
transaction) keeps vectors, BM25 hits and snippets consistent with each other.

Once the store has an HNSW index (`storage.hnsw`, for vaults past ~200k
chunks), the matrix is not read: DuckDB's index holds the vectors in memory
already, and semantic search asks it (`search.semantic`). Only the vectors of
chunks written after the index's copy was built are read, to be scored
exactly. Chunk ids the index returns that this snapshot does not know
(deleted since) are skipped, so results still agree with the snapshot's text.

A snapshot is immutable. The service makes a new one after every index
change and swaps the reference in one assignment, so a search never sees a
half-built one. It is built whole at start-up (and after resets, with the
HNSW index, or after large bursts); otherwise the last one is patched
(`refresh_snapshot`): the changed notes' rows are read in one transaction and
replace theirs, every other row is copied over as arrays and the BM25
postings gain an overlay for the terms the edit touched. At 10,027 notes a
whole build read 64k chunks' vectors, text and 2.6M postings in ~1.1 s.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from jarvisd.search.postings import Postings, patch_of, postings_of
from jarvisd.search.request import Filters
from jarvisd.store import Changes, NoteRow, Store, VectorTable

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
MASKS_KEPT = 64  # filter masks remembered per snapshot


@dataclass(frozen=True, slots=True)
class NoteInfo:
    note_id: int
    vault: str
    path: str
    title: str
    mtime_ns: int
    tags: tuple[str, ...]


@dataclass(eq=False)
class Snapshot:
    """Chunks ordered by note (then position), so note i owns rows starts[i]:starts[i+1]."""

    generation: int
    notes: list[NoteInfo]
    starts: IntArray  # first chunk row of each note
    chunk_notes: IntArray  # the note row of each chunk row
    chunk_ids: IntArray
    texts: npt.NDArray[np.object_]
    headings: npt.NDArray[np.object_]
    first_lines: npt.NDArray[np.int32]
    last_lines: npt.NDArray[np.int32]
    vectors: FloatArray | None  # None: the store's HNSW index has them, or MINIMAL mode
    postings: Postings = field(default_factory=Postings.empty)
    # With the store's HNSW index: its vector table, and the vectors of the chunks
    # written after it was built (their rows), which search scores exactly.
    vector_table: VectorTable | None = None
    delta_rows: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    delta_vectors: FloatArray | None = None
    built_at: float = field(default_factory=time.time)
    build_seconds: float = 0.0
    patched_notes: int = 0  # 0: built whole; else the notes a patch of the last one replaced
    _sorted_ids: IntArray = field(init=False, repr=False)
    _sorted_rows: IntArray = field(init=False, repr=False)
    _masks: dict[Filters, BoolArray] = field(init=False, repr=False, default_factory=dict)
    _mask_lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        order = np.argsort(self.chunk_ids, kind="stable")
        self._sorted_ids = self.chunk_ids[order]
        self._sorted_rows = order.astype(np.int64)

    @property
    def note_count(self) -> int:
        return len(self.notes)

    @property
    def chunk_count(self) -> int:
        return int(self.chunk_ids.shape[0])

    @property
    def chunk_sizes(self) -> IntArray:
        """Chunks per note row."""
        return np.diff(np.append(self.starts, self.chunk_count)).astype(np.int64)

    @property
    def vector_index(self) -> bool:
        return self.vector_table is not None

    @property
    def semantic_source(self) -> str:
        """Where semantic search reads vectors: `hnsw` (DuckDB), `matrix` (here) or `none`."""
        if self.vector_index:
            return "hnsw"
        return "matrix" if self.vectors is not None else "none"

    def rows_of(self, chunk_ids: IntArray) -> tuple[IntArray, BoolArray]:
        """Chunk rows for chunk ids, and which ids this snapshot knows at all."""
        if self._sorted_ids.shape[0] == 0 or chunk_ids.shape[0] == 0:
            return np.zeros(chunk_ids.shape[0], dtype=np.int64), np.zeros(
                chunk_ids.shape[0], dtype=np.bool_
            )
        places = np.searchsorted(self._sorted_ids, chunk_ids)
        places = np.minimum(places, self._sorted_ids.shape[0] - 1)
        known = self._sorted_ids[places] == chunk_ids
        return self._sorted_rows[places], known

    def note_mask(self, filters: Filters) -> BoolArray | None:
        """Which notes pass the filters (None: all of them); remembered per filter value."""
        if not filters.active:
            return None
        with self._mask_lock:
            cached = self._masks.get(filters)
        if cached is not None:
            return cached
        mask = np.fromiter(
            (_passes(note, filters) for note in self.notes), dtype=np.bool_, count=len(self.notes)
        )
        with self._mask_lock:
            if len(self._masks) >= MASKS_KEPT:
                self._masks.pop(next(iter(self._masks)))
            self._masks[filters] = mask
        return mask

    def without_vectors(self) -> Snapshot:
        return dataclasses.replace(self, vectors=None)

    def memory_bytes(self) -> int:
        """Roughly what this snapshot holds: arrays plus the chunk text."""
        arrays = (self.starts, self.chunk_notes, self.chunk_ids, self.first_lines, self.last_lines)
        total = sum(int(array.nbytes) for array in arrays)
        total += 0 if self.vectors is None else int(self.vectors.nbytes)
        total += 0 if self.delta_vectors is None else int(self.delta_vectors.nbytes)
        total += sum(len(text) for text in self.texts) + 64 * self.chunk_count
        return total + self.postings.memory_bytes

    def describe(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "notes": self.note_count,
            "chunks": self.chunk_count,
            "vectors_loaded": self.vectors is not None,
            "semantic_source": self.semantic_source,
            "vector_table": None if self.vector_table is None else self.vector_table.name,
            "chunks_after_vector_table": int(self.delta_rows.shape[0]),
            "memory_bytes": self.memory_bytes(),
            "built_at": self.built_at,
            "build_seconds": round(self.build_seconds, 4),
            "patched_notes": self.patched_notes,
            "patched_postings": self.postings.patched_postings,
        }


def _passes(note: NoteInfo, filters: Filters) -> bool:
    if filters.vault is not None and note.vault != filters.vault:
        return False
    if filters.folder is not None and not note.path.startswith(filters.folder + "/"):
        return False
    if filters.since_ns is not None and note.mtime_ns < filters.since_ns:
        return False
    if filters.before_ns is not None and note.mtime_ns >= filters.before_ns:
        return False
    if filters.tag is not None:
        prefix = filters.tag + "/"
        return any(tag == filters.tag or tag.startswith(prefix) for tag in note.tags)
    return True


def build_snapshot(store: Store, generation: int, with_vectors: bool) -> Snapshot:
    """A new snapshot of the store (blocking: run it in a pool)."""
    started = time.perf_counter()
    rows = store.read_snapshot(with_vectors)
    chunks = rows.chunks
    ids = chunks.ids
    chunk_note_ids = chunks.note_ids
    # Group the chunks by note (stable keeps each note's chunks in id order, which is
    # their order in the note), so per-note maxima are one np.maximum.reduceat.
    order = np.argsort(chunk_note_ids, kind="stable")
    grouped_note_ids = chunk_note_ids[order]
    boundaries = np.flatnonzero(np.diff(grouped_note_ids)) + 1
    starts = np.concatenate(([0], boundaries)).astype(np.int64) if ids.size else ids[:0]
    sizes = np.diff(np.append(starts, ids.size))
    vectors = None
    if rows.matrix is not None and rows.vector_table is None:
        if not np.array_equal(rows.matrix.ids, ids):
            raise RuntimeError("chunk ids differ between two reads of one transaction")
        vectors = np.ascontiguousarray(rows.matrix.vectors[order])
    snapshot = Snapshot(
        generation=generation,
        notes=_notes(rows.notes, grouped_note_ids[starts]),
        starts=starts,
        chunk_notes=np.repeat(np.arange(len(starts), dtype=np.int64), sizes),
        chunk_ids=ids[order],
        texts=chunks.texts[order],
        headings=chunks.headings[order],
        first_lines=chunks.first_lines[order],
        last_lines=chunks.last_lines[order],
        vectors=vectors,
        postings=postings_of(rows.bm25),
        vector_table=rows.vector_table,
    )
    if rows.matrix is not None and rows.vector_table is not None:
        # Written after the vector table was built: scored exactly, from here.
        delta, known = snapshot.rows_of(rows.matrix.ids)
        snapshot.delta_rows = delta[known]
        snapshot.delta_vectors = np.ascontiguousarray(rows.matrix.vectors[known])
    snapshot.build_seconds = time.perf_counter() - started
    return snapshot


def _notes(rows: list[NoteRow], note_ids: IntArray) -> list[NoteInfo]:
    by_id = {row.note_id: row for row in rows}
    return [_info(by_id, int(note_id)) for note_id in note_ids]


def _info(by_id: Mapping[int, NoteRow | NoteInfo], note_id: int) -> NoteInfo:
    row = by_id.get(note_id)
    if row is None:  # a chunk without its note: never written so, but never crash on it
        return NoteInfo(note_id, "", "", "", 0, ())
    if isinstance(row, NoteInfo):
        return row
    return NoteInfo(row.note_id, row.vault, row.path, row.title, row.mtime_ns, row.tags)


# ------------------------------------------------------------------- patching

# Past these, a whole build is about as cheap as a patch and drops the postings of
# chunks gone that patches leave in place (memory): a burst of edits (a sync, a
# `git pull`) touching a quarter of the notes, or patches that appended a quarter
# of the postings the last whole build read.
PATCH_NOTES_SHARE = 0.25
PATCH_POSTINGS_SHARE = 0.25


def refresh_snapshot(
    store: Store, base: Snapshot | None, generation: int, with_vectors: bool
) -> Snapshot:
    """The next snapshot: `base` patched with what the store changed since it was built,
    or a whole build (at start-up, after a reset, with the HNSW index, past the shares
    above). The changes taken are given back if the build fails, so none is lost."""
    changes = store.take_changes()
    try:
        if _patchable(store, base, changes, with_vectors):
            assert base is not None
            return patch_snapshot(store, base, changes, generation)
        return build_snapshot(store, generation, with_vectors)
    except BaseException:
        store.give_back_changes(changes)
        raise


def _patchable(store: Store, base: Snapshot | None, changes: Changes, with_vectors: bool) -> bool:
    if base is None or changes.everything or base.vector_table is not None:
        return False
    if (base.vectors is not None) != with_vectors or store.vector_table is not None:
        return False
    if len(changes.notes) > PATCH_NOTES_SHARE * max(1, base.note_count):
        return False
    base_postings = int(base.postings.chunk_ids.shape[0])
    return base.postings.patched_postings <= PATCH_POSTINGS_SHARE * max(10_000, base_postings)


def patch_snapshot(store: Store, base: Snapshot, changes: Changes, generation: int) -> Snapshot:
    """`base` with the changed notes' rows (chunks, text, vectors, postings, note info)
    replaced by the store's, read in one transaction; every other row is shared."""
    started = time.perf_counter()
    changed = sorted(changes.notes)

    def unseen(chunk_ids: IntArray) -> IntArray:
        # A chunk id's indexed text never changes (a retitled note's chunks get new
        # ids), so chunks `base` holds already (touches, renames) have their postings.
        _, known = base.rows_of(chunk_ids)
        return chunk_ids[~known]

    read = store.read_snapshot_patch(changed, changes.terms, base.vectors is not None, unseen)
    chunks, matrix = read.chunks, read.matrix
    new_ids = chunks.ids
    patch = patch_of(read.bm25)
    base_note_ids = np.fromiter(
        (note.note_id for note in base.notes), dtype=np.int64, count=base.note_count
    )
    keep = ~np.isin(base_note_ids[base.chunk_notes], np.asarray(changed, dtype=np.int64))
    new_note_ids = chunks.note_ids
    note_ids = np.concatenate((base_note_ids[base.chunk_notes][keep], new_note_ids))
    chunk_ids = np.concatenate((base.chunk_ids[keep], new_ids))
    order = np.lexsort((chunk_ids, note_ids))  # by note, then position (id order)
    note_ids, chunk_ids = note_ids[order], chunk_ids[order]
    boundaries = np.flatnonzero(np.diff(note_ids)) + 1
    starts = np.concatenate(([0], boundaries)).astype(np.int64) if chunk_ids.size else note_ids[:0]
    sizes = np.diff(np.append(starts, chunk_ids.size))
    infos: dict[int, NoteRow | NoteInfo] = {note.note_id: note for note in base.notes}
    infos.update((row.note_id, row) for row in read.notes)
    vectors = None
    if base.vectors is not None and matrix is not None:
        if not np.array_equal(matrix.ids, new_ids):
            raise RuntimeError("chunk ids differ between two reads of one transaction")
        vectors = np.ascontiguousarray(np.concatenate((base.vectors[keep], matrix.vectors))[order])

    def combined(old: npt.NDArray[Any], new: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return np.concatenate((old[keep], new))[order]

    snapshot = Snapshot(
        generation=generation,
        notes=[_info(infos, int(note_id)) for note_id in note_ids[starts]],
        starts=starts,
        chunk_notes=np.repeat(np.arange(len(starts), dtype=np.int64), sizes),
        chunk_ids=chunk_ids,
        texts=combined(base.texts, chunks.texts),
        headings=combined(base.headings, chunks.headings),
        first_lines=combined(base.first_lines, chunks.first_lines),
        last_lines=combined(base.last_lines, chunks.last_lines),
        vectors=vectors,
        postings=base.postings.patched(
            patch.added, patch.frequencies, patch.documents, patch.total_length
        ),
        patched_notes=len(changed),
    )
    snapshot.build_seconds = time.perf_counter() - started
    return snapshot
