"""The reads behind the search snapshot (`search.snapshot`), as columns, each in ONE transaction.

A whole build reads every chunk's text and lines, the notes, their tags, the
vectors (unless the HNSW table holds them) and the BM25 tables; a patch reads
the same for just the notes an edit changed, plus the BM25 postings of their
new chunks and the df of every term whose df moved. Each read is one
BEGIN ... COMMIT on this thread's read cursor, so its parts agree with each
other whatever the writer commits meanwhile. Numbers go out as numpy arrays
(`fetchnumpy`), a row per chunk or posting; the search side makes its
in-memory structures of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import numpy as np
import numpy.typing as npt

from jarvisd.store import indexes, reads
from jarvisd.store.connection import first_row
from jarvisd.store.indexes import VectorTable
from jarvisd.store.records import ChunkMatrix, SubjectMatrix

IntArray = npt.NDArray[np.int64]
Connection = duckdb.DuckDBPyConnection
T = TypeVar("T")
# A list of ids bound as one JSON parameter (a bound list costs ~45 µs an element).
_IN_IDS = "IN (SELECT unnest(from_json(?, '[\"BIGINT\"]')))"


@dataclass(frozen=True)
class ChunkColumns:
    """Chunks by id: their note, heading path, text and lines."""

    ids: IntArray
    note_ids: IntArray
    headings: npt.NDArray[np.object_]
    texts: npt.NDArray[np.object_]
    first_lines: npt.NDArray[np.int32]
    last_lines: npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class NoteRow:
    note_id: int
    vault: str
    path: str
    title: str
    mtime_ns: int
    tags: tuple[str, ...]


@dataclass(frozen=True)
class BM25Columns:
    """The BM25 tables whole: the vocabulary (df > 0) and every posting with its chunk's length,
    by term id then chunk id."""

    documents: int
    total_length: int
    term_ids: IntArray
    terms: npt.NDArray[np.object_]
    df: IntArray
    posting_terms: IntArray
    chunk_ids: IntArray
    tf: npt.NDArray[np.float32]
    lengths: npt.NDArray[np.float32]


@dataclass(frozen=True)
class BM25Additions:
    """The postings of some new chunks (sorted by term, then chunk id), the df now of every
    term they hold or that was named, and the collection statistics."""

    documents: int
    total_length: int
    terms: npt.NDArray[np.object_]
    chunk_ids: IntArray
    tf: npt.NDArray[np.float32]
    lengths: npt.NDArray[np.float32]
    frequencies: dict[str, int]


@dataclass(frozen=True)
class SnapshotRead:
    """Everything a whole search snapshot holds. `matrix` is None without vectors; with the
    HNSW table (`vector_table`) it holds only the chunks written after that table was built."""

    matrix: ChunkMatrix | None
    vector_table: VectorTable | None
    chunks: ChunkColumns
    notes: list[NoteRow]
    bm25: BM25Columns
    subjects: SubjectMatrix  # every note's subject vector (notes without one absent)


@dataclass(frozen=True)
class SnapshotPatchRead:
    """What a snapshot patch needs of the changed notes (those gone are simply absent)."""

    matrix: ChunkMatrix | None
    chunks: ChunkColumns
    notes: list[NoteRow]
    bm25: BM25Additions
    subjects: SubjectMatrix  # the changed notes' subject vectors


class SnapshotReads:
    """The search snapshot's reads; `Store` inherits them."""

    _dimension: int

    if TYPE_CHECKING:

        def reader(self) -> Connection: ...

        def _check_open(self) -> None: ...

    def read_snapshot(self, with_vectors: bool) -> SnapshotRead:
        """Everything for a whole snapshot, in one transaction (with the HNSW table, only the
        vectors written after its copy)."""
        self._check_open()

        def read(cursor: Connection) -> SnapshotRead:
            table = indexes.vector_table(cursor)
            matrix = None
            if with_vectors:
                after = None if table is None else table.max_chunk_id
                matrix = reads.chunk_matrix(cursor, self._dimension, after)
            return SnapshotRead(
                matrix=matrix,
                vector_table=table,
                chunks=_chunks(cursor, "", []),
                notes=_notes(cursor, None),
                bm25=_bm25_columns(cursor),
                subjects=reads.subject_matrix(cursor, self._dimension, None),
            )

        return _in_transaction(self.reader(), read)

    def read_bm25(self) -> BM25Columns:
        """The BM25 tables whole, in one transaction (what a whole snapshot's postings hold)."""
        self._check_open()
        return _in_transaction(self.reader(), _bm25_columns)

    def read_snapshot_patch(
        self,
        note_ids: Sequence[int],
        terms: set[int],
        with_vectors: bool,
        unseen: Callable[[IntArray], IntArray],
    ) -> SnapshotPatchRead:
        """The changed notes' chunks, notes and tags (and vectors), in one transaction, with the
        postings of the chunks `unseen` picks from theirs (those the snapshot lacks) and the df
        of their terms and of `terms` (term ids whose df fell when chunks went)."""
        self._check_open()
        identifiers = json.dumps(sorted(int(note_id) for note_id in note_ids))

        def read(cursor: Connection) -> SnapshotPatchRead:
            chunks = _chunks(cursor, f"WHERE note_id {_IN_IDS}", [identifiers])
            matrix = None
            if with_vectors:
                matrix = reads.note_chunk_matrix(cursor, self._dimension, json.loads(identifiers))
            return SnapshotPatchRead(
                matrix=matrix,
                chunks=chunks,
                notes=_notes(cursor, identifiers),
                bm25=_bm25_additions(cursor, unseen(chunks.ids), terms),
                subjects=reads.subject_matrix(cursor, self._dimension, json.loads(identifiers)),
            )

        return _in_transaction(self.reader(), read)


