"""Semantic search: each note's best chunk cosine with the query, exact or by HNSW.

Exact (the store has no HNSW index): vectors are L2-normalised by the
embedder, so cosine is a dot product: one matrix-vector product over every
chunk of the snapshot's matrix (0.2 ms for SciFact's 13k chunks of 384 floats,
3 ms for 64k), then each note's best chunk by `np.maximum.at` over the rows'
note rows (rows are in chunk id order, so patches can append; dead rows
score -inf). There is no recall to lose and nothing to tune.

Indexed (the store has one, `storage.hnsw`; then the snapshot holds no matrix,
and DuckDB's index holds the vectors once instead of twice): the nearest
chunks come from the HNSW-indexed vector table (`Store.nearest_chunks`; see
`store.indexes` for why it is an immutable copy), grouped per note, merged
with exact scores of the chunks written since that copy was built (the
snapshot holds just their vectors). The index answers in chunks, and results
are notes behind filters and a threshold, so the fetch grows until enough
notes qualify:

- start with `keep * FETCH_PER_NOTE` chunks, scaled up by how few chunks
  the filters leave, and fetch 4x more until `keep` notes qualify, the
  index is exhausted, or the last chunk fetched is already below the
  threshold (nothing further can pass it);
- a filter that leaves at most `EXACT_CHUNKS` chunks, or a fetch that
  would pass `MAX_FETCH` chunks, is answered exactly inside DuckDB over just
  the eligible notes' chunks instead (the index cannot filter).

So notes beyond what the fetch reached count as not found: with an index,
`total` counts the notes among the retrieved candidates, not every note
over the threshold. Recall against exact search is measured by
`python -m benchmarks.hnsw`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

from jarvisd.search.hits import BoolArray, FloatArray, IntArray, NoteScores, found
from jarvisd.search.snapshot import Snapshot
from jarvisd.store import Store, VectorTableGoneError

FETCH_PER_NOTE = 4  # chunks fetched per note wanted (notes hold several similar chunks)
MIN_FETCH = 64
GROWTH = 4
EXACT_CHUNKS = 20_000  # a filter leaving at most this many chunks is scanned exactly
MAX_FETCH = 50_000  # past this, an exact scan is the cheaper way to more notes

Vector = npt.NDArray[np.float32]


def semantic_scores(snapshot: Snapshot, query_vector: Vector) -> NoteScores:
    """Each note's best chunk cosine with the query (every note, no threshold)."""
    vectors = snapshot.vectors
    notes = snapshot.note_count
    if vectors is None or snapshot.chunk_count == 0:
        return NoteScores.nothing(notes)
    similarities = vectors @ np.asarray(query_vector, dtype=np.float32)
    if snapshot.dead_chunks:
        similarities[~snapshot.live] = -np.inf
    # Rows are in chunk id order, not grouped by note (patches append), so each note's
    # best is an unbuffered maximum over its rows: ~1 ms at 106k chunks.
    note_best = np.full(notes, -np.inf, dtype=np.float32)
    np.maximum.at(note_best, snapshot.chunk_notes, similarities)
    # Each note's best chunk: its first (lowest id) live row that reaches the maximum.
    reached = similarities >= note_best[snapshot.chunk_notes]
    if snapshot.dead_chunks:
        reached &= snapshot.live
    rows = np.flatnonzero(reached).astype(np.int64)
    best_chunks = np.full(notes, snapshot.chunk_count, dtype=np.int64)
    np.minimum.at(best_chunks, snapshot.chunk_notes[rows], rows)
    best_chunks[best_chunks == snapshot.chunk_count] = 0  # a dead note: no chunk
    return NoteScores(note_best.astype(np.float64), best_chunks)


def indexed_semantic_scores(
    store: Store,
    snapshot: Snapshot,
    query_vector: Vector,
    keep: int,
    mask: BoolArray | None,
    floor: float | None,
) -> NoteScores:
    """Best chunk cosine of at least `keep` qualifying notes where that many exist.

    Notes the search did not reach score -inf (not found)."""
    chunks = snapshot.chunk_count
    if chunks == 0 or keep <= 0:
        return NoteScores.nothing(snapshot.note_count)
    share = 1.0
    if mask is not None:
        eligible_chunks = int(np.sum(snapshot.chunk_sizes[mask]))
        if eligible_chunks <= EXACT_CHUNKS:
            return exact_note_scores(store, snapshot, query_vector, np.flatnonzero(mask))
        share = eligible_chunks / chunks
    table = snapshot.vector_table
    assert table is not None
    newer = _newer_chunks(snapshot, query_vector)
    fetch = min(chunks, max(MIN_FETCH, math.ceil(keep * FETCH_PER_NOTE / share)))
    while True:
        if fetch > MAX_FETCH:
            rows = None if mask is None else np.flatnonzero(mask)
            return exact_note_scores(store, snapshot, query_vector, rows)
        try:
            ids, similarities = store.nearest_chunks(table.name, query_vector, fetch)
        except VectorTableGoneError:
            # The table was replaced and dropped under this (old) snapshot: be exact.
            rows = None if mask is None else np.flatnonzero(mask)
            return exact_note_scores(store, snapshot, query_vector, rows)
        scores = _best_of(scores_from_chunks(snapshot, ids, similarities), newer)
        if fetch < chunks and similarities.shape[0]:
            scores = dataclasses.replace(scores, ceiling=float(similarities[-1]))
        if found(scores.eligible(mask, floor)) >= keep or fetch >= chunks:
            return scores
        if floor is not None and scores.ceiling < floor:
            return scores  # the rest of the index is further away still
        fetch = min(chunks, fetch * GROWTH)


