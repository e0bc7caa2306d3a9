"""The BM25 index in memory: the store's BM25 tables (`store.bm25`), read once per index change.

Measured here (2 shared cores) with DuckDB fts's tables, which held the same
postings one row per term occurrence: computing BM25 in SQL for
just the query's terms took 6-12 ms a query on SciFact (13k chunks, 878k term
rows) and 22 ms on a 10k-note vault (64k chunks, 2.6M term rows): the scan of
`terms` grows with the collection (`match_bm25` is slower still). Reading the
same tables into postings once, when the snapshot is built (0.16 s and 0.42 s,
10 MB and 23 MB), makes a query's BM25 a few array operations over only its
terms' postings: 0.13 ms and 0.18 ms.

The scores are DuckDB fts's (its `match_bm25` macro's Okapi BM25: k1 1.2,
b 0.75, idf = log10((N - df + 0.5) / (df + 0.5) + 1), N and the average
length from `bm25_stats`); each posting's length-normalised tf factor
is precomputed in float32, so they agree with the macro to ~1e-7 (a test
keeps them equal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt

from jarvisd.store.connection import first_row

BM25_K1 = 1.2
BM25_B = 0.75
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ChunkScores:
    """BM25 of every chunk holding a query term; `bound` is the query's highest possible score."""

    chunk_ids: IntArray
    scores: npt.NDArray[np.float64]
    bound: float


@dataclass(frozen=True)
class Postings:
    """term -> (chunk ids, tf factor), CSR by term id."""

    terms: dict[str, int]
    idf: npt.NDArray[np.float64]  # per term id
    offsets: IntArray  # postings of term t: offsets[t]:offsets[t + 1]
    chunk_ids: IntArray
    factors: npt.NDArray[np.float32]  # tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avgdl))

    @classmethod
    def empty(cls) -> Postings:
        return cls(
            {},
            np.zeros(0, np.float64),
            np.zeros(1, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
        )

    @property
    def memory_bytes(self) -> int:
        arrays = (self.idf, self.offsets, self.chunk_ids, self.factors)
        return sum(int(array.nbytes) for array in arrays) + 80 * len(self.terms)

    def score(self, stems: Sequence[str]) -> ChunkScores:
        """BM25 over the chunks holding any of the (distinct) stems."""
        ids: list[IntArray] = []
        contributions: list[npt.NDArray[np.float64]] = []
        bound = 0.0
        for stem in dict.fromkeys(stems):
            term = self.terms.get(stem)
            if term is None:
                continue
            start, end = int(self.offsets[term]), int(self.offsets[term + 1])
            idf = float(self.idf[term])
            bound += idf * (BM25_K1 + 1)
            ids.append(self.chunk_ids[start:end])
            contributions.append(self.factors[start:end].astype(np.float64) * idf)
        if not ids:
            return ChunkScores(np.zeros(0, np.int64), np.zeros(0, np.float64), 0.0)
        if len(ids) == 1:
            return ChunkScores(ids[0], contributions[0].astype(np.float64), bound)
        chunk_ids, inverse = np.unique(np.concatenate(ids), return_inverse=True)
        scores = np.bincount(inverse, weights=np.concatenate(contributions))
        return ChunkScores(chunk_ids, scores.astype(np.float64), bound)


def read_postings(cursor: duckdb.DuckDBPyConnection) -> Postings:
    """The store's BM25 tables (`store.bm25`) as postings; empty for an empty index."""
    stats = first_row(cursor.execute("SELECT documents, total_length FROM bm25_stats"))
    vocabulary = cursor.execute(
        "SELECT term_id, term, df FROM bm25_terms WHERE df > 0 ORDER BY term_id"
    ).fetchnumpy()
    rows = cursor.execute("""
        SELECT p.term_id, p.chunk_id, p.tf, d.length
        FROM bm25_postings p JOIN bm25_docs d USING (chunk_id)
        ORDER BY p.term_id, p.chunk_id
    """).fetchnumpy()
    if stats is None or not int(stats[0]) or not len(vocabulary["term_id"]):
        return Postings.empty()
    documents = float(stats[0])
    average = float(stats[1]) / documents
    # Term ids are never reused, so the stored ones have gaps: rows here are dense.
    stored_ids = np.asarray(vocabulary["term_id"], dtype=np.int64)
    term_rows = np.searchsorted(stored_ids, np.asarray(rows["term_id"], dtype=np.int64))
    frequencies = np.asarray(vocabulary["df"], dtype=np.float64)
    idf = np.log10((documents - frequencies + 0.5) / (frequencies + 0.5) + 1)
    tf = np.asarray(rows["tf"], dtype=np.float64)
    length = np.asarray(rows["length"], dtype=np.float64)
    norm = (1 - BM25_B) + BM25_B * (length / average) if average > 0 else np.ones_like(length)
    factors = (tf * (BM25_K1 + 1) / (tf + BM25_K1 * norm)).astype(np.float32)
    counts = np.bincount(term_rows, minlength=stored_ids.shape[0])
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    terms = dict(zip(vocabulary["term"].tolist(), range(stored_ids.shape[0]), strict=True))
    return Postings(terms, idf, offsets, np.asarray(rows["chunk_id"], dtype=np.int64), factors)
