"""Keyword search: each note's best chunk BM25, the counterpart of `semantic`.

The chunks' scores come from the snapshot's postings (`postings`, the
store's BM25 tables held in memory) for the query's stems (`terms`); here
they become one verdict per note. The same scores computed in SQL, the
reference the tests and benchmarks compare with, are the store's
(`Store.bm25_reference`); no search runs them.
"""

from __future__ import annotations

import numpy as np

from jarvisd.search.hits import NoteScores
from jarvisd.search.postings import ChunkScores
from jarvisd.search.snapshot import Snapshot


def keyword_scores(snapshot: Snapshot, matched: ChunkScores) -> NoteScores:
    """Each note's best chunk BM25 (-inf where no chunk holds a query term)."""
    result = NoteScores.nothing(snapshot.note_count)
    rows, known = snapshot.rows_of(matched.chunk_ids)
    rows, scores = rows[known], matched.scores[known]
    if rows.shape[0] == 0:
        return NoteScores(result.scores, result.chunks, matched.bound)
    # Best first (ties by chunk row, for a stable choice); the first row per note is its best.
    order = np.lexsort((rows, -scores))
    rows, scores = rows[order], scores[order]
    notes, first = np.unique(snapshot.chunk_notes[rows], return_index=True)
    result.scores[notes] = scores[first]
    result.chunks[notes] = rows[first]
    return NoteScores(result.scores, result.chunks, matched.bound)
