"""The statements behind each note write. Every function runs inside the caller's transaction.

BM25's postings (`store.bm25`) change here too, with the chunks they index:
the index is never behind the chunks, whatever crashes when.

How rows get into DuckDB matters here: a Python list bound as a parameter
costs about 45 µs per element (a 384-float vector took 17 ms), so row data
travels as one JSON document per table (`from_json` parses it in C++) and
vectors as one flat float32 numpy array scanned in place. The chunks of a
5-chunk note go in in ~2 ms that way, against ~85 ms with executemany.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from jarvisd.indexing.markdown import link_key
from jarvisd.indexing.parsed import ParsedNote
from jarvisd.store import bm25
from jarvisd.store.connection import first_row
from jarvisd.store.records import Changes

VECTOR_VIEW = "note_vector_values"
# A note's subject vector as written: (text_hash of its subject text, the vector).
Subject = tuple[str, npt.NDArray[np.float32]]


def _row_type(**columns: str) -> str:
    """A from_json structure: a list of objects with these column types."""
    return json.dumps([columns])


_CHUNK_ROWS = _row_type(
    row="INTEGER",
    note_id="BIGINT",
    ordinal="INTEGER",
    heading_path="VARCHAR[]",
    text="VARCHAR",
    embed_text_hash="VARCHAR",
    token_count="INTEGER",
    start_line="INTEGER",
    end_line="INTEGER",
)
_LINK_ROWS = _row_type(
    note_id="BIGINT",
    ordinal="INTEGER",
    target="VARCHAR",
    key="VARCHAR",
    kind="VARCHAR",
    heading="VARCHAR",
    alias="VARCHAR",
    line="INTEGER",
    targets_note="BOOLEAN",
    target_note_id="BIGINT",
)
_TAG_ROWS = _row_type(note_id="BIGINT", tag="VARCHAR")
_SUBJECT_ROWS = _row_type(row="INTEGER", note_id="BIGINT", text_hash="VARCHAR")
_NOTE_ROW = _row_type(
    vault="VARCHAR",
    path="VARCHAR",
    title="VARCHAR",
    content_hash="VARCHAR",
    size="BIGINT",
    mtime_ns="BIGINT",
    frontmatter="JSON",
    aliases="VARCHAR[]",
    headings="JSON",
    warnings="VARCHAR[]",
    indexed_at="DOUBLE",
)


def text_hash(text: str) -> str:
    """The key a chunk's vector is stored and reused under: sha256 of its embed_text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _json(value: Any) -> str:
    # Frontmatter is JSON-able already; default=str only guards against surprises.
    return json.dumps(value, ensure_ascii=False, default=str)


# An existing (vault, path) keeps its id, so links from other notes that resolve
# to it stay resolved while the next link resolution is pending.
_UPSERT_NOTE = f"""
    INSERT INTO notes (id, vault, path, title, content_hash, size, mtime_ns, frontmatter,
                       aliases, headings, warnings, indexed_at)
    SELECT nextval('note_ids'), vault, path, title, content_hash, size, mtime_ns, frontmatter,
           aliases, headings, warnings, indexed_at
    FROM (SELECT unnest(from_json(?, '{_NOTE_ROW}'), recursive := true))
    ON CONFLICT (vault, path) DO UPDATE SET
        title = excluded.title, content_hash = excluded.content_hash, size = excluded.size,
        mtime_ns = excluded.mtime_ns, frontmatter = excluded.frontmatter,
        aliases = excluded.aliases, headings = excluded.headings, warnings = excluded.warnings,
        indexed_at = excluded.indexed_at
    RETURNING id
"""


