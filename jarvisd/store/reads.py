"""Read queries. Each takes a cursor: the store gives every thread its own."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, cast

import duckdb
import numpy as np
import numpy.typing as npt

from jarvisd.indexing.parsed import Heading, LinkKind
from jarvisd.store.connection import first_row
from jarvisd.store.records import (
    Backlink,
    ChunkMatrix,
    FileState,
    NoteDetail,
    NotePage,
    NoteSummary,
    OutgoingLink,
    SubjectMatrix,
)


def file_states(
    cursor: duckdb.DuckDBPyConnection,
    vault: str,
    paths: Collection[str] | None = None,
    folders: Collection[str] = (),
) -> dict[str, FileState]:
    """The stored stat and content hash of every note of `vault`; with `paths`, only of
    those paths and of the notes below `folders` (each ending in `/`)."""
    if paths is None:
        rows = cursor.execute(
            "SELECT path, size, mtime_ns, content_hash FROM notes WHERE vault = ?", [vault]
        ).fetchall()
    else:
        below = (
            "OR EXISTS (SELECT 1 FROM (SELECT unnest(from_json($folders, '[\"VARCHAR\"]')) "
            "AS folder) WHERE starts_with(path, folder))"
            if folders
            else ""
        )
        parameters = {"vault": vault, "paths": json.dumps(sorted(paths))}
        if folders:
            parameters["folders"] = json.dumps(sorted(folders))
        rows = cursor.execute(
            "SELECT path, size, mtime_ns, content_hash FROM notes WHERE vault = $vault "
            f"AND (path IN (SELECT unnest(from_json($paths, '[\"VARCHAR\"]'))) {below})",
            parameters,
        ).fetchall()
    return {
        str(path): FileState(int(size), int(mtime), str(digest))
        for path, size, mtime, digest in rows
    }


def paths_by_hash(cursor: duckdb.DuckDBPyConnection, vault: str, content_hash: str) -> list[str]:
    rows = cursor.execute(
        "SELECT path FROM notes WHERE vault = ? AND content_hash = ? ORDER BY path",
        [vault, content_hash],
    ).fetchall()
    return [str(row[0]) for row in rows]


def vectors_for_hashes(
    cursor: duckdb.DuckDBPyConnection, hashes: Sequence[str], dimension: int
) -> dict[str, npt.NDArray[np.float32]]:
    """Stored vectors by embed_text hash, from any note of any vault.

    Two steps: one chunk id per hash, then those chunks' vectors. In one query
    DuckDB scanned every row's embedding (its filter on the hash is optional):
    1.5-2 s per edit at 106k chunks, against 0.03-0.06 s so (2 shared cores)."""
    if not hashes:
        return {}
    ids = cursor.execute(
        "SELECT min(id) FROM chunks "
        "WHERE embed_text_hash IN (SELECT unnest(from_json(?, '[\"VARCHAR\"]'))) "
        "GROUP BY embed_text_hash",
        [json.dumps(list(hashes))],
    ).fetchall()
    if not ids:
        return {}
    result = cursor.execute(
        "SELECT embed_text_hash, embedding FROM chunks "
        "WHERE id IN (SELECT unnest(from_json(?, '[\"BIGINT\"]')))",
        [json.dumps([int(row[0]) for row in ids])],
    ).fetchnumpy()
    found = result["embed_text_hash"]
    if len(found) == 0:
        return {}
    vectors = _stack(result["embedding"], dimension)
    return {str(digest): vectors[row] for row, digest in enumerate(found)}


def subject_vectors_for_hashes(
    cursor: duckdb.DuckDBPyConnection, hashes: Sequence[str], dimension: int
) -> dict[str, npt.NDArray[np.float32]]:
    """Stored subject vectors by their text's hash, then chunk vectors for those not found
    (the same text gets the same vector whichever it was encoded as)."""
    if not hashes:
        return {}
    result = cursor.execute(
        "SELECT text_hash, any_value(embedding) AS embedding FROM note_subjects "
        "WHERE text_hash IN (SELECT unnest(from_json(?, '[\"VARCHAR\"]'))) GROUP BY text_hash",
        [json.dumps(list(hashes))],
    ).fetchnumpy()
    vectors = _stack(result["embedding"], dimension)
    found = {str(digest): vectors[row] for row, digest in enumerate(result["text_hash"])}
    rest = [digest for digest in hashes if digest not in found]
    return found | vectors_for_hashes(cursor, rest, dimension)


def notes_without_subject(
    cursor: duckdb.DuckDBPyConnection, limit: int, after: int
) -> list[tuple[int, str, tuple[str, ...], dict[str, Any]]]:
    """(id, title, aliases, frontmatter) of up to `limit` notes with no subject row, by id,
    from the first id past `after`."""
    rows = cursor.execute(
        f"SELECT id, title, aliases, frontmatter FROM notes WHERE id > {int(after)} "
        "AND id NOT IN (SELECT note_id FROM note_subjects) ORDER BY id LIMIT ?",
        [int(limit)],
    ).fetchall()
    out = []
    for identifier, title, aliases, frontmatter in rows:
        front = json.loads(frontmatter or "{}")
        out.append(
            (
                int(identifier),
                str(title),
                tuple(aliases or ()),
                front if isinstance(front, dict) else {},
            )
        )
    return out


def subject_matrix(
    cursor: duckdb.DuckDBPyConnection, dimension: int, note_ids: Sequence[int] | None
) -> SubjectMatrix:
    """The subject vectors of these notes (None: of all), by note id."""
    parameters: list[Any] = []
    where = ""
    if note_ids is not None:
        where = "WHERE note_id IN (SELECT unnest(from_json(?, '[\"BIGINT\"]')))"
        parameters = [json.dumps([int(identifier) for identifier in note_ids])]
    result = cursor.execute(
        f"SELECT note_id, embedding FROM note_subjects {where} ORDER BY note_id", parameters
    ).fetchnumpy()
    return SubjectMatrix(
        note_ids=np.asarray(result["note_id"], dtype=np.int64),
        vectors=_stack(result["embedding"], dimension),
    )


def chunk_matrix(
    cursor: duckdb.DuckDBPyConnection, dimension: int, after: int | None = None
) -> ChunkMatrix:
    where = "" if after is None else f"WHERE id > {int(after)}"
    result = cursor.execute(f"SELECT id, embedding FROM chunks {where} ORDER BY id").fetchnumpy()
    ids = np.asarray(result["id"], dtype=np.int64)
    return ChunkMatrix(ids=ids, vectors=_stack(result["embedding"], dimension))


def note_chunk_matrix(
    cursor: duckdb.DuckDBPyConnection, dimension: int, note_ids: Sequence[int]
) -> ChunkMatrix:
    """The chunk ids and vectors of these notes, by chunk id."""
    result = cursor.execute(
        "SELECT id, embedding FROM chunks "
        "WHERE note_id IN (SELECT unnest(from_json(?, '[\"BIGINT\"]'))) ORDER BY id",
        [json.dumps([int(identifier) for identifier in note_ids])],
    ).fetchnumpy()
    ids = np.asarray(result["id"], dtype=np.int64)
    return ChunkMatrix(ids=ids, vectors=_stack(result["embedding"], dimension))


def _stack(column: Any, dimension: int) -> npt.NDArray[np.float32]:
    """fetchnumpy gives a FLOAT[n] column as an object array of arrays: one matrix of it."""
    if len(column) == 0:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.stack(list(column)).astype(np.float32, copy=False)


def vault_names(cursor: duckdb.DuckDBPyConnection) -> list[str]:
    """The vaults that have notes in the store, by name."""
    rows = cursor.execute("SELECT DISTINCT vault FROM notes ORDER BY 1").fetchall()
    return [str(row[0]) for row in rows]


def stats(cursor: duckdb.DuckDBPyConnection) -> dict[str, int]:
    row = first_row(
        cursor.execute("""
        SELECT (SELECT count(*) FROM notes),
               (SELECT count(*) FROM chunks),
               (SELECT count(*) FROM links),
               (SELECT count(*) FROM links WHERE targets_note),
               (SELECT count(*) FROM links WHERE targets_note AND target_note_id IS NULL),
               (SELECT count(DISTINCT tag) FROM tags),
               (SELECT count(DISTINCT vault) FROM notes)
    """)
    )
    assert row is not None
    names = ("notes", "chunks", "links", "note_links", "unresolved_links", "tags", "vaults")
    return {name: int(value) for name, value in zip(names, row, strict=True)}


def list_notes(
    cursor: duckdb.DuckDBPyConnection, vault: str, after: str | None, limit: int
) -> NotePage:
    """Up to `limit` notes of `vault` with paths after `after`, in path order.

    Keyset paging on the (vault, path) key: a page costs its own rows whatever
    its depth, and notes added or removed between pages never shift the others.
    """
    rows = cursor.execute(
        "SELECT path, title, size, mtime_ns FROM notes "
        "WHERE vault = $vault AND ($after IS NULL OR path > $after) "
        "ORDER BY path LIMIT $limit",
        {"vault": vault, "after": after, "limit": limit + 1},
    ).fetchall()
    total = first_row(cursor.execute("SELECT count(*) FROM notes WHERE vault = ?", [vault]))
    notes = tuple(
        NoteSummary(str(path), str(title), int(size), int(mtime))
        for path, title, size, mtime in rows[:limit]
    )
    more = len(rows) > limit and bool(notes)
    return NotePage(notes, int(total[0]) if total else 0, notes[-1].path if more else None)


def get_note(cursor: duckdb.DuckDBPyConnection, vault: str, path: str) -> NoteDetail | None:
    row = first_row(
        cursor.execute(
            """
        SELECT id, title, content_hash, size, mtime_ns, indexed_at, frontmatter, aliases,
               headings, warnings,
               (SELECT count(*) FROM chunks WHERE note_id = notes.id),
               (SELECT list(tag ORDER BY tag) FROM tags WHERE note_id = notes.id)
        FROM notes WHERE vault = ? AND path = ?
        """,
            [vault, path],
        )
    )
    if row is None:
        return None
    identifier = int(row[0])
    headings = tuple(
        Heading(int(h["level"]), str(h["text"]), int(h["line"])) for h in json.loads(row[8])
    )
    return NoteDetail(
        vault=vault,
        path=path,
        title=str(row[1]),
        content_hash=str(row[2]),
        size=int(row[3]),
        mtime_ns=int(row[4]),
        indexed_at=float(row[5]),
        frontmatter=json.loads(row[6]),
        aliases=tuple(row[7] or ()),
        headings=headings,
        warnings=tuple(row[9] or ()),
        chunk_count=int(row[10]),
        tags=tuple(row[11] or ()),
        links=_outgoing(cursor, identifier),
        backlinks=_backlinks(cursor, identifier),
    )


def _outgoing(cursor: duckdb.DuckDBPyConnection, identifier: int) -> tuple[OutgoingLink, ...]:
    rows = cursor.execute(
        """
        SELECT l.target, l.key, l.kind, l.heading, l.alias, l.line, l.targets_note, t.path
        FROM links l LEFT JOIN notes t ON t.id = l.target_note_id
        WHERE l.note_id = ? ORDER BY l.ordinal
        """,
        [identifier],
    ).fetchall()
    return tuple(
        OutgoingLink(
            str(target),
            str(key),
            cast(LinkKind, kind),
            heading,
            alias,
            int(line),
            bool(targets_note),
            resolved,
        )
        for target, key, kind, heading, alias, line, targets_note, resolved in rows
    )


def _backlinks(cursor: duckdb.DuckDBPyConnection, identifier: int) -> tuple[Backlink, ...]:
    rows = cursor.execute(
        """
        SELECT s.path, s.title, l.kind, l.line, l.heading, l.alias
        FROM links l JOIN notes s ON s.id = l.note_id
        WHERE l.target_note_id = ? ORDER BY s.path, l.ordinal
        """,
        [identifier],
    ).fetchall()
    return tuple(
        Backlink(str(path), str(title), cast(LinkKind, kind), int(line), heading, alias)
        for path, title, kind, line, heading, alias in rows
    )
