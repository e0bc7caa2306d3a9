"""The reads the link graph, its projection and note lookups are made of.

Graph services get columns and rows from here and never run SQL themselves
(the store is the only home of SQL). Every read takes the caller's cursor (the
thread's own, `Store.reader()`), so it runs in whatever pool called it.
"""

from __future__ import annotations

from typing import Any

import duckdb

from jarvisd.store.connection import first_row

Columns = dict[str, Any]  # name -> numpy array, as DuckDB's fetchnumpy gives them

# Notes by id: a note's number in a graph snapshot is its position here.
_GRAPH_NOTES = """
    SELECT id, path, title, (row_number() OVER (ORDER BY path) - 1)::INTEGER AS path_rank
    FROM notes WHERE vault = $vault ORDER BY id
"""
# Note links (what outgoing and backlinks list), by linking note and position.
# target_note_id is set only on links that target notes, so these are also the steps.
_GRAPH_LINKS = """
    SELECT l.note_id, l.target, coalesce(l.target_note_id, -1) AS target_note_id,
           l.kind, l.line, l.heading, l.alias
    FROM links l JOIN notes s ON s.id = l.note_id
    WHERE s.vault = $vault AND l.targets_note
    ORDER BY l.note_id, l.ordinal
"""
_PROJECTED_NOTES = "SELECT path, title FROM notes WHERE vault = ? ORDER BY path"
_PROJECTED_LINKS = """
    SELECT s.path, l.ordinal, l.target, l.key, l.kind, l.line, l.heading, l.alias, t.path
    FROM links l
    JOIN notes s ON s.id = l.note_id
    LEFT JOIN notes t ON t.id = l.target_note_id
    WHERE s.vault = ? AND l.targets_note
    ORDER BY s.path, l.ordinal
"""
_UNRESOLVED = """
    SELECT min(l.target), count(*), list(DISTINCT s.path ORDER BY s.path)
    FROM links l JOIN notes s ON s.id = l.note_id
    WHERE s.vault = $vault AND l.targets_note AND l.target_note_id IS NULL
    GROUP BY l.key
    ORDER BY count(*) DESC, min(l.target)
"""
_ORPHANS = """
    SELECT n.path, n.title FROM notes n
    WHERE n.vault = $vault
      AND NOT EXISTS (SELECT 1 FROM links l WHERE l.note_id = n.id
                      AND l.target_note_id IS NOT NULL AND l.target_note_id <> n.id)
      AND NOT EXISTS (SELECT 1 FROM links l WHERE l.target_note_id = n.id
                      AND l.note_id <> n.id)
    ORDER BY n.path
"""
# Rank 0 title, 1 file name, 2 alias; then the shortest path, then alphabetical.
_BY_TITLE = """
    SELECT path, rank FROM (
        SELECT path,
               CASE WHEN lower(title) = lower($title) THEN 0
                    WHEN lower(regexp_replace(path, '^.*/|\\.md$', '', 'g')) = lower($title) THEN 1
                    ELSE 2 END AS rank
        FROM notes
        WHERE vault = $vault AND (
            lower(title) = lower($title)
            OR lower(regexp_replace(path, '^.*/|\\.md$', '', 'g')) = lower($title)
            OR list_contains(list_transform(aliases, alias -> lower(alias)), lower($title)))
    )
    ORDER BY rank, length(path), path
    LIMIT $limit
"""
_EXISTS = "SELECT 1 FROM notes WHERE vault = $vault AND path = $path"


def graph_columns(cursor: duckdb.DuckDBPyConnection, vault: str) -> tuple[Columns, Columns]:
    """One vault's notes and note links as columns, read in ONE read transaction."""
    cursor.execute("BEGIN TRANSACTION")
    try:
        notes = cursor.execute(_GRAPH_NOTES, {"vault": vault}).fetchnumpy()
        links = cursor.execute(_GRAPH_LINKS, {"vault": vault}).fetchnumpy()
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    cursor.execute("COMMIT")
    return dict(notes), dict(links)


def projection_rows(
    cursor: duckdb.DuckDBPyConnection, vault: str
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(path, title) per note and (source, ordinal, target, key, kind, line, heading, alias,
    target path) per note link, in path and written order."""
    titles = cursor.execute(_PROJECTED_NOTES, [vault]).fetchall()
    links = cursor.execute(_PROJECTED_LINKS, [vault]).fetchall()
    return titles, links


def unresolved_targets(
    cursor: duckdb.DuckDBPyConnection, vault: str
) -> list[tuple[str, int, list[str]]]:
    """(target as first written, link count, linking paths) per unresolved key, most first."""
    rows = cursor.execute(_UNRESOLVED, {"vault": vault}).fetchall()
    return [(str(target), int(count), list(sources)) for target, count, sources in rows]


def orphan_notes(cursor: duckdb.DuckDBPyConnection, vault: str) -> list[tuple[str, str]]:
    """(path, title) of the notes no other note links to and that link to no other."""
    rows = cursor.execute(_ORPHANS, {"vault": vault}).fetchall()
    return [(str(path), str(title)) for path, title in rows]


def notes_titled(
    cursor: duckdb.DuckDBPyConnection, vault: str, title: str, limit: int
) -> list[tuple[str, int]]:
    """(path, rank) of the notes whose title, file name or an alias is `title`, best first."""
    rows = cursor.execute(_BY_TITLE, {"vault": vault, "title": title, "limit": limit}).fetchall()
    return [(str(path), int(rank)) for path, rank in rows]


def note_exists(cursor: duckdb.DuckDBPyConnection, vault: str, path: str) -> bool:
    return first_row(cursor.execute(_EXISTS, {"vault": vault, "path": path})) is not None