def write_note(
    connection: duckdb.DuckDBPyConnection,
    vault: str,
    note: ParsedNote,
    vectors: npt.NDArray[np.float32],
    size: int,
    mtime_ns: int,
    changes: Changes,
    subject: Subject | None = None,
) -> int:
    """Replace everything stored for (vault, note.path), its subject vector included (None:
    the note has none, or it is left to `write_subjects`); returns the note id.

    Few statements with one JSON parameter each: in this environment every
    bound parameter also costs DuckDB two failed `import pandas` (~150 µs).
    """
    headings = [{"level": h.level, "text": h.text, "line": h.line} for h in note.headings]
    row = {
        "vault": vault,
        "path": note.path,
        "title": note.title,
        "content_hash": note.content_hash,
        "size": size,
        "mtime_ns": mtime_ns,
        "frontmatter": note.frontmatter,
        "aliases": list(note.aliases),
        "headings": headings,
        "warnings": list(note.warnings),
        "indexed_at": time.time(),
    }
    before = first_row(
        connection.execute(
            "SELECT aliases FROM notes WHERE vault = ? AND path = ?", [vault, note.path]
        )
    )
    result = first_row(connection.execute(_UPSERT_NOTE, [_json([row])]))
    assert result is not None
    identifier = int(result[0])
    changes.links.sources.add(identifier)
    if before is None:  # a new name links may have been waiting for
        changes.links.names |= name_tails(note.path, note.aliases)
        changes.links.paths.add(note.path)
    elif sorted(before[0] or ()) != sorted(note.aliases):
        changes.links.names |= name_tails(None, [*(before[0] or ()), *note.aliases])
        changes.links.paths.add(note.path)
    previous_targets = _resolved_keys(connection, identifier)
    changes.terms |= bm25.remove_notes(connection, [identifier])
    delete_contents(connection, identifier)
    _insert_chunks(connection, identifier, note, vectors)
    if subject is not None:
        _insert_subjects(connection, [identifier], [subject[0]], subject[1].reshape(1, -1))
    bm25.add_notes(connection, [identifier])
    changes.notes.add(identifier)
    _insert_tags(connection, identifier, note.tags)
    _insert_links(connection, identifier, note, previous_targets)
    return identifier


def _resolved_keys(connection: duckdb.DuckDBPyConnection, identifier: int) -> dict[str, int]:
    rows = connection.execute(
        "SELECT key, min(target_note_id) FROM links "
        "WHERE note_id = ? AND target_note_id IS NOT NULL GROUP BY key",
        [identifier],
    ).fetchall()
    return {str(key): int(target) for key, target in rows}


def _insert_chunks(
    connection: duckdb.DuckDBPyConnection,
    identifier: int,
    note: ParsedNote,
    vectors: npt.NDArray[np.float32],
) -> None:
    if not note.chunks:
        return
    rows = [
        {
            "row": row,
            "note_id": identifier,
            "ordinal": chunk.ordinal,
            "heading_path": list(chunk.heading_path),
            "text": chunk.text,
            "embed_text_hash": text_hash(chunk.embed_text),
            "token_count": chunk.token_count,
            "start_line": chunk.start_line,
            "end_line": chunk.end_line,
        }
        for row, chunk in enumerate(note.chunks)
    ]
    dimension = vectors.shape[1]
    connection.register(VECTOR_VIEW, _flat_vectors(vectors))
    try:
        connection.execute(
            f"""
            INSERT INTO chunks (note_id, ordinal, heading_path, text, embed_text_hash,
                                token_count, start_line, end_line, embedding)
            WITH chunk_rows AS (SELECT unnest(from_json(?, '{_CHUNK_ROWS}'), recursive := true)),
                 vector_rows AS (
                     SELECT row, list(value ORDER BY position)::FLOAT[{int(dimension)}] AS embedding
                     FROM {VECTOR_VIEW} GROUP BY row)
            SELECT note_id, ordinal, heading_path, text, embed_text_hash, token_count,
                   start_line, end_line, embedding
            FROM chunk_rows JOIN vector_rows USING (row)
            ORDER BY row
            """,
            [_json(rows)],
        )
    finally:
        connection.unregister(VECTOR_VIEW)


def _flat_vectors(vectors: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[Any]]:
    """Vectors as (row, position, value) columns, the shape VECTOR_VIEW is read in (one
    `list(value ORDER BY position)` per row), for chunks and subjects alike."""
    count, dimension = vectors.shape
    return {
        "row": np.repeat(np.arange(count, dtype=np.int32), dimension),
        "position": np.tile(np.arange(dimension, dtype=np.int32), count),
        "value": np.ascontiguousarray(vectors, dtype=np.float32).ravel(),
    }


def _insert_subjects(
    connection: duckdb.DuckDBPyConnection,
    identifiers: Sequence[int],
    hashes: Sequence[str],
    vectors: npt.NDArray[np.float32],
) -> None:
    """Subject rows (note id, text hash, vector), the vectors as chunks' go in."""
    if not identifiers:
        return
    dimension = vectors.shape[1]
    rows = [
        {"row": row, "note_id": int(note_id), "text_hash": digest}
        for row, (note_id, digest) in enumerate(zip(identifiers, hashes, strict=True))
    ]
    connection.register(VECTOR_VIEW, _flat_vectors(vectors))
    try:
        connection.execute(
            f"""
            INSERT INTO note_subjects (note_id, text_hash, embedding)
            WITH subject_rows AS (
                     SELECT unnest(from_json(?, '{_SUBJECT_ROWS}'), recursive := true)),
                 vector_rows AS (
                     SELECT row, list(value ORDER BY position)::FLOAT[{int(dimension)}] AS embedding
                     FROM {VECTOR_VIEW} GROUP BY row)
            SELECT note_id, text_hash, embedding
            FROM subject_rows JOIN vector_rows USING (row)
            ORDER BY row
            """,
            [_json(rows)],
        )
    finally:
        connection.unregister(VECTOR_VIEW)


