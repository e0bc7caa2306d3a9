"""The derived vector index: HNSW over chunk vectors (BM25 lives in `store.bm25`).

HNSW (DuckDB vss) never sits on `chunks` itself. Measured here with the
vss wheel of DuckDB 1.5.5, an HNSW index on a table that notes are rewritten
in (DELETE + INSERT) is not safe: the insert that grows the index past its
capacity a second time hangs for good (a single thread, ~2k chunks, every
time), rewrites can fail with "Duplicate keys not allowed in high-level
wrappers" (vss issue #81, which can leave a file that no longer opens), and
three or more concurrent index scans segfault. So the index lives on an
immutable copy, `chunk_vectors_<n>` (id, embedding), built in one go at
finalize and never written again; chunks written after it (ids past its
`max_chunk_id`: chunk ids are never reused) are scored exactly by search, and
deleted ones are skipped there. Once more than `rebuild_share` of the copy
changed, the next finalize builds `chunk_vectors_<n+1>`; the old copy is
retired and dropped at the finalize after (a search may still read it until
the new snapshot is in). `Store` lets one index scan run at a time.

An ART index on `chunks.note_id` comes and goes with HNSW: searches through
it score a few named notes' chunks exactly (`store.vectors`), and without it
each such read decompresses every vector of the table (6.5 ms against 2 ms for
100 notes of SciFact's 13k chunks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from jarvisd.config import HnswConfig
from jarvisd.store.connection import first_row
from jarvisd.store.schema import (
    NOTE_CHUNKS_INDEX,
    VECTOR_INDEX,
    VECTOR_TABLE_NAME,
    VECTOR_TABLE_PREFIX,
    get_meta,
    set_meta,
)


@dataclass(frozen=True, slots=True)
class VectorTable:
    """An HNSW-indexed copy of the chunk vectors, as of chunk id `max_chunk_id`."""

    name: str
    max_chunk_id: int


@dataclass(frozen=True, slots=True)
class VectorIndexChange:
    exists: bool
    built: bool = False
    retired: str | None = None


def vector_table(connection: duckdb.DuckDBPyConnection) -> VectorTable | None:
    """The current HNSW-indexed vector table, as the meta table names it (None: none)."""
    name = get_meta(connection, "hnsw.table")
    highest = get_meta(connection, "hnsw.max_chunk_id")
    if name is None or highest is None or not VECTOR_TABLE_NAME.fullmatch(name):
        return None
    return VectorTable(name, int(highest))


def has_vector_index(connection: duckdb.DuckDBPyConnection) -> bool:
    return vector_table(connection) is not None


def drop_legacy_vector_index(connection: duckdb.DuckDBPyConnection) -> bool:
    """Earlier builds kept HNSW on `chunks` itself, which vss cannot maintain safely."""
    row = first_row(
        connection.execute(
            "SELECT count(*) FROM duckdb_indexes() WHERE index_name = ?", [VECTOR_INDEX]
        )
    )
    if row is None or not int(row[0]):
        return False
    connection.execute(f"DROP INDEX {VECTOR_INDEX}")
    return True


def vector_index_wanted(hnsw: HnswConfig, chunk_count: int) -> bool:
    if hnsw.enabled == "auto":
        return chunk_count >= hnsw.min_chunks
    return bool(hnsw.enabled)


def _parameters(hnsw: HnswConfig) -> str:
    return f"metric=cosine,m={hnsw.m},ef_construction={hnsw.ef_construction}"


def staleness(connection: duckdb.DuckDBPyConnection, table: VectorTable) -> float:
    """Share of the indexed vectors that changed since the build: chunks written after
    it (ids past its highest) plus chunks deleted since, over the vectors it holds."""
    row = first_row(
        connection.execute(f"""
            SELECT (SELECT count(*) FROM {table.name}),
                   (SELECT count(*) FROM chunks WHERE id <= {table.max_chunk_id}),
                   (SELECT count(*) FROM chunks WHERE id > {table.max_chunk_id})
        """)
    )
    assert row is not None
    indexed, kept, added = (int(value) for value in row)
    return (added + indexed - kept) / max(1, indexed)


def ensure_vector_index(
    connection: duckdb.DuckDBPyConnection,
    hnsw: HnswConfig,
    rebuild_share: float,
    on_build: Callable[[str, int], None] = lambda name, chunks: None,
) -> VectorIndexChange:
    """Build, rebuild or retire the HNSW vector table as `hnsw` asks; run in a transaction.

    A rebuild happens when there is none, its parameters changed, or more than
    `rebuild_share` of its vectors changed since it was built. The table it
    replaces is not dropped here (a search may still be reading it): it is
    named in `retired`, for `drop_retired_vector_tables` once searches moved on.
    `on_build(table, chunks)` is called before a build: it costs time in
    proportion to every chunk (31 s for 22k chunks on 2 idle cores at the default
    m 16, ef_construction 200), not to the edits since the last one.
    """
    row = first_row(connection.execute("SELECT count(*) FROM chunks"))
    chunk_count = int(row[0]) if row is not None else 0
    wanted = vector_index_wanted(hnsw, chunk_count)
    current = vector_table(connection)
    parameters = _parameters(hnsw)
    # A global setting: the per-thread read cursors see it too.
    connection.execute(f"SET GLOBAL hnsw_ef_search = {int(hnsw.ef_search)}")
    if not wanted:
        connection.execute(f"DROP INDEX IF EXISTS {NOTE_CHUNKS_INDEX}")
        if current is None:
            return VectorIndexChange(exists=False)
        _forget_table(connection, current.name)
        return VectorIndexChange(exists=False, retired=current.name)
    connection.execute(f"CREATE INDEX IF NOT EXISTS {NOTE_CHUNKS_INDEX} ON chunks (note_id)")
    if (
        current is not None
        and get_meta(connection, "hnsw.parameters") == parameters
        and staleness(connection, current) <= rebuild_share
    ):
        return VectorIndexChange(exists=True)
    generation = int(get_meta(connection, "hnsw.generation") or "0") + 1
    name = f"{VECTOR_TABLE_PREFIX}{generation}"
    on_build(name, chunk_count)
    connection.execute(f"DROP TABLE IF EXISTS {name}")
    connection.execute(f"CREATE TABLE {name} AS SELECT id, embedding FROM chunks ORDER BY id")
    connection.execute(
        f"CREATE INDEX {name}_hnsw ON {name} USING HNSW (embedding) WITH "
        f"(metric = 'cosine', M = {int(hnsw.m)}, "
        f"ef_construction = {int(hnsw.ef_construction)}, ef_search = {int(hnsw.ef_search)})"
    )
    highest = first_row(connection.execute(f"SELECT coalesce(max(id), -1) FROM {name}"))
    assert highest is not None
    set_meta(connection, "hnsw.table", name)
    set_meta(connection, "hnsw.max_chunk_id", str(int(highest[0])))
    set_meta(connection, "hnsw.generation", str(generation))
    set_meta(connection, "hnsw.parameters", parameters)
    if current is not None:
        _retire(connection, current.name)
    return VectorIndexChange(
        exists=True, built=True, retired=None if current is None else current.name
    )


def _forget_table(connection: duckdb.DuckDBPyConnection, name: str) -> None:
    for key in ("hnsw.table", "hnsw.max_chunk_id", "hnsw.parameters"):
        connection.execute("DELETE FROM meta WHERE key = ?", [key])
    _retire(connection, name)


def _retire(connection: duckdb.DuckDBPyConnection, name: str) -> None:
    retired = set(filter(None, (get_meta(connection, "hnsw.retired") or "").split(",")))
    set_meta(connection, "hnsw.retired", ",".join(sorted(retired | {name})))


def drop_retired_vector_tables(connection: duckdb.DuckDBPyConnection) -> list[str]:
    """Drop the vector tables no snapshot names any more; run in a transaction."""
    retired = [
        name
        for name in (get_meta(connection, "hnsw.retired") or "").split(",")
        if VECTOR_TABLE_NAME.fullmatch(name)
    ]
    if not retired:
        return []  # the usual case: no write at all
    for name in retired:
        connection.execute(f"DROP TABLE IF EXISTS {name}")
    connection.execute("DELETE FROM meta WHERE key = 'hnsw.retired'")
    return retired
