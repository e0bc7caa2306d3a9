"""`StoreReads`: every read the rest of jarvisd may ask the store for, as named methods.

A mixin of `Store` (`facade`), which owns the connections: each method runs
the store's own statements on this thread's read cursor (`Store.reader`) and
hands back records or arrays, never a cursor or rows to interpret. Readers see
committed snapshots and never wait for the writer.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from jarvisd.store import bm25, graph_reads, indexes, linking, reads, vectors
from jarvisd.store.errors import VectorTableGoneError
from jarvisd.store.indexes import VectorTable
from jarvisd.store.records import ChunkMatrix, FileState, LinkKey, NoteDetail, NotePage

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class StoreReads:
    """The read half of `Store`; `Store` provides the state and the two methods below."""

    _path: Path
    _dimension: int
    _pending: set[str]
    _vector_lock: threading.Lock

    def reader(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError  # Store's: this thread's read cursor

    def _check_open(self) -> None:
        raise NotImplementedError  # Store's: StoreClosedError after close()

    # --------------------------------------------------------------------- notes

    def file_states(
        self, vault: str, paths: Collection[str] | None = None, folders: Collection[str] = ()
    ) -> dict[str, FileState]:
        """Stored stats by path: every note of `vault`, or (with `paths`) those paths and
        the notes below `folders` (each ending in `/`), a read that costs what it names."""
        self._check_open()
        return reads.file_states(self.reader(), vault, paths, folders)

    def vault_names(self) -> list[str]:
        """The vaults with notes in the store (configured or not any more)."""
        self._check_open()
        return reads.vault_names(self.reader())

    def paths_by_hash(self, vault: str, content_hash: str) -> list[str]:
        self._check_open()
        return reads.paths_by_hash(self.reader(), vault, content_hash)

    def vectors_for_hashes(self, hashes: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        """Stored vectors of chunks whose embed_text hash is given, from any note."""
        self._check_open()
        return reads.vectors_for_hashes(self.reader(), hashes, self._dimension)

    def subject_vectors_for_hashes(
        self, hashes: Sequence[str]
    ) -> dict[str, npt.NDArray[np.float32]]:
        """Stored vectors of subjects (else chunks) whose text hash is given, from any note."""
        self._check_open()
        return reads.subject_vectors_for_hashes(self.reader(), hashes, self._dimension)

    def notes_without_subject(
        self, limit: int = 10_000, after: int = 0
    ) -> list[tuple[int, str, tuple[str, ...], dict[str, Any]]]:
        """(id, title, aliases, frontmatter) of notes with no subject vector stored yet,
        by id, past `after`."""
        self._check_open()
        return reads.notes_without_subject(self.reader(), limit, after)

    def get_note(self, vault: str, path: str) -> NoteDetail | None:
        self._check_open()
        return reads.get_note(self.reader(), vault, path)

    def list_notes(self, vault: str, after: str | None, limit: int) -> NotePage:
        self._check_open()
        return reads.list_notes(self.reader(), vault, after, limit)

    def stats(self) -> dict[str, int]:
        """Counts of notes, chunks, links, unresolved note links, tags; the file's size."""
        self._check_open()
        counts = reads.stats(self.reader())
        counts["vector_index"] = int(self.has_vector_index)
        counts["pending_work"] = len(self._pending)
        counts["database_bytes"] = sum(
            file.stat().st_size
            for file in (self._path, self._path.with_name(self._path.name + ".wal"))
            if file.exists()
        )
        return counts

    # --------------------------------------------------------------------- links

    def link_keys(self, vault: str) -> list[LinkKey]:
        """Distinct (linking note path, key) pairs of the vault's note links."""
        self._check_open()
        return linking.link_keys(self.reader(), vault)

    def note_paths_and_aliases(self, vault: str) -> list[tuple[str, tuple[str, ...]]]:
        """(path, aliases) per note: the input of `LinkResolver.from_notes`."""
        self._check_open()
        return linking.note_paths_and_aliases(self.reader(), vault)

    # ------------------------------------------------- graph and note lookups

    def graph_columns(self, vault: str) -> tuple[graph_reads.Columns, graph_reads.Columns]:
        """One vault's notes and note links as columns, for a graph snapshot."""
        self._check_open()
        return graph_reads.graph_columns(self.reader(), vault)

    def projection_rows(self, vault: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        self._check_open()
        return graph_reads.projection_rows(self.reader(), vault)

    def unresolved_targets(self, vault: str) -> list[tuple[str, int, list[str]]]:
        self._check_open()
        return graph_reads.unresolved_targets(self.reader(), vault)

    def orphan_notes(self, vault: str) -> list[tuple[str, str]]:
        self._check_open()
        return graph_reads.orphan_notes(self.reader(), vault)

    def notes_titled(self, vault: str, title: str, limit: int) -> list[tuple[str, int]]:
        self._check_open()
        return graph_reads.notes_titled(self.reader(), vault, title, limit)

    def note_exists(self, vault: str, path: str) -> bool:
        self._check_open()
        return graph_reads.note_exists(self.reader(), vault, path)

    # ------------------------------------------------------------------- vectors

    def chunk_matrix(self, after: int | None = None) -> ChunkMatrix:
        """Every chunk id and vector (float32, rows L2-normalised by the embedder);
        with `after`, only the chunks whose id is greater."""
        self._check_open()
        return reads.chunk_matrix(self.reader(), self._dimension, after)

    def note_chunk_matrix(self, note_ids: Sequence[int]) -> ChunkMatrix:
        """The chunk ids and vectors of these notes (a snapshot patch's vectors)."""
        self._check_open()
        return reads.note_chunk_matrix(self.reader(), self._dimension, note_ids)

    def nearest_chunks(
        self, table: str, vector: npt.NDArray[np.float32], k: int
    ) -> tuple[IntArray, FloatArray]:
        """The `k` chunks of vector table `table` nearest `vector` (ids, cosines), by HNSW.

        Raises VectorTableGoneError when `table` was replaced and dropped since the
        caller learnt its name (a snapshot older than the last rebuild)."""
        self._check_open()
        literal = vectors.vector_literal(vector, self._dimension)
        with self._vector_lock:
            try:
                return vectors.nearest_chunks(self.reader(), table, literal, k)
            except duckdb.CatalogException as error:
                raise VectorTableGoneError(
                    f"the vector table {table} of {self._path} is gone (rebuilt since): {error}"
                ) from error

    def chunk_similarities(
        self, vector: npt.NDArray[np.float32], note_ids: Sequence[int] | None
    ) -> tuple[IntArray, FloatArray]:
        """Exact cosines (chunk ids, cosines) of the given notes' chunks; None: every chunk."""
        self._check_open()
        literal = vectors.vector_literal(vector, self._dimension)
        return vectors.chunk_similarities(self.reader(), literal, note_ids)

    @property
    def has_vector_index(self) -> bool:
        self._check_open()
        return indexes.has_vector_index(self.reader())

    @property
    def vector_table(self) -> VectorTable | None:
        """The HNSW-indexed copy of the vectors search reads, if there is one."""
        self._check_open()
        return indexes.vector_table(self.reader())

    # ---------------------------------------------------------------------- BM25

    def stem_words(self, words: Iterable[str]) -> dict[str, str]:
        """The BM25 index's Porter stem of each [a-z0-9]+ word (others are left out)."""
        self._check_open()
        return bm25.stem_words(self.reader(), words)

    def bm25_reference(self, stems: Sequence[str]) -> tuple[IntArray, FloatArray]:
        """BM25 of every chunk holding one of `stems`, computed in SQL from the index
        tables: (chunk ids, scores). The reference tests and benchmarks compare search's
        in-memory scores with; searches never run it."""
        self._check_open()
        return bm25.reference_scores(self.reader(), stems)