def _newer_chunks(snapshot: Snapshot, query_vector: Vector) -> NoteScores:
    """Exact scores of the chunks written after the vector table was built."""
    if snapshot.delta_vectors is None or snapshot.delta_rows.shape[0] == 0:
        return NoteScores.nothing(snapshot.note_count)
    similarities = snapshot.delta_vectors @ np.asarray(query_vector, dtype=np.float32)
    return _scores_from_rows(snapshot, snapshot.delta_rows, similarities.astype(np.float64))


def _best_of(first: NoteScores, second: NoteScores) -> NoteScores:
    """Per note, the better of two partial verdicts (and the chunk that earned it)."""
    better = second.scores > first.scores
    if not better.any():
        return first
    scores, chunks = first.scores.copy(), first.chunks.copy()
    scores[better] = second.scores[better]
    chunks[better] = second.chunks[better]
    return NoteScores(scores, chunks)


def exact_note_scores(
    store: Store, snapshot: Snapshot, query_vector: Vector, note_rows: IntArray | None
) -> NoteScores:
    """Exact best-chunk cosines, computed in DuckDB, of the given note rows (None: all)."""
    note_ids = None
    if note_rows is not None:
        note_ids = [snapshot.notes[int(row)].note_id for row in note_rows]
    ids, similarities = store.chunk_similarities(query_vector, note_ids)
    return scores_from_chunks(snapshot, ids, similarities)


def with_exact_scores(
    store: Store,
    snapshot: Snapshot,
    query_vector: Vector,
    scores: NoteScores,
    note_rows: IntArray,
) -> NoteScores:
    """`scores` plus exact ones for the given notes it has none for (fusion candidates)."""
    missing = note_rows[~np.isfinite(scores.scores[note_rows])]
    if missing.shape[0] == 0:
        return scores
    extra = exact_note_scores(store, snapshot, query_vector, missing)
    merged, chunks = scores.scores.copy(), scores.chunks.copy()
    merged[missing] = extra.scores[missing]
    chunks[missing] = extra.chunks[missing]
    return NoteScores(merged, chunks, ceiling=scores.ceiling)


def scores_from_chunks(
    snapshot: Snapshot, chunk_ids: IntArray, similarities: npt.NDArray[np.float64]
) -> NoteScores:
    """Each note's best chunk among the given ones; chunks the snapshot lacks are skipped
    (deleted since it was built, or written after: the next snapshot has those)."""
    rows, known = snapshot.rows_of(np.asarray(chunk_ids, dtype=np.int64))
    return _scores_from_rows(snapshot, rows[known], np.asarray(similarities)[known])


def _scores_from_rows(
    snapshot: Snapshot, rows: IntArray, values: npt.NDArray[np.float64]
) -> NoteScores:
    """Each note's best chunk among the given chunk rows of the snapshot."""
    scores = NoteScores.nothing(snapshot.note_count)
    values = np.asarray(values, dtype=np.float64)
    if rows.shape[0] == 0:
        return scores
    order = np.lexsort((rows, -values))  # best first; ties by chunk row, as the exact path
    rows, values = rows[order], values[order]
    notes, first = np.unique(snapshot.chunk_notes[rows], return_index=True)
    scores.scores[notes] = values[first]
    scores.chunks[notes] = rows[first]
    return scores


def credit_subjects(
    snapshot: Snapshot,
    query_vector: Vector,
    scores: NoteScores,
    mix: float,
    rows: IntArray | None = None,
) -> NoteScores:
    """Each scored note's cosine with its subject credited (`search.subject_mix`):

        cosine' = cosine + mix * max(0, subject cosine - cosine)

    i.e. mix * max(chunk, subject) + (1 - mix) * chunk, where the note has a subject
    vector (its title, aliases and `description`, encoded once) and a finite score; a
    note no chunk scored stays unscored. `rows`: only these note rows (the rest are
    credited already). One product over the notes' subject rows: 0.15 ms at 10k notes
    (numpy alone, 384 floats a row)."""
    if mix <= 0 or snapshot.subjects is None or snapshot.subjects.shape[0] == 0:
        return scores
    if rows is None:
        rows = np.flatnonzero(snapshot.subject_rows >= 0)
    rows = rows[np.isfinite(scores.scores[rows])]
    subject = subject_cosines(snapshot, query_vector, rows)
    rows, subject = rows[np.isfinite(subject)], subject[np.isfinite(subject)]
    if rows.shape[0] == 0:
        return scores
    credited = scores.scores.copy()
    credited[rows] += mix * np.maximum(0.0, subject - credited[rows])
    return NoteScores(credited, scores.chunks, ceiling=scores.ceiling)


def subject_cosines(snapshot: Snapshot, query_vector: Vector, rows: IntArray) -> FloatArray:
    """The cosine of each given note row's subject with the query; -inf where it has none."""
    out = np.full(rows.shape[0], -np.inf, dtype=np.float64)
    subjects = snapshot.subjects
    if subjects is None or rows.shape[0] == 0 or snapshot.subject_rows.shape[0] == 0:
        return out
    places = snapshot.subject_rows[rows]
    have = places >= 0
    # One product over the whole buffer, then the rows wanted: gathering the rows'
    # vectors first copies them (15 ms at 10k notes, against 0.15 ms so).
    similarities = subjects @ np.asarray(query_vector, dtype=np.float32)
    out[have] = similarities[places[have]]
    return out