def _in_transaction(cursor: Connection, read: Callable[[Connection], T]) -> T:
    cursor.execute("BEGIN TRANSACTION")
    try:
        result = read(cursor)
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    cursor.execute("COMMIT")
    return result


def _chunks(cursor: Connection, where: str, parameters: list[Any]) -> ChunkColumns:
    rows = cursor.execute(
        "SELECT id, note_id, heading_path, text, start_line, end_line "
        f"FROM chunks {where} ORDER BY id",
        parameters,
    ).fetchnumpy()
    return ChunkColumns(
        ids=np.asarray(rows["id"], dtype=np.int64),
        note_ids=np.asarray(rows["note_id"], dtype=np.int64),
        headings=np.asarray(rows["heading_path"], dtype=np.object_),
        texts=np.asarray(rows["text"], dtype=np.object_),
        first_lines=np.asarray(rows["start_line"], dtype=np.int32),
        last_lines=np.asarray(rows["end_line"], dtype=np.int32),
    )


def _notes(cursor: Connection, identifiers: str | None) -> list[NoteRow]:
    """Notes by id with their tags (sorted); `identifiers` a JSON list of ids, None: all."""
    parameters = [] if identifiers is None else [identifiers]
    where = "" if identifiers is None else f"WHERE id {_IN_IDS}"
    notes = cursor.execute(
        f"SELECT id, vault, path, title, mtime_ns FROM notes {where} ORDER BY id", parameters
    ).fetchall()
    where = "" if identifiers is None else f"WHERE note_id {_IN_IDS}"
    tags: dict[int, list[str]] = {}
    for note_id, tag in cursor.execute(
        f"SELECT note_id, tag FROM tags {where} ORDER BY note_id, tag", parameters
    ).fetchall():
        tags.setdefault(int(note_id), []).append(str(tag))
    return [
        NoteRow(int(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]),
                tuple(tags.get(int(row[0]), ())))
        for row in notes
    ]  # fmt: skip


def _stats(cursor: Connection) -> tuple[int, int]:
    stats = first_row(cursor.execute("SELECT documents, total_length FROM bm25_stats"))
    return (0, 0) if stats is None else (int(stats[0] or 0), int(stats[1] or 0))


def _bm25_columns(cursor: Connection) -> BM25Columns:
    documents, total_length = _stats(cursor)
    vocabulary = cursor.execute(
        "SELECT term_id, term, df FROM bm25_terms WHERE df > 0 ORDER BY term_id"
    ).fetchnumpy()
    rows = cursor.execute("""
        SELECT p.term_id, p.chunk_id, p.tf, d.length
        FROM bm25_postings p JOIN bm25_docs d USING (chunk_id)
        ORDER BY p.term_id, p.chunk_id
    """).fetchnumpy()
    return BM25Columns(
        documents=documents,
        total_length=total_length,
        term_ids=np.asarray(vocabulary["term_id"], dtype=np.int64),
        terms=np.asarray(vocabulary["term"], dtype=np.object_),
        df=np.asarray(vocabulary["df"], dtype=np.int64),
        posting_terms=np.asarray(rows["term_id"], dtype=np.int64),
        chunk_ids=np.asarray(rows["chunk_id"], dtype=np.int64),
        tf=np.asarray(rows["tf"], dtype=np.float32),
        lengths=np.asarray(rows["length"], dtype=np.float32),
    )


def _bm25_additions(
    cursor: Connection, chunk_ids: IntArray, dropped_terms: set[int]
) -> BM25Additions:
    documents, total_length = _stats(cursor)
    ids = [int(identifier) for identifier in chunk_ids.tolist()]
    term_ids = set(dropped_terms)
    empty = np.zeros(0, np.float32)
    columns: dict[str, Any] = {
        "term_id": np.zeros(0, np.int64),
        "term": np.zeros(0, np.object_),
        "chunk_id": np.zeros(0, np.int64),
        "tf": empty,
        "length": empty,
    }
    if ids:
        # A patch's chunks are recent: the range lets DuckDB skip older row groups.
        columns = cursor.execute(
            f"""
            SELECT t.term_id, t.term, p.chunk_id, p.tf, d.length
            FROM bm25_postings p JOIN bm25_terms t USING (term_id)
            JOIN bm25_docs d USING (chunk_id)
            WHERE p.chunk_id BETWEEN {min(ids)} AND {max(ids)} AND p.chunk_id {_IN_IDS}
              AND d.chunk_id BETWEEN {min(ids)} AND {max(ids)}
            ORDER BY t.term, p.chunk_id
            """,
            [json.dumps(ids)],
        ).fetchnumpy()
        term_ids.update(int(value) for value in np.unique(columns["term_id"]).tolist())
    frequencies: dict[str, int] = {}
    if term_ids:
        rows = cursor.execute(
            f"SELECT term, df FROM bm25_terms WHERE term_id {_IN_IDS}",
            [json.dumps(sorted(term_ids))],
        ).fetchall()
        frequencies = {str(term): int(df) for term, df in rows}
    return BM25Additions(
        documents=documents,
        total_length=total_length,
        terms=np.asarray(columns["term"], dtype=np.object_),
        chunk_ids=np.asarray(columns["chunk_id"], dtype=np.int64),
        tf=np.asarray(columns["tf"], dtype=np.float32),
        lengths=np.asarray(columns["length"], dtype=np.float32),
        frequencies=frequencies,
    )