def write_subjects(
    connection: duckdb.DuckDBPyConnection,
    identifiers: Sequence[int],
    hashes: Sequence[str],
    vectors: npt.NDArray[np.float32],
    changes: Changes,
) -> int:
    """Subject vectors of notes that have none yet (after the migration, or a rename that
    changed the title); a note gone or given one meanwhile is skipped. How many written."""
    wanted = connection.execute(
        "SELECT id FROM notes WHERE id IN (SELECT unnest(from_json(?, '[\"BIGINT\"]'))) "
        "AND id NOT IN (SELECT note_id FROM note_subjects)",
        [_json([int(note_id) for note_id in identifiers])],
    ).fetchall()
    keep = {int(row[0]) for row in wanted}
    rows = [row for row, note_id in enumerate(identifiers) if int(note_id) in keep]
    _insert_subjects(
        connection,
        [identifiers[row] for row in rows],
        [hashes[row] for row in rows],
        vectors[rows],
    )
    changes.notes.update(int(identifiers[row]) for row in rows)
    return len(rows)


def _insert_tags(
    connection: duckdb.DuckDBPyConnection, identifier: int, tags: Sequence[str]
) -> None:
    if not tags:
        return
    rows = [{"note_id": identifier, "tag": tag} for tag in sorted(set(tags))]
    connection.execute(
        f"INSERT INTO tags SELECT note_id, tag "
        f"FROM (SELECT unnest(from_json(?, '{_TAG_ROWS}'), recursive := true))",
        [_json(rows)],
    )


def _insert_links(
    connection: duckdb.DuckDBPyConnection,
    identifier: int,
    note: ParsedNote,
    previous_targets: dict[str, int],
) -> None:
    if not note.links:
        return
    rows = [
        {
            "note_id": identifier,
            "ordinal": ordinal,
            "target": link.target,
            "key": link.key,
            "kind": link.kind,
            "heading": link.heading,
            "alias": link.alias,
            "line": link.line,
            "targets_note": link.targets_note,
            "target_note_id": previous_targets.get(link.key) if link.targets_note else None,
        }
        for ordinal, link in enumerate(note.links)
    ]
    connection.execute(
        f"""
        INSERT INTO links (note_id, ordinal, target, key, kind, heading, alias, line,
                           targets_note, target_note_id)
        SELECT note_id, ordinal, target, key, kind, heading, alias, line, targets_note,
               target_note_id
        FROM (SELECT unnest(from_json(?, '{_LINK_ROWS}'), recursive := true))
        """,
        [_json(rows)],
    )


def delete_contents(connection: duckdb.DuckDBPyConnection, identifier: int) -> None:
    """A note's chunks, subject, tags and outgoing links (not the note row, not links to it)."""
    for table in ("chunks", "note_subjects", "tags", "links"):
        connection.execute(f"DELETE FROM {table} WHERE note_id = ?", [identifier])


def delete_notes(
    connection: duckdb.DuckDBPyConnection, vault: str, paths: Sequence[str], changes: Changes
) -> int:
    """Delete these notes with everything they own; links to them become unresolved."""
    rows = connection.execute(
        "SELECT id, path, aliases FROM notes WHERE vault = ? AND path IN "
        "(SELECT unnest(from_json(?, '[\"VARCHAR\"]')))",
        [vault, _json(list(paths))],
    ).fetchall()
    identifiers = [int(row[0]) for row in rows]
    for _, path, aliases in rows:
        changes.links.names |= name_tails(str(path), aliases or ())
        changes.links.paths.add(str(path))
    if not identifiers:
        return 0
    ids = _json(identifiers)
    changes.terms |= bm25.remove_notes(connection, identifiers)
    changes.notes.update(identifiers)
    for table in ("chunks", "note_subjects", "tags", "links"):
        connection.execute(
            f"DELETE FROM {table} WHERE note_id IN (SELECT unnest(from_json(?, '[\"BIGINT\"]')))",
            [ids],
        )
    connection.execute(
        "UPDATE links SET target_note_id = NULL "
        "WHERE target_note_id IN (SELECT unnest(from_json(?, '[\"BIGINT\"]')))",
        [ids],
    )
    connection.execute(
        "DELETE FROM notes WHERE id IN (SELECT unnest(from_json(?, '[\"BIGINT\"]')))", [ids]
    )
    return len(identifiers)


