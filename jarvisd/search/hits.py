"""One mode's verdict on every note of a snapshot: the currency of the modes and fusion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class NoteScores:
    """Per note row: the mode's score (-inf: not found) and the chunk row that earned it."""

    scores: FloatArray
    chunks: IntArray
    bound: float = 0.0  # keyword: the query's highest possible BM25; 0 when unknown
    # Semantic by the HNSW index: the most a note it did not reach can score (the
    # last chunk fetched); -inf when every note that could qualify was scored.
    ceiling: float = -np.inf

    @classmethod
    def nothing(cls, notes: int) -> NoteScores:
        return cls(np.full(notes, -np.inf), np.zeros(notes, dtype=np.int64))

    def eligible(self, mask: BoolArray | None, floor: float | None = None) -> FloatArray:
        """The scores with -inf where the filters or the floor (a threshold) rule a note out."""
        scores = self.scores.copy()
        if floor is not None:
            scores[scores < floor] = -np.inf
        if mask is not None:
            scores[~mask] = -np.inf
        return scores


def top(scores: FloatArray, keep: int) -> IntArray:
    """Rows of the `keep` best finite scores, best first; ties by row, so the order is stable."""
    matched = np.flatnonzero(np.isfinite(scores))
    if matched.shape[0] == 0 or keep <= 0:
        return np.zeros(0, dtype=np.int64)
    values = scores[matched]
    if matched.shape[0] > keep:
        part = np.argpartition(-values, keep - 1)[:keep]
        matched, values = matched[part], values[part]
    return matched[np.lexsort((matched, -values))].astype(np.int64)


def found(scores: FloatArray) -> int:
    return int(np.count_nonzero(np.isfinite(scores)))
