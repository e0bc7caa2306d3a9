"""The reference BM25 the store's own index is held to: DuckDB fts over the same text.

Built in a separate in-memory DuckDB with the options earlier builds indexed
with, from the store's current (chunk id, note title, chunk text), so a test
compares the store's per-note postings with what fts makes of the same rows.
"""

from __future__ import annotations

from collections import Counter

import duckdb

from jarvisd.store import Store
from jarvisd.store.connection import extension_path

FTS_OPTIONS = (
    "stemmer = 'porter', stopwords = 'english', ignore = '(\\.|[^a-z0-9])+', "
    "strip_accents = 1, lower = 1, overwrite = 1"
)


class FtsReference:
    """DuckDB fts over a store's chunks, as of construction."""

    def __init__(self, store: Store) -> None:
        rows = (
            store.reader()
            .execute(
                "SELECT c.id, n.title, c.text FROM chunks c JOIN notes n ON n.id = c.note_id "
                "ORDER BY c.id"
            )
            .fetchall()
        )
        self.connection = duckdb.connect(":memory:")
        self.connection.execute(f"LOAD '{extension_path('fts', 'duckdb_extension_fts')}'")
        self.connection.execute(
            "CREATE TABLE documents (chunk_id BIGINT, title VARCHAR, text VARCHAR)"
        )
        if rows:
            self.connection.executemany("INSERT INTO documents VALUES (?, ?, ?)", rows)
        self.connection.execute(
            f"PRAGMA create_fts_index('documents', 'chunk_id', 'title', 'text', {FTS_OPTIONS})"
        )

    def postings(self) -> Counter[tuple[int, str]]:
        """(chunk id, term) -> tf."""
        rows = self.connection.execute("""
            SELECT d.name, t2.term, count(*) FROM fts_main_documents.terms t
            JOIN fts_main_documents.docs d USING (docid)
            JOIN fts_main_documents.dict t2 USING (termid)
            GROUP BY d.name, t2.term
        """).fetchall()
        return Counter({(int(chunk), str(term)): int(tf) for chunk, term, tf in rows})

    def lengths(self) -> dict[int, int]:
        rows = self.connection.execute("SELECT name, len FROM fts_main_documents.docs").fetchall()
        return {int(chunk): int(length) for chunk, length in rows}

    def scores(self, query: str) -> dict[int, float]:
        rows = self.connection.execute(
            "SELECT chunk_id, fts_main_documents.match_bm25(chunk_id, ?) AS score "
            "FROM documents WHERE score IS NOT NULL",
            [query],
        ).fetchall()
        return {int(chunk): float(score) for chunk, score in rows}

    def tokenize(self, text: str) -> list[str]:
        row = self.connection.execute("SELECT fts_main_documents.tokenize(?)", [text]).fetchone()
        assert row is not None
        return [str(token) for token in row[0] if token]

    def close(self) -> None:
        self.connection.close()


def store_postings(store: Store) -> Counter[tuple[int, str]]:
    """The store's maintained postings, (chunk id, term) -> tf."""
    rows = (
        store.reader()
        .execute(
            "SELECT p.chunk_id, t.term, p.tf FROM bm25_postings p JOIN bm25_terms t USING (term_id)"
        )
        .fetchall()
    )
    return Counter({(int(chunk), str(term)): int(tf) for chunk, term, tf in rows})


def store_index(store: Store) -> dict[str, object]:
    """Everything the store's index holds, by term text (term ids depend on history)."""
    cursor = store.reader()
    stats = cursor.execute("SELECT documents, total_length FROM bm25_stats").fetchall()
    frequencies = cursor.execute("SELECT term, df FROM bm25_terms WHERE df > 0").fetchall()
    negative = cursor.execute("SELECT count(*) FROM bm25_terms WHERE df < 0").fetchall()
    duplicates = cursor.execute(
        "SELECT count(*) FROM (SELECT term FROM bm25_terms GROUP BY term HAVING count(*) > 1)"
    ).fetchall()
    lengths = cursor.execute("SELECT chunk_id, length FROM bm25_docs").fetchall()
    return {
        "postings": store_postings(store),
        "df": {str(term): int(df) for term, df in frequencies},
        "lengths": {int(chunk): int(length) for chunk, length in lengths},
        "stats": tuple(int(value) for value in stats[0]),
        "negative_df": int(negative[0][0]),
        "duplicate_terms": int(duplicates[0][0]),
    }