def touch_note(
    connection: duckdb.DuckDBPyConnection,
    vault: str,
    path: str,
    size: int,
    mtime_ns: int,
    changes: Changes,
) -> bool:
    row = first_row(
        connection.execute(
            "UPDATE notes SET size = ?, mtime_ns = ? WHERE vault = ? AND path = ? RETURNING id",
            [size, mtime_ns, vault, path],
        )
    )
    if row is None:
        return False
    changes.notes.add(int(row[0]))  # search results show the new `modified`
    return True


def rename_note(
    connection: duckdb.DuckDBPyConnection,
    vault: str,
    old_path: str,
    new_path: str,
    size: int,
    mtime_ns: int,
    changes: Changes,
) -> bool:
    """Move a note to a new path, keeping its id and vectors (and its chunks, unless its
    title changes: BM25 indexes the title with every chunk, and a chunk id's indexed
    text never changes, which lets search snapshots keep postings of chunks gone)."""
    row = first_row(
        connection.execute(
            "SELECT id, frontmatter, aliases FROM notes WHERE vault = ? AND path = ?",
            [vault, old_path],
        )
    )
    if row is None:
        return False
    identifier, frontmatter = int(row[0]), json.loads(row[1])
    # Both names, and the aliases (ties among their notes go by path); its own links
    # too, since which note a key means depends on the linking note's folder.
    changes.links.names |= name_tails(old_path, row[2] or ()) | name_tails(new_path, ())
    changes.links.sources.add(identifier)
    changes.links.paths |= {old_path, new_path}
    # Whatever was indexed at the new path is replaced by the moved note.
    delete_notes(connection, vault, [new_path], changes)
    title = title_for(new_path, frontmatter)
    changed_title = first_row(
        connection.execute("SELECT title <> ? FROM notes WHERE id = ?", [title, identifier])
    )
    retitled = changed_title is not None and bool(changed_title[0])
    if retitled:
        changes.terms |= bm25.remove_notes(connection, [identifier])
        _renumber_chunks(connection, identifier)
        # Its subject text changed with the title: the indexer encodes it again.
        connection.execute("DELETE FROM note_subjects WHERE note_id = ?", [identifier])
    connection.execute(
        "UPDATE notes SET path = ?, title = ?, size = ?, mtime_ns = ? WHERE id = ?",
        [new_path, title, size, mtime_ns, identifier],
    )
    if retitled:
        bm25.add_notes(connection, [identifier])
    changes.notes.add(identifier)
    return True


def _renumber_chunks(connection: duckdb.DuckDBPyConnection, identifier: int) -> None:
    """The note's chunks again under new ids, vectors and all (no encoding)."""
    rows = connection.execute(
        "SELECT id FROM chunks WHERE note_id = ? ORDER BY id", [identifier]
    ).fetchall()
    if not rows:
        return
    connection.execute(
        """
        INSERT INTO chunks (note_id, ordinal, heading_path, text, embed_text_hash, token_count,
                            start_line, end_line, embedding)
        SELECT note_id, ordinal, heading_path, text, embed_text_hash, token_count,
               start_line, end_line, embedding
        FROM chunks WHERE note_id = ? ORDER BY id
        """,
        [identifier],
    )
    connection.execute(
        "DELETE FROM chunks WHERE note_id = ? AND id <= ?", [identifier, int(rows[-1][0])]
    )


def name_tails(path: str | None, aliases: Sequence[str]) -> set[str]:
    """The last segment of the link keys a note's path and aliases answer to (`LinkWork`)."""
    keys = [link_key(alias) for alias in aliases]
    if path is not None:
        keys.append(link_key(path))
    return {key.rsplit("/", 1)[-1] for key in keys if key}


def title_for(path: str, frontmatter: dict[str, Any]) -> str:
    """The parser's rule: a frontmatter title, else the file name without `.md`."""
    title = frontmatter.get("title")
    if isinstance(title, str) and title.strip():
        return title.strip()
    name = posixpath.basename(path)
    return (name[:-3] if name.lower().endswith(".md") else name).strip()
