"""Keyword search: BM25 from the store's own index (`store.bm25`), grouped per note.

The scoring lives in `postings` (the BM25 tables held in memory);
`bm25_sql` computes the same scores in SQL from the index tables, for just
the query's terms: the reference the tests and the benchmark compare with
(and the way to check a snapshot against the database).

Query text never becomes SQL: it is tokenised here the way the index's
tokenizer (DuckDB fts's, run in SQL by `store.bm25`) does it (accents
stripped, lower case, runs of [a-z0-9]), so the
only text that ever reaches a statement is [a-z0-9]+ words, inlined as
literals. Inlined on purpose: every bound parameter costs ~150 µs here.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence

import duckdb
import numpy as np
from cachetools import LRUCache

from jarvisd.search.hits import NoteScores
from jarvisd.search.postings import BM25_B, BM25_K1, ChunkScores
from jarvisd.search.snapshot import Snapshot

MAX_QUERY_TERMS = 64  # a pasted paragraph needs no more to be found
_TERM = re.compile(r"[a-z0-9]+")
_COMBINING = re.compile(r"[\u0300-\u036f]")


def tokenize(text: str) -> list[str]:
    """The FTS index's tokenizer: strip accents, lower case, split on anything not [a-z0-9]."""
    plain = _COMBINING.sub("", unicodedata.normalize("NFD", text)).lower()
    return _TERM.findall(plain)


def _literals(words: Iterable[str]) -> str:
    # Only [a-z0-9]+ words get here (tokenize, the stemmer's output); anything else
    # is dropped rather than quoted, so no text can ever break out of a literal.
    return ", ".join(f"'{word}'" for word in words if _TERM.fullmatch(word))


class Stemmer:
    """Porter stems by DuckDB's own `stem()` (the index's), remembered per word."""

    def __init__(self, capacity: int = 50_000) -> None:
        self._stems: LRUCache[str, str] = LRUCache(maxsize=capacity)
        self._lock = threading.Lock()

    def stems(self, cursor: duckdb.DuckDBPyConnection, words: Sequence[str]) -> dict[str, str]:
        with self._lock:
            known = {word: self._stems[word] for word in words if word in self._stems}
        missing = sorted({word for word in words if word not in known and _TERM.fullmatch(word)})
        if missing:
            rows = cursor.execute(
                f"SELECT stem(unnest([{_literals(missing)}]), 'porter')"
            ).fetchall()
            found = dict(zip(missing, (str(row[0]) for row in rows), strict=True))
            with self._lock:
                self._stems.update(found)
            known.update(found)
        return known


def query_stems(cursor: duckdb.DuckDBPyConnection, stemmer: Stemmer, query: str) -> list[str]:
    """The distinct stems of the query's terms, in first-seen order."""
    words = list(dict.fromkeys(tokenize(query)))[:MAX_QUERY_TERMS]
    if not words:
        return []
    stems = stemmer.stems(cursor, words)
    return list(dict.fromkeys(stems[word] for word in words if word in stems))


def bm25_sql(cursor: duckdb.DuckDBPyConnection, stems: Sequence[str]) -> ChunkScores:
    """The same BM25 in SQL, from the store's tables, for just these stems (the reference)."""
    empty = ChunkScores(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64), 0.0)
    if not stems:
        return empty
    result = cursor.execute(f"""
        WITH query_terms AS (
            SELECT term_id, df FROM bm25_terms WHERE df > 0 AND term IN ({_literals(stems)})
        ),
        stats AS (
            SELECT documents AS num_docs, total_length / documents AS avgdl FROM bm25_stats
            WHERE documents > 0
        )
        SELECT postings.chunk_id AS chunk_id, sum(
            log(((stats.num_docs - query_terms.df) + 0.5) / (query_terms.df + 0.5) + 1)
            * (postings.tf * ({BM25_K1} + 1))
            / (postings.tf + {BM25_K1} * ((1 - {BM25_B}) + {BM25_B} * (docs.length / stats.avgdl)))
        ) AS score
        FROM bm25_postings AS postings
        JOIN query_terms USING (term_id)
        JOIN bm25_docs AS docs USING (chunk_id)
        CROSS JOIN stats
        GROUP BY postings.chunk_id
    """).fetchnumpy()
    return ChunkScores(
        np.asarray(result["chunk_id"], dtype=np.int64),
        np.asarray(result["score"], dtype=np.float64),
        0.0,
    )


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
