"""BM25's inverted index, kept by the store itself in the same transaction as each note's chunks.

Earlier builds used DuckDB fts (`PRAGMA create_fts_index`), which cannot be
maintained: it re-indexed every chunk after every batch of edits (3.3 s at
10,027 notes, 64k chunks, with the writer held throughout), and its macros
left WAL entries that did not replay (issue #9). These tables hold the same
index, changed per note:

- `bm25_terms (term_id, term, df)`: the vocabulary, with each term's document
  frequency (the number of chunks holding it). Ids are never reused; a term
  whose last chunk went keeps its row with df 0 (it costs a row, and it may
  come back).
- `bm25_postings (chunk_id, term_id, tf)`: how often each term occurs in a chunk.
- `bm25_docs (chunk_id, length)`: every chunk, with its number of terms (a
  chunk without any terms is still a document, as it was to fts).
- `bm25_stats (documents, total_length)`: one row, N and the sum of lengths,
  so the average length is total_length / documents.

Tokenisation is fts's own, run in SQL so that it cannot drift: the note's
title and the chunk's text each go through fts's `tokenize` macro as created
with `stemmer='porter', stopwords='english', ignore='(\\.|[^a-z0-9])+',
strip_accents=1, lower=1` (accents stripped, lower case, runs of anything not
[a-z0-9] split words), words in fts's English stopword list dropped, the rest
stemmed by fts's `stem(word, 'porter')`. The stopword list is fts's, copied
into `bm25_stopwords` when the tables are created (see `english_stopwords`).
A test keeps postings and scores equal to a DuckDB fts index of the same text.

Every function runs inside the caller's transaction. Per note the work is a
few statements over that note's rows plus scans of the vocabulary (a
hash join against the few new rows).

Reads for search: `stem_words` (the index's own Porter stems of query words)
and `reference_scores` (BM25 in SQL for just the query's stems: the reference
the tests and benchmarks compare search's in-memory scores with, and the way
to check a snapshot against the database; searches never run it). Query text
never becomes SQL: only [a-z0-9]+ words reach a statement, inlined as
literals (every bound parameter costs ~150 µs here), anything else is dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

import duckdb
import numpy as np
import numpy.typing as npt

from jarvisd.store.connection import extension_path, first_row

# fts's tokenize macro, exactly as `PRAGMA create_fts_index` wrote it with our options.
IGNORE = r"(\.|[^a-z0-9])+"
STEMMER = "porter"
_STAGING = "bm25_staging"
# DuckDB fts's `match_bm25` (Okapi BM25) parameters, which search's scores keep.
K1 = 1.2
B = 0.75
_TERM = re.compile(r"[a-z0-9]+")


def tokenize_sql(expression: str) -> str:
    """fts's tokenize: a list of words (some empty) from a text expression."""
    return (
        f"string_split_regex(regexp_replace(lower(strip_accents(CAST({expression} AS VARCHAR))), "
        f"'{IGNORE}', ' ', 'g'), '\\s+')"
    )


def create_tables(connection: duckdb.DuckDBPyConnection) -> None:
    """The index's tables and its stopword list (empty index)."""
    connection.execute("""
        CREATE SEQUENCE bm25_term_ids START 0 MINVALUE 0;
        CREATE TABLE bm25_stopwords (word VARCHAR NOT NULL);
        CREATE TABLE bm25_terms (
            term_id BIGINT NOT NULL, term VARCHAR NOT NULL, df BIGINT NOT NULL
        );
        CREATE TABLE bm25_postings (
            chunk_id BIGINT NOT NULL, term_id BIGINT NOT NULL, tf INTEGER NOT NULL
        );
        CREATE TABLE bm25_docs (chunk_id BIGINT NOT NULL, length INTEGER NOT NULL);
        CREATE TABLE bm25_stats (documents BIGINT NOT NULL, total_length BIGINT NOT NULL);
        INSERT INTO bm25_stats VALUES (0, 0);
    """)
    connection.execute(
        "INSERT INTO bm25_stopwords SELECT unnest(from_json(?, '[\"VARCHAR\"]'))",
        [json.dumps(english_stopwords())],
    )


def english_stopwords() -> list[str]:
    """fts's English stopword list (571 words), read from a throwaway in-memory index.

    Read rather than copied as a constant, so it is exactly the list fts used;
    in memory, so nothing of fts is ever written to the database."""
    settings: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    scratch = duckdb.connect(":memory:", config=settings)
    try:
        path = str(extension_path("fts", "duckdb_extension_fts")).replace("'", "''")
        scratch.execute(f"LOAD '{path}'")
        scratch.execute("CREATE TABLE probe (id BIGINT, text VARCHAR)")
        scratch.execute("INSERT INTO probe VALUES (1, 'probe')")
        scratch.execute("PRAGMA create_fts_index('probe', 'id', 'text', stopwords = 'english')")
        rows = scratch.execute("SELECT sw FROM fts_main_probe.stopwords ORDER BY sw").fetchall()
    finally:
        scratch.close()
    return [str(row[0]) for row in rows]


