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

Layout: chunk rows in chunk id order, note rows in note id order (ids only
grow, so both orders survive appends). A snapshot is immutable as its
readers see it: the service makes a new one after every index change and
swaps the reference in one assignment. It is built whole at start-up (and
after resets, with the HNSW index, or after large bursts); otherwise the
last one is patched (`search.patching`): the changed notes' new chunks are
appended past the last row (`search.rows`), their old rows marked dead in
a new live mask, their note rows' info replaced, and the BM25 postings get
the new chunks' postings appended per term (`search.postings`). Dead rows
score -inf and are dropped when a whole build compacts them away, off the
hot path. At 10,027 notes a whole build read 64k chunks' vectors, text and
2.6M postings in ~1.1 s.
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

from jarvisd.search.postings import Postings, postings_of
from jarvisd.search.request import Filters
from jarvisd.search.rows import ChunkBuffers, NewRows, SubjectBuffer
from jarvisd.store import NoteRow, Store, SubjectMatrix, VectorTable

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
MASKS_KEPT = 64  # filter masks remembered per snapshot


# A note row as the store reads it (id, vault, path, title, mtime, tags): the
# snapshot holds the store's records as they come, under the name search uses.
NoteInfo = NoteRow


@dataclass(eq=False)
class Snapshot:
    """Chunk row r belongs to note row chunk_notes[r]; rows with live[r] False are gone (dead).

    Note rows whose chunks are all dead (`live_notes` False) stay until the next whole
    build, so every per-note array of a search has `note_count` entries."""

    generation: int
    notes: list[NoteInfo]  # per note row, dead ones included
    note_ids: IntArray  # per note row, ascending
    live_notes: BoolArray
    chunk_ids: IntArray  # per chunk row, ascending
    chunk_notes: IntArray  # the note row of each chunk row
    texts: npt.NDArray[np.object_]
    headings: npt.NDArray[np.object_]
    first_lines: npt.NDArray[np.int32]
    last_lines: npt.NDArray[np.int32]
    vectors: FloatArray | None  # None: the store's HNSW index has them, or MINIMAL mode
    live: BoolArray
    buffers: ChunkBuffers | None = None  # what the chunk columns view; patches append there
    dead_chunks: int = 0
    text_bytes: int = 0  # characters of the rows' text, dead ones included (kept, not summed)
    postings: Postings = field(default_factory=Postings.empty)
    # With the store's HNSW index: its vector table, and the vectors of the chunks
    # written after it was built (their rows), which search scores exactly.
    vector_table: VectorTable | None = None
    delta_rows: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    delta_vectors: FloatArray | None = None
    # Note subjects (title, aliases, description; `search.subject_mix`): per note row, its
    # row of `subjects` (-1: none); the buffer's rows past a patch's are not its own.
    subjects: FloatArray | None = None
    subject_rows: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    subject_buffer: SubjectBuffer | None = None
    built_at: float = field(default_factory=time.time)
    build_seconds: float = 0.0
    patched_notes: int = 0  # 0: built whole; else the notes a patch of the last one replaced
    _masks: dict[Filters, BoolArray] = field(init=False, repr=False, default_factory=dict)
    _mask_lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    @property
    def note_count(self) -> int:
        """Note rows (per-note arrays have this many entries), dead ones included."""
        return len(self.notes)

    @property
    def chunk_count(self) -> int:
        """Chunk rows, dead ones included."""
        return int(self.chunk_ids.shape[0])

    @property
    def live_chunk_count(self) -> int:
        return self.chunk_count - self.dead_chunks

    @property
    def chunk_sizes(self) -> IntArray:
        """Live chunks per note row."""
        rows = self.chunk_notes if not self.dead_chunks else self.chunk_notes[self.live]
        return np.bincount(rows, minlength=self.note_count).astype(np.int64)

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
        """Chunk rows for chunk ids, and which ids this snapshot holds live."""
        if self.chunk_count == 0 or chunk_ids.shape[0] == 0:
            return np.zeros(chunk_ids.shape[0], dtype=np.int64), np.zeros(
                chunk_ids.shape[0], dtype=np.bool_
            )
        places = np.searchsorted(self.chunk_ids, chunk_ids)
        places = np.minimum(places, self.chunk_count - 1).astype(np.int64)
        known = self.chunk_ids[places] == chunk_ids
        if self.dead_chunks:
            known &= self.live[places]
        return places, known

    def note_rows_of(self, note_ids: IntArray) -> tuple[IntArray, BoolArray]:
        """Note rows for note ids, and which ids have a row (live or dead)."""
        if self.note_count == 0 or note_ids.shape[0] == 0:
            zeros = np.zeros(note_ids.shape[0], dtype=np.int64)
            return zeros, zeros.astype(np.bool_)
        places = np.minimum(np.searchsorted(self.note_ids, note_ids), self.note_count - 1)
        return places.astype(np.int64), self.note_ids[places] == note_ids

    def listed_notes(self) -> list[NoteInfo]:
        """The notes that have chunks, by note id."""
        if bool(self.live_notes.all()):
            return list(self.notes)
        return [self.notes[row] for row in np.flatnonzero(self.live_notes).tolist()]

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
        """This snapshot without its matrix (MINIMAL memory mode): the buffer goes too."""
        buffers = self.buffers
        if buffers is None or buffers.vectors is None:
            return dataclasses.replace(self, vectors=None)
        copy = buffers.without_vectors(self.chunk_count)
        rows = self.chunk_count
        return dataclasses.replace(
            self,
            vectors=None,
            buffers=copy,
            chunk_ids=copy.chunk_ids[:rows],
            chunk_notes=copy.chunk_notes[:rows],
            texts=copy.texts[:rows],
            headings=copy.headings[:rows],
            first_lines=copy.first_lines[:rows],
            last_lines=copy.last_lines[:rows],
        )

    def memory_bytes(self) -> int:
        """Roughly what this snapshot holds: arrays (with their spare capacity) and text."""
        if self.buffers is not None:
            total = self.buffers.memory_bytes
        else:
            arrays = (self.chunk_notes, self.chunk_ids, self.first_lines, self.last_lines)
            total = sum(int(array.nbytes) for array in arrays) + 16 * self.chunk_count
            total += 0 if self.vectors is None else int(self.vectors.nbytes)
        total += int(self.live.nbytes) + int(self.note_ids.nbytes) + 200 * self.note_count
        total += 0 if self.delta_vectors is None else int(self.delta_vectors.nbytes)
        total += 0 if self.subject_buffer is None else self.subject_buffer.memory_bytes
        total += int(self.subject_rows.nbytes)
        total += self.text_bytes + 48 * self.chunk_count
        return total + self.postings.memory_bytes

    def describe(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "notes": int(np.count_nonzero(self.live_notes)),
            "chunks": self.live_chunk_count,
            "dead_chunks": self.dead_chunks,
            "capacity_chunks": self.chunk_count if self.buffers is None else self.buffers.capacity,
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


def viewing(buffers: ChunkBuffers, rows: int, vectors: bool) -> dict[str, npt.NDArray[Any] | None]:
    """The chunk columns of a snapshot of `rows` rows over `buffers` (views, no copies)."""
    return {
        "chunk_ids": buffers.chunk_ids[:rows],
        "chunk_notes": buffers.chunk_notes[:rows],
        "texts": buffers.texts[:rows],
        "headings": buffers.headings[:rows],
        "first_lines": buffers.first_lines[:rows],
        "last_lines": buffers.last_lines[:rows],
        "vectors": None if not vectors or buffers.vectors is None else buffers.vectors[:rows],
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
    """A new snapshot of the store, built whole (blocking: run it in a pool)."""
    started = time.perf_counter()
    rows = store.read_snapshot(with_vectors)
    chunks = rows.chunks  # by chunk id
    # Every note has a row (one without chunks a dead one, not listed), so a note that
    # gains chunks later has its row already: patches only ever append note rows.
    with_rows = np.fromiter((row.note_id for row in rows.notes), np.int64, len(rows.notes))
    note_ids = np.union1d(with_rows, chunks.note_ids).astype(np.int64)
    vectors = None
    if rows.matrix is not None and rows.vector_table is None:
        if not np.array_equal(rows.matrix.ids, chunks.ids):
            raise RuntimeError("chunk ids differ between two reads of one transaction")
        vectors = rows.matrix.vectors
    new = NewRows(
        chunk_ids=chunks.ids,
        chunk_notes=np.searchsorted(note_ids, chunks.note_ids).astype(np.int64),
        texts=chunks.texts,
        headings=chunks.headings,
        first_lines=chunks.first_lines,
        last_lines=chunks.last_lines,
        vectors=vectors,
    )
    dimension = None if vectors is None else int(vectors.shape[1])
    buffers = ChunkBuffers.of(new, dimension)
    snapshot = Snapshot(
        generation=generation,
        notes=_notes(rows.notes, note_ids),
        note_ids=note_ids.astype(np.int64),
        live_notes=np.isin(note_ids, chunks.note_ids),
        live=np.ones(len(new), dtype=np.bool_),
        buffers=buffers,
        postings=postings_of(rows.bm25),
        vector_table=rows.vector_table,
        text_bytes=_text_bytes(chunks.texts),
        **viewing(buffers, len(new), vectors is not None),  # type: ignore[arg-type]
        **subject_columns(rows.subjects, note_ids),
    )
    if rows.matrix is not None and rows.vector_table is not None:
        # Written after the vector table was built: scored exactly, from here.
        delta, known = snapshot.rows_of(rows.matrix.ids)
        snapshot.delta_rows = delta[known]
        snapshot.delta_vectors = np.ascontiguousarray(rows.matrix.vectors[known])
    snapshot.build_seconds = time.perf_counter() - started
    return snapshot


def subject_columns(subjects: SubjectMatrix, note_ids: IntArray) -> dict[str, Any]:
    """A whole build's subject fields: every note row that has a subject points at it."""
    rows, known = note_rows_in(note_ids, subjects.note_ids)
    buffer = SubjectBuffer.of(subjects.vectors[known])
    subject_rows = np.full(note_ids.shape[0], -1, dtype=np.int64)
    subject_rows[rows[known]] = np.arange(int(np.count_nonzero(known)), dtype=np.int64)
    return {
        "subjects": buffer.vectors[: buffer.filled],
        "subject_rows": subject_rows,
        "subject_buffer": buffer,
    }


def note_rows_in(note_ids: IntArray, wanted: IntArray) -> tuple[IntArray, BoolArray]:
    """Rows of `wanted` ids in the sorted `note_ids`, and which have one."""
    if note_ids.shape[0] == 0 or wanted.shape[0] == 0:
        zeros = np.zeros(wanted.shape[0], dtype=np.int64)
        return zeros, zeros.astype(np.bool_)
    places = np.minimum(np.searchsorted(note_ids, wanted), note_ids.shape[0] - 1)
    return places.astype(np.int64), note_ids[places] == wanted


def _notes(rows: list[NoteRow], note_ids: IntArray) -> list[NoteInfo]:
    by_id = {row.note_id: row for row in rows}
    return [note_info(by_id, int(note_id)) for note_id in note_ids]


def note_info(by_id: Mapping[int, NoteRow], note_id: int) -> NoteInfo:
    row = by_id.get(note_id)
    if row is None:  # a chunk without its note: never written so, but never crash on it
        return NoteInfo(note_id, "", "", "", 0, ())
    return row


def _text_bytes(texts: npt.NDArray[np.object_]) -> int:
    return sum(len(text) for text in texts.tolist())
