"""The derived search indexes: BM25 over chunk text and note title, HNSW over vectors.

BM25 (DuckDB fts) is not maintained by inserts; it is rebuilt after index runs
that changed notes. Its source is a staging table of (chunk id, note title,
chunk text) that is emptied again right after the build: the fts macros read
only their own `fts_main_*` tables, so keeping a second copy of every chunk's
text would only cost disk. Chunk ids are never reused, so between rebuilds a
stale index can miss new chunks but never return the wrong text. Query it as

    SELECT id, fts_main_chunk_documents.match_bm25(id, 'query') AS score
    FROM chunks WHERE score IS NOT NULL ORDER BY score DESC LIMIT 10

Digits are kept as terms (the default tokeniser drops them, and `2024-05-01`
or `ISO 9001` are worth finding).

HNSW (DuckDB vss) is maintained by every insert and delete once it exists;
deletes only mark nodes, which `hnsw_compact_index` cleans up in maintenance.
An ART index on `chunks.note_id` comes and goes with it: searches through the
HNSW index score a few named notes' chunks exactly (`store.vectors`), and
without it each such read decompresses every vector of the table (6.5 ms
against 2 ms for 100 notes of SciFact's 13k chunks).
"""

from __future__ import annotations

import duckdb

from jarvisd.config import HnswConfig
from jarvisd.store.connection import first_row
from jarvisd.store.schema import (
    FTS_SOURCE,
    NOTE_CHUNKS_INDEX,
    VECTOR_INDEX,
    get_meta,
    set_meta,
)

_FTS_OPTIONS = (
    "stemmer = 'porter', stopwords = 'english', ignore = '(\\.|[^a-z0-9])+', "
    "strip_accents = 1, lower = 1, overwrite = 1"
)


def rebuild_fts(connection: duckdb.DuckDBPyConnection) -> None:
    """Rebuild the BM25 index from every chunk; run inside the caller's transaction."""
    connection.execute(f"""
        CREATE OR REPLACE TABLE {FTS_SOURCE} AS
        SELECT chunks.id AS chunk_id, notes.title AS title, chunks.text AS text
        FROM chunks JOIN notes ON notes.id = chunks.note_id
    """)
    connection.execute(
        f"PRAGMA create_fts_index('{FTS_SOURCE}', 'chunk_id', 'title', 'text', {_FTS_OPTIONS})"
    )
    connection.execute(f"DELETE FROM {FTS_SOURCE}")


def has_fts_index(connection: duckdb.DuckDBPyConnection) -> bool:
    row = first_row(
        connection.execute(
            "SELECT count(*) FROM duckdb_schemas() WHERE schema_name = ?",
            [f"fts_main_{FTS_SOURCE}"],
        )
    )
    return row is not None and int(row[0]) > 0


def has_vector_index(connection: duckdb.DuckDBPyConnection) -> bool:
    row = first_row(
        connection.execute(
            "SELECT count(*) FROM duckdb_indexes() WHERE index_name = ?", [VECTOR_INDEX]
        )
    )
    return row is not None and int(row[0]) > 0


def vector_index_wanted(hnsw: HnswConfig, chunk_count: int) -> bool:
    if hnsw.enabled == "auto":
        return chunk_count >= hnsw.min_chunks
    return bool(hnsw.enabled)


def _parameters(hnsw: HnswConfig) -> str:
    return f"metric=cosine,m={hnsw.m},ef_construction={hnsw.ef_construction}"


def ensure_vector_index(connection: duckdb.DuckDBPyConnection, hnsw: HnswConfig) -> bool:
    """Create, rebuild (parameters changed) or drop the HNSW index; True when it exists after.

    Runs inside the caller's transaction.
    """
    row = first_row(connection.execute("SELECT count(*) FROM chunks"))
    chunk_count = int(row[0]) if row is not None else 0
    wanted = vector_index_wanted(hnsw, chunk_count)
    exists = has_vector_index(connection)
    parameters = _parameters(hnsw)
    if exists and (not wanted or get_meta(connection, "hnsw.parameters") != parameters):
        connection.execute(f"DROP INDEX {VECTOR_INDEX}")
        exists = False
    if wanted and not exists:
        connection.execute(
            f"CREATE INDEX {VECTOR_INDEX} ON chunks USING HNSW (embedding) WITH "
            f"(metric = 'cosine', M = {int(hnsw.m)}, "
            f"ef_construction = {int(hnsw.ef_construction)}, ef_search = {int(hnsw.ef_search)})"
        )
        set_meta(connection, "hnsw.parameters", parameters)
    if wanted:
        connection.execute(f"CREATE INDEX IF NOT EXISTS {NOTE_CHUNKS_INDEX} ON chunks (note_id)")
    else:
        connection.execute(f"DROP INDEX IF EXISTS {NOTE_CHUNKS_INDEX}")
    # A global setting: the per-thread read cursors see it too.
    connection.execute(f"SET GLOBAL hnsw_ef_search = {int(hnsw.ef_search)}")
    return wanted


def compact_vector_index(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(f"PRAGMA hnsw_compact_index('{VECTOR_INDEX}')")