def _ids_json(note_ids: Sequence[int]) -> str:
    return json.dumps([int(identifier) for identifier in note_ids])


_COUNT_ROWS = '[{"term_id": "BIGINT", "chunks": "BIGINT"}]'
_NOTE_FILTER = "note_id IN (SELECT unnest(from_json($notes, '[\"BIGINT\"]')))"


def _stage(connection: duckdb.DuckDBPyConnection, chunk_filter: str, notes: str | None) -> None:
    """(chunk_id, term, tf) of the chosen chunks into a temporary table."""
    parameters = {} if notes is None else {"notes": notes}
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_STAGING} AS
        WITH chosen AS (
            SELECT c.id AS chunk_id, n.title AS title, c.text AS text
            FROM chunks c JOIN notes n ON n.id = c.note_id WHERE {chunk_filter}
        ),
        words AS (
            SELECT chunk_id, unnest({tokenize_sql("title")}) AS word FROM chosen
            UNION ALL
            SELECT chunk_id, unnest({tokenize_sql("text")}) AS word FROM chosen
        )
        SELECT chunk_id, stem(word, '{STEMMER}') AS term, count(*)::INTEGER AS tf
        FROM words
        WHERE word IS NOT NULL AND len(word) > 0
          AND word NOT IN (SELECT word FROM bm25_stopwords)
        GROUP BY chunk_id, term
        """,
        parameters,
    )
    # Every chosen chunk is a document, with or without terms.
    connection.execute(
        f"""
        INSERT INTO bm25_docs
        SELECT c.id, coalesce(sum(s.tf), 0)::INTEGER
        FROM chunks c LEFT JOIN {_STAGING} s ON s.chunk_id = c.id
        WHERE {chunk_filter}
        GROUP BY c.id ORDER BY c.id
        """,
        parameters,
    )


def _fold_staged(connection: duckdb.DuckDBPyConnection) -> None:
    """Staged postings into the index: new terms, df, postings, statistics."""
    connection.execute(f"""
        INSERT INTO bm25_terms
        SELECT nextval('bm25_term_ids'), term, 0
        FROM (SELECT DISTINCT term FROM {_STAGING}
              WHERE term NOT IN (SELECT term FROM bm25_terms) ORDER BY term)
    """)
    connection.execute(f"""
        UPDATE bm25_terms SET df = bm25_terms.df + added.chunks
        FROM (SELECT term, count(*) AS chunks FROM {_STAGING} GROUP BY term) added
        WHERE bm25_terms.term = added.term
    """)
    connection.execute(f"""
        INSERT INTO bm25_postings
        SELECT s.chunk_id, t.term_id, s.tf
        FROM {_STAGING} s JOIN bm25_terms t USING (term)
        ORDER BY s.chunk_id, t.term_id
    """)
    connection.execute(f"DROP TABLE {_STAGING}")


def _refresh_stats(connection: duckdb.DuckDBPyConnection, documents: int, length: int) -> None:
    connection.execute(
        "UPDATE bm25_stats SET documents = documents + ?, total_length = total_length + ?",
        [int(documents), int(length)],
    )


def add_notes(connection: duckdb.DuckDBPyConnection, note_ids: Sequence[int]) -> None:
    """Index the chunks these notes have now (their old ones must be removed already)."""
    if not note_ids:
        return
    notes = _ids_json(note_ids)
    before = _docs_totals(connection)
    _stage(connection, f"c.{_NOTE_FILTER}", notes)
    _fold_staged(connection)
    after = _docs_totals(connection)
    _refresh_stats(connection, after[0] - before[0], after[1] - before[1])


def _docs_totals(connection: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    # Cheap: bm25_docs is one narrow row per chunk; a scan of 64k rows is well under 1 ms.
    row = first_row(connection.execute("SELECT count(*), coalesce(sum(length), 0) FROM bm25_docs"))
    assert row is not None
    return int(row[0]), int(row[1])


def remove_notes(connection: duckdb.DuckDBPyConnection, note_ids: Sequence[int]) -> set[int]:
    """Take these notes' current chunks out of the index (before the chunks are deleted);
    returns the term ids whose df dropped."""
    if not note_ids:
        return set()
    rows = connection.execute(
        f"SELECT id FROM chunks WHERE {_NOTE_FILTER} ORDER BY id", {"notes": _ids_json(note_ids)}
    ).fetchall()
    chunk_ids = [int(row[0]) for row in rows]
    if not chunk_ids:
        return set()
    # A note's chunks were written by one INSERT, so their ids are (nearly) one range:
    # the BETWEEN lets DuckDB skip every row group outside it by its min/max.
    chosen = (
        f"chunk_id BETWEEN {chunk_ids[0]} AND {chunk_ids[-1]} "
        "AND chunk_id IN (SELECT unnest(from_json($chunks, '[\"BIGINT\"]')))"
    )
    parameters = {"chunks": json.dumps(chunk_ids)}
    removed = connection.execute(
        f"SELECT term_id, count(*) FROM bm25_postings WHERE {chosen} GROUP BY term_id",
        parameters,
    ).fetchall()
    if removed:
        connection.execute(
            f"""
            UPDATE bm25_terms SET df = bm25_terms.df - removed.chunks
            FROM (SELECT unnest(from_json(?, '{_COUNT_ROWS}'), recursive := true)) removed
            WHERE bm25_terms.term_id = removed.term_id
            """,
            [json.dumps([{"term_id": int(t), "chunks": int(n)} for t, n in removed])],
        )
    totals = first_row(
        connection.execute(
            f"SELECT count(*), coalesce(sum(length), 0) FROM bm25_docs WHERE {chosen}", parameters
        )
    )
    assert totals is not None
    connection.execute(f"DELETE FROM bm25_postings WHERE {chosen}", parameters)
    connection.execute(f"DELETE FROM bm25_docs WHERE {chosen}", parameters)
    _refresh_stats(connection, -int(totals[0]), -int(totals[1]))
    return {int(term) for term, _ in removed}


def rebuild(connection: duckdb.DuckDBPyConnection) -> None:
    """The whole index from every chunk, in set operations (migration, `--full`, checks)."""
    clear(connection)
    _stage(connection, "TRUE", None)
    _fold_staged(connection)
    totals = _docs_totals(connection)
    connection.execute("UPDATE bm25_stats SET documents = ?, total_length = ?", list(totals))


def clear(connection: duckdb.DuckDBPyConnection) -> None:
    """An empty index (every chunk dropped: vectors reset); term ids stay unused."""
    for table in ("bm25_postings", "bm25_docs", "bm25_terms"):
        connection.execute(f"DELETE FROM {table}")
    connection.execute("UPDATE bm25_stats SET documents = 0, total_length = 0")


def drop_fts(connection: duckdb.DuckDBPyConnection, schema: str, source: str) -> None:
    """The fts index of earlier builds and its staging table, if there.

    Object by object (macros, then tables, then the empty schema), each with its
    own WAL record: DuckDB 1.5.5 logs `DROP SCHEMA ... CASCADE` as a plain DROP
    SCHEMA, which replay refuses ("Cannot drop entry ... because there are entries
    that depend on it"), so a kill right after this migration would leave a
    database that does not open (issue #9).
    """
    macros = connection.execute(
        "SELECT DISTINCT function_name, function_type FROM duckdb_functions() "
        "WHERE schema_name = ? AND function_type IN ('macro', 'table_macro')",
        [schema],
    ).fetchall()
    for name, kind in macros:
        keyword = "MACRO TABLE" if kind == "table_macro" else "MACRO"
        connection.execute(f'DROP {keyword} IF EXISTS {schema}."{name}"')
    tables = connection.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = ?", [schema]
    ).fetchall()
    for (name,) in tables:
        connection.execute(f'DROP TABLE IF EXISTS {schema}."{name}"')
    connection.execute(f"DROP SCHEMA IF EXISTS {schema}")
    connection.execute(f"DROP TABLE IF EXISTS {source}")
    connection.execute("DELETE FROM pending_work WHERE task = 'fts'")


def _literals(words: Iterable[str]) -> str:
    # Only [a-z0-9]+ words get here (a tokenizer's, the stemmer's output); anything else
    # is dropped rather than quoted, so no text can ever break out of a literal.
    return ", ".join(f"'{word}'" for word in words if _TERM.fullmatch(word))


def stem_words(connection: duckdb.DuckDBPyConnection, words: Iterable[str]) -> dict[str, str]:
    """The index's Porter stem of each [a-z0-9]+ word (other words are left out)."""
    wanted = sorted({word for word in words if _TERM.fullmatch(word)})
    if not wanted:
        return {}
    rows = connection.execute(f"SELECT stem(unnest([{_literals(wanted)}]), '{STEMMER}')").fetchall()
    return dict(zip(wanted, (str(row[0]) for row in rows), strict=True))


def reference_scores(
    connection: duckdb.DuckDBPyConnection, stems: Sequence[str]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """BM25 in SQL from the index tables for just these stems: (chunk ids, scores) of
    every chunk holding one (the reference search's in-memory scores are checked with)."""
    literals = _literals(stems)
    if not literals:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    result = connection.execute(f"""
        WITH query_terms AS (
            SELECT term_id, df FROM bm25_terms WHERE df > 0 AND term IN ({literals})
        ),
        stats AS (
            SELECT documents AS num_docs, total_length / documents AS avgdl FROM bm25_stats
            WHERE documents > 0
        )
        SELECT postings.chunk_id AS chunk_id, sum(
            log(((stats.num_docs - query_terms.df) + 0.5) / (query_terms.df + 0.5) + 1)
            * (postings.tf * ({K1} + 1))
            / (postings.tf + {K1} * ((1 - {B}) + {B} * (docs.length / stats.avgdl)))
        ) AS score
        FROM bm25_postings AS postings
        JOIN query_terms USING (term_id)
        JOIN bm25_docs AS docs USING (chunk_id)
        CROSS JOIN stats
        GROUP BY postings.chunk_id
    """).fetchnumpy()
    return (
        np.asarray(result["chunk_id"], dtype=np.int64),
        np.asarray(result["score"], dtype=np.float64),
    )
