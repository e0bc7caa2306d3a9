"""The schema as an ordered list of migrations, and the embedding the vectors belong to.

A database records the migrations applied to it in `schema_version`. Opening
applies the missing ones in order, each in its own transaction, and refuses a
database that a newer jarvisd has migrated further than this one knows.

There are no FOREIGN KEY constraints: DuckDB checks them per statement, so a
note's rows could not be deleted and rewritten in one transaction. The write
functions keep chunks, tags and links consistent with notes instead.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from jarvisd.store import bm25
from jarvisd.store.connection import first_row
from jarvisd.store.errors import EmbeddingMismatchError, SchemaTooNewError

VECTOR_INDEX = "chunks_embedding_hnsw"  # earlier builds: HNSW on chunks itself, dropped on open
VECTOR_TABLE_PREFIX = "chunk_vectors_"
VECTOR_TABLE_NAME = re.compile(r"chunk_vectors_[0-9]+")
# Beside the HNSW index only: exact cosines of given notes' chunks (fusion candidates
# the index did not return) read just those rows instead of scanning every vector.
NOTE_CHUNKS_INDEX = "chunks_note_id"
# DuckDB fts of earlier builds (schema version 1): dropped by migration 2.
FTS_SOURCE = "chunk_documents"
FTS_SCHEMA = f"fts_main_{FTS_SOURCE}"


@dataclass(frozen=True)
class MigrationContext:
    dimension: int


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[duckdb.DuckDBPyConnection, MigrationContext], None]


def _initial(connection: duckdb.DuckDBPyConnection, context: MigrationContext) -> None:
    dimension = int(context.dimension)
    connection.execute("""
        CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
        -- Derived work still owed after note writes (FTS rebuild, link resolution
        -- per vault); a row survives a crash, so the next finalize still does it.
        CREATE TABLE pending_work (task VARCHAR PRIMARY KEY);
        CREATE SEQUENCE note_ids START 1;
        -- Chunk ids are never reused, so a stale FTS index can never point at
        -- another chunk's text.
        CREATE SEQUENCE chunk_ids START 1;
        CREATE TABLE notes (
            id BIGINT PRIMARY KEY,
            vault VARCHAR NOT NULL,
            path VARCHAR NOT NULL,
            title VARCHAR NOT NULL,
            content_hash VARCHAR NOT NULL,
            size BIGINT NOT NULL,
            mtime_ns BIGINT NOT NULL,
            frontmatter JSON NOT NULL,
            aliases VARCHAR[] NOT NULL,
            headings JSON NOT NULL,
            warnings VARCHAR[] NOT NULL,
            indexed_at DOUBLE NOT NULL,
            UNIQUE (vault, path)
        );
        CREATE TABLE tags (note_id BIGINT NOT NULL, tag VARCHAR NOT NULL);
        CREATE TABLE links (
            note_id BIGINT NOT NULL,
            ordinal INTEGER NOT NULL,
            target VARCHAR NOT NULL,
            key VARCHAR NOT NULL,
            kind VARCHAR NOT NULL CHECK (kind IN ('wikilink', 'embed', 'markdown')),
            heading VARCHAR,
            alias VARCHAR,
            line INTEGER NOT NULL CHECK (line >= 0),
            targets_note BOOLEAN NOT NULL,
            target_note_id BIGINT
        );
    """)
    connection.execute(_chunks_table(dimension))


def _chunks_table(dimension: int) -> str:
    return f"""
        CREATE TABLE chunks (
            id BIGINT NOT NULL DEFAULT nextval('chunk_ids'),
            note_id BIGINT NOT NULL,
            ordinal INTEGER NOT NULL,
            heading_path VARCHAR[] NOT NULL,
            text VARCHAR NOT NULL,
            embed_text_hash VARCHAR NOT NULL,
            token_count INTEGER NOT NULL CHECK (token_count >= 0),
            start_line INTEGER NOT NULL CHECK (start_line >= 0),
            end_line INTEGER NOT NULL CHECK (end_line >= start_line),
            embedding FLOAT[{int(dimension)}] NOT NULL
        )
    """


def _bm25_per_note(connection: duckdb.DuckDBPyConnection, context: MigrationContext) -> None:
    """BM25 kept per note (`store.bm25`) instead of DuckDB fts rebuilt after every batch:
    its tables built from the chunks there are, and the fts index and its staging table
    dropped (its macros were what left a WAL that did not replay)."""
    bm25.create_tables(connection)
    bm25.rebuild(connection)
    bm25.drop_fts(connection, FTS_SCHEMA, FTS_SOURCE)


def _subjects_table(dimension: int) -> str:
    return f"""
        CREATE TABLE note_subjects (
            note_id BIGINT NOT NULL,
            text_hash VARCHAR NOT NULL,
            embedding FLOAT[{int(dimension)}] NOT NULL
        )
    """


def _note_subjects(connection: duckdb.DuckDBPyConnection, context: MigrationContext) -> None:
    """One vector per note of what it is about (title, aliases, `description`), written
    with its chunks. Empty after the migration: the next index run encodes the notes'
    subjects (`Store.notes_without_subject`), not their chunks again. No index and no
    PRIMARY KEY: a plain CREATE TABLE is what replays from the WAL after a kill."""
    connection.execute(_subjects_table(int(context.dimension)))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "notes, chunks with embeddings, tags, links, meta", _initial),
    Migration(2, "BM25 postings kept per note; DuckDB fts dropped", _bm25_per_note),
    Migration(3, "a subject vector per note (title, aliases, description)", _note_subjects),
)
LATEST_VERSION = MIGRATIONS[-1].version


def migrate(connection: duckdb.DuckDBPyConnection, path: Path, dimension: int) -> int:
    """Bring the schema up to date; returns the version the database is at now."""
    connection.execute("""
        CREATE TABLE IF NOT EXISTS schema_version (
            version INTEGER PRIMARY KEY,
            description VARCHAR NOT NULL,
            applied_at DOUBLE NOT NULL
        )
    """)
    row = first_row(connection.execute("SELECT max(version) FROM schema_version"))
    current = int(row[0]) if row is not None and row[0] is not None else 0
    if current > LATEST_VERSION:
        raise SchemaTooNewError(
            f"{path} has schema version {current}, but this jarvisd knows versions up to "
            f"{LATEST_VERSION}: upgrade jarvisd, or point storage.database at another file"
        )
    context = MigrationContext(dimension=dimension)
    migrated = False
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        connection.execute("BEGIN TRANSACTION")
        try:
            migration.apply(connection, context)
            connection.execute(
                "INSERT INTO schema_version VALUES (?, ?, ?)",
                [migration.version, migration.description, time.time()],
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        current = migration.version
        migrated = True
    if migrated:
        # Into the file now: the WAL of a migration is as large as the tables it built.
        connection.execute("CHECKPOINT")
    return current


# ------------------------------------------------------------------ embedding identity


def get_meta(connection: duckdb.DuckDBPyConnection, key: str) -> str | None:
    row = first_row(connection.execute("SELECT value FROM meta WHERE key = ?", [key]))
    return None if row is None else str(row[0])


def set_meta(connection: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    connection.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])


def check_embedding(
    connection: duckdb.DuckDBPyConnection,
    path: Path,
    dimension: int,
    model: str | None,
    reset: bool,
) -> bool:
    """Record which embedding the vectors are in, or check it; True when vectors were reset.

    A different dimension cannot be stored at all; a different model of the
    same dimension could be, but its vectors would live in another space and
    every similarity against the old ones would be noise. Both need a re-index.
    """
    stored_dimension = get_meta(connection, "embedding.dimension")
    stored_model = get_meta(connection, "embedding.model")
    if stored_dimension is None:
        set_meta(connection, "embedding.dimension", str(dimension))
        if model is not None:
            set_meta(connection, "embedding.model", model)
        return False
    model_changed = model is not None and stored_model is not None and stored_model != model
    if int(stored_dimension) == dimension and not model_changed:
        if model is not None and stored_model is None:
            set_meta(connection, "embedding.model", model)
        return False
    if not reset:
        raise EmbeddingMismatchError(
            f"{path} holds {stored_dimension}-dimensional vectors of model "
            f"{stored_model or 'unknown'}, but the configured model {model or ''} gives "
            f"{dimension} dimensions: every note must be re-indexed. Open it with "
            "reset_vectors=True (drops all vectors; the next index run rebuilds them), or "
            "delete the database file, or set embedding.model back"
        )
    reset_vectors(connection, dimension, model)
    return True


def reset_vectors(connection: duckdb.DuckDBPyConnection, dimension: int, model: str | None) -> None:
    """Drop every chunk and vector (subjects too), make every note look changed, and retype
    the vectors.

    One transaction that drops and recreates `chunks` rather than `ALTER ...
    TYPE`: DuckDB 1.5.5 cannot replay that ALTER from the WAL on a table with a
    `nextval` default ("Calling DatabaseManager::GetDefaultDatabase with no
    default database set"), so a kill after a model change left a database that
    would not open (issue #9). DROP + CREATE replay, and a crash before the
    commit leaves the old identity, so the next open asks for the reset again.
    """
    _in_transaction(connection, lambda: _replace_vectors(connection, dimension, model))


def drop_vector_tables(connection: duckdb.DuckDBPyConnection) -> None:
    """Every HNSW vector table, the note index beside them, and their meta rows."""
    connection.execute(f"DROP INDEX IF EXISTS {VECTOR_INDEX}")
    connection.execute(f"DROP INDEX IF EXISTS {NOTE_CHUNKS_INDEX}")  # would block the ALTER
    tables = connection.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
    ).fetchall()
    for (name,) in tables:
        if VECTOR_TABLE_NAME.fullmatch(str(name)):
            connection.execute(f"DROP TABLE {name}")
    connection.execute("DELETE FROM meta WHERE key LIKE 'hnsw.%' AND key <> 'hnsw.generation'")


def _replace_vectors(
    connection: duckdb.DuckDBPyConnection, dimension: int, model: str | None
) -> None:
    drop_vector_tables(connection)
    connection.execute("DROP TABLE chunks")
    connection.execute(_chunks_table(dimension))
    connection.execute("DROP TABLE note_subjects")
    connection.execute(_subjects_table(dimension))
    # The planner compares (size, mtime_ns) first and the content hash next:
    # neither can match now, so the next run parses and encodes every note.
    connection.execute("UPDATE notes SET mtime_ns = -1, content_hash = ''")
    bm25.clear(connection)
    set_meta(connection, "embedding.dimension", str(dimension))
    if model is not None:
        set_meta(connection, "embedding.model", model)


def _in_transaction(connection: duckdb.DuckDBPyConnection, action: Callable[[], None]) -> None:
    connection.execute("BEGIN TRANSACTION")
    try:
        action()
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
