"""Append-only chunk rows with spare capacity: what lets a snapshot patch cost what it changed.

A snapshot's chunk columns (id, note row, text, heading path, lines, vector)
are views `[:rows]` of the buffers here. A patch writes its new chunks after
the last row in place and publishes a new snapshot whose views are longer;
a reader of the old snapshot never looks past its own `rows`, so nothing it
reads changes. Rows are never overwritten: a chunk that goes is only marked
dead in the next snapshot's own live mask (a copy, one byte a row).

In place only from the newest snapshot of a chain (`filled == rows`) and
while the capacity lasts; otherwise the rows so far are copied into new
buffers grown by `GROWTH`, so the copying is amortised over many patches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

GROWTH = 1.25  # capacity past the rows held, after a whole build or a copy
SLACK = 1024  # rows of capacity at least

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class NewRows:
    """Chunks to append, by id (ids above every id held), with their note rows."""

    chunk_ids: IntArray
    chunk_notes: IntArray
    texts: npt.NDArray[np.object_]
    headings: npt.NDArray[np.object_]
    first_lines: npt.NDArray[np.int32]
    last_lines: npt.NDArray[np.int32]
    vectors: FloatArray | None

    def __len__(self) -> int:
        return int(self.chunk_ids.shape[0])


_COLUMNS = ("chunk_ids", "chunk_notes", "texts", "headings", "first_lines", "last_lines")


@dataclass(eq=False)
class ChunkBuffers:
    """The buffers a chain of snapshots shares; `filled` rows are written."""

    chunk_ids: IntArray
    chunk_notes: IntArray
    texts: npt.NDArray[np.object_]
    headings: npt.NDArray[np.object_]
    first_lines: npt.NDArray[np.int32]
    last_lines: npt.NDArray[np.int32]
    vectors: FloatArray | None
    filled: int

    @property
    def capacity(self) -> int:
        return int(self.chunk_ids.shape[0])

    @classmethod
    def of(cls, rows: NewRows, dimension: int | None) -> ChunkBuffers:
        """New buffers holding `rows`, with room to grow."""
        buffers = cls._empty(_capacity(len(rows)), rows, dimension)
        buffers._write(0, rows)
        buffers.filled = len(rows)
        return buffers

    @classmethod
    def _empty(cls, capacity: int, like: NewRows, dimension: int | None) -> ChunkBuffers:
        columns: dict[str, Any] = {
            name: np.empty(capacity, dtype=getattr(like, name).dtype) for name in _COLUMNS
        }
        for name in ("texts", "headings"):
            columns[name] = np.full(capacity, None, dtype=np.object_)
        vectors = None if dimension is None else np.zeros((capacity, dimension), np.float32)
        return cls(**columns, vectors=vectors, filled=0)

    def _write(self, start: int, rows: NewRows) -> None:
        end = start + len(rows)
        for name in _COLUMNS:
            getattr(self, name)[start:end] = getattr(rows, name)
        if self.vectors is not None:
            assert rows.vectors is not None
            self.vectors[start:end] = rows.vectors

    def appended(self, rows_held: int, rows: NewRows) -> ChunkBuffers:
        """Buffers holding this chain's first `rows_held` rows and then `rows`: these ones,
        written past `filled` in place, or (a branch, or no room) a grown copy."""
        if self.filled == rows_held and rows_held + len(rows) <= self.capacity:
            self._write(rows_held, rows)
            self.filled = rows_held + len(rows)
            return self
        dimension = None if self.vectors is None else int(self.vectors.shape[1])
        grown = ChunkBuffers._empty(_capacity(rows_held + len(rows)), rows, dimension)
        for name in _COLUMNS:
            getattr(grown, name)[:rows_held] = getattr(self, name)[:rows_held]
        if grown.vectors is not None and self.vectors is not None:
            grown.vectors[:rows_held] = self.vectors[:rows_held]
        grown._write(rows_held, rows)
        grown.filled = rows_held + len(rows)
        return grown

    def without_vectors(self, rows_held: int) -> ChunkBuffers:
        """A copy of the first rows without the vector buffer (MINIMAL memory mode frees it)."""
        columns = {name: getattr(self, name)[:rows_held].copy() for name in _COLUMNS}
        return ChunkBuffers(**columns, vectors=None, filled=rows_held)

    @property
    def memory_bytes(self) -> int:
        arrays = (self.chunk_ids, self.chunk_notes, self.first_lines, self.last_lines)
        total = sum(int(array.nbytes) for array in arrays) + 16 * self.capacity
        return total + (0 if self.vectors is None else int(self.vectors.nbytes))


def _capacity(rows: int) -> int:
    return max(int(rows * GROWTH), rows + SLACK)


@dataclass(eq=False)
class SubjectBuffer:
    """Note subject vectors, append-only like the chunk rows: a patch writes the changed notes'
    new vectors past `filled` and points their note rows there (`Snapshot.subject_rows`); the
    rows they had stay for older snapshots and go at the next whole build."""

    vectors: FloatArray
    filled: int

    @classmethod
    def of(cls, vectors: FloatArray) -> SubjectBuffer:
        count, dimension = vectors.shape
        buffer = cls(np.zeros((_capacity(count), dimension), np.float32), count)
        buffer.vectors[:count] = vectors
        return buffer

    def appended(self, rows_held: int, vectors: FloatArray) -> SubjectBuffer:
        """Buffers holding the first `rows_held` rows, then `vectors` (in place when it can)."""
        count = int(vectors.shape[0])
        if self.filled == rows_held and rows_held + count <= self.vectors.shape[0]:
            self.vectors[rows_held : rows_held + count] = vectors
            self.filled = rows_held + count
            return self
        grown = np.zeros((_capacity(rows_held + count), self.vectors.shape[1]), np.float32)
        grown[:rows_held] = self.vectors[:rows_held]
        grown[rows_held : rows_held + count] = vectors
        return SubjectBuffer(grown, rows_held + count)

    @property
    def memory_bytes(self) -> int:
        return int(self.vectors.nbytes)
