"""The reference answers: the recursive-CTE SQL the duckdb graph backend ran before its snapshots.

Kept here, not in jarvisd, as an independent second implementation: the
snapshot walks must return exactly what these queries return on a real vault.
Blocking, on the calling thread's read cursor.
"""

from __future__ import annotations

import duckdb

from jarvisd.graph import (
    Direction,
    GraphLink,
    LinkList,
    Neighbour,
    Neighbourhood,
    NoteNotFound,
    NotePath,
    NoteRef,
)

Cursor = duckdb.DuckDBPyConnection
MAX_PATH_HOPS = 64

_STEPS: dict[Direction, str] = {
    "out": "SELECT note_id AS source, target_note_id AS target FROM links "
    "WHERE target_note_id IS NOT NULL",
    "in": "SELECT target_note_id AS source, note_id AS target FROM links "
    "WHERE target_note_id IS NOT NULL",
    "both": "SELECT note_id AS source, target_note_id AS target FROM links "
    "WHERE target_note_id IS NOT NULL UNION ALL "
    "SELECT target_note_id, note_id FROM links WHERE target_note_id IS NOT NULL",
}


def _walk(steps: str, extra_condition: str = "") -> str:
    """A breadth-first walk from $start: (node, distance, parent) once per reached note."""
    return f"""
    WITH RECURSIVE walk(node, distance, parent) USING KEY (node) AS (
        SELECT $start::BIGINT, 0, NULL::BIGINT
        UNION
        SELECT step.target, any_value(walk.distance) + 1, min(walk.node)
        FROM walk JOIN ({steps}) step ON step.source = walk.node
        WHERE walk.distance < $depth
          AND step.target NOT IN (SELECT node FROM recurring.walk)
          {extra_condition}
        GROUP BY step.target
    )"""


_NEIGHBOURS = {
    direction: _walk(steps)
    + """
    SELECT found.path, found.title, walk.distance, via.path, count(*) OVER () AS total
    FROM walk
    JOIN notes found ON found.id = walk.node
    LEFT JOIN notes via ON via.id = walk.parent
    WHERE walk.distance > 0
    ORDER BY walk.distance, found.path
    LIMIT $limit
    """
    for direction, steps in _STEPS.items()
}

_PATHS = {
    direction: _walk(
        steps,
        "AND NOT EXISTS (SELECT 1 FROM recurring.walk reached WHERE reached.node = $target)",
    )
    + """,
    back(node, parent, step) AS (
        SELECT node, parent, 0 FROM walk WHERE node = $target
        UNION ALL
        SELECT walk.node, walk.parent, back.step + 1
        FROM back JOIN walk ON walk.node = back.parent
    )
    SELECT note.path, note.title FROM back JOIN notes note ON note.id = back.node
    ORDER BY back.step DESC
    """
    for direction, steps in _STEPS.items()
}

_NOTE = "SELECT id, title FROM notes WHERE vault = $vault AND path = $path"

_OUTGOING = """
    SELECT l.target, t.path, t.title, l.kind, l.line, l.heading, l.alias
    FROM links l LEFT JOIN notes t ON t.id = l.target_note_id
    WHERE l.note_id = $id AND l.targets_note
    ORDER BY l.ordinal
"""

_BACKLINKS = """
    SELECT s.path, l.target, l.kind, l.line, l.heading, l.alias
    FROM links l JOIN notes s ON s.id = l.note_id
    WHERE l.target_note_id = $id
    ORDER BY s.path, l.ordinal
"""


def note(cursor: Cursor, vault: str, path: str) -> tuple[int, NoteRef]:
    rows = cursor.execute(_NOTE, {"vault": vault, "path": path}).fetchall()
    if not rows:
        raise NoteNotFound(f"no note {path!r} in vault {vault!r}")
    return int(rows[0][0]), NoteRef(path, str(rows[0][1]))


def outgoing(cursor: Cursor, vault: str, path: str) -> LinkList:
    identifier, found = note(cursor, vault, path)
    rows = cursor.execute(_OUTGOING, {"id": identifier}).fetchall()
    links = tuple(GraphLink(path, *row) for row in rows)
    return LinkList(vault, found, links)


def backlinks(cursor: Cursor, vault: str, path: str) -> LinkList:
    identifier, found = note(cursor, vault, path)
    rows = cursor.execute(_BACKLINKS, {"id": identifier}).fetchall()
    links = tuple(
        GraphLink(source, target, path, found.title, kind, line, heading, alias)
        for source, target, kind, line, heading, alias in rows
    )
    return LinkList(vault, found, links)


def neighbours(
    cursor: Cursor, vault: str, path: str, depth: int, direction: Direction, limit: int
) -> Neighbourhood:
    identifier, found = note(cursor, vault, path)
    rows = cursor.execute(
        _NEIGHBOURS[direction], {"start": identifier, "depth": depth, "limit": limit}
    ).fetchall()
    listed = tuple(Neighbour(row[0], row[1], int(row[2]), row[3]) for row in rows)
    total = int(rows[0][4]) if rows else 0
    return Neighbourhood(vault, found, depth, direction, listed, total, limit)


def shortest_path(
    cursor: Cursor, vault: str, source: str, target: str, direction: Direction
) -> NotePath:
    start, start_note = note(cursor, vault, source)
    end, end_note = note(cursor, vault, target)
    if start == end:
        return NotePath(vault, start_note, end_note, direction, (start_note,))
    rows = cursor.execute(
        _PATHS[direction], {"start": start, "target": end, "depth": MAX_PATH_HOPS}
    ).fetchall()
    notes = tuple(NoteRef(path, title) for path, title in rows)
    return NotePath(vault, start_note, end_note, direction, notes)
