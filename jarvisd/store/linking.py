"""Link resolution in bulk: the keys to resolve out, the resolved targets back in.

Resolution itself is Python (`jarvisd.indexing.links.LinkResolver`, Obsidian's rules).
Which note a key means can depend on the linking note's folder, so keys are
resolved per (linking note, key) pair. The answers go back as one scanned
JSON document and one UPDATE ... FROM, never row by row: 100,000 links take a
fraction of a second.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import duckdb

from jarvisd.indexing.links import LinkResolver
from jarvisd.store.connection import first_row
from jarvisd.store.records import LinkKey, LinkWork

_TARGET_ROWS = '[{"source": "VARCHAR", "key": "VARCHAR", "target": "VARCHAR"}]'


def note_paths_and_aliases(
    connection: duckdb.DuckDBPyConnection, vault: str
) -> list[tuple[str, tuple[str, ...]]]:
    """(path, aliases) of every note in the vault: what `LinkResolver.from_notes` takes."""
    rows = connection.execute(
        "SELECT path, aliases FROM notes WHERE vault = ? ORDER BY path", [vault]
    ).fetchall()
    return [(str(path), tuple(aliases or ())) for path, aliases in rows]


def link_keys(connection: duckdb.DuckDBPyConnection, vault: str) -> list[LinkKey]:
    """Distinct (linking note, key) pairs of the vault's links that point at notes."""
    rows = connection.execute(
        "SELECT DISTINCT n.path, l.key FROM links l JOIN notes n ON n.id = l.note_id "
        "WHERE n.vault = ? AND l.targets_note ORDER BY n.path, l.key",
        [vault],
    ).fetchall()
    return [LinkKey(str(path), str(key)) for path, key in rows]


def set_link_targets(
    connection: duckdb.DuckDBPyConnection,
    vault: str,
    mapping: Mapping[LinkKey, str | None],
) -> int:
    """Point each (linking note, key) at a note path, or at nothing; returns links changed.

    Pairs not in `mapping` keep their current target. A target path that is
    not a note of the vault leaves the link unresolved.
    """
    if not mapping:
        return 0
    rows = [
        {"source": pair.source_path, "key": pair.key, "target": target}
        for pair, target in mapping.items()
    ]
    row = first_row(
        connection.execute(
            f"""
        UPDATE links SET target_note_id = resolved.target_id
        FROM (
            SELECT source_note.id AS source_id, wanted.key AS key, target_note.id AS target_id
            FROM (SELECT unnest(from_json($rows, '{_TARGET_ROWS}'), recursive := true)) wanted
            JOIN notes source_note
              ON source_note.vault = $vault AND source_note.path = wanted.source
            LEFT JOIN notes target_note
              ON target_note.vault = $vault AND target_note.path = wanted.target
        ) resolved
        WHERE links.note_id = resolved.source_id AND links.key = resolved.key
          AND links.targets_note
          AND links.target_note_id IS DISTINCT FROM resolved.target_id
        """,
            {"vault": vault, "rows": json.dumps(rows, ensure_ascii=False)},
        )
    )
    return 0 if row is None else int(row[0])


def vault_resolver(connection: duckdb.DuckDBPyConnection, vault: str) -> LinkResolver:
    """A resolver over every note of the vault."""
    return LinkResolver.from_notes(note_paths_and_aliases(connection, vault))


def resolve_vault_links(
    connection: duckdb.DuckDBPyConnection, vault: str
) -> tuple[int, LinkResolver]:
    """Resolve every note link of the vault afresh: links whose target changed, and the
    resolver built from every note (for `resolve_links_of` to keep up to date)."""
    resolver = vault_resolver(connection, vault)
    mapping = {
        pair: resolver.resolve(pair.key, pair.source_path) for pair in link_keys(connection, vault)
    }
    return set_link_targets(connection, vault, mapping), resolver


def update_resolver(
    connection: duckdb.DuckDBPyConnection, vault: str, resolver: LinkResolver, paths: set[str]
) -> None:
    """Bring `resolver` up to date with the notes now at `paths` (`LinkWork.paths`)."""
    if not paths:
        return
    rows = connection.execute(
        "SELECT path, aliases FROM notes WHERE vault = ? AND path IN "
        "(SELECT unnest(from_json(?, '[\"VARCHAR\"]')))",
        [vault, json.dumps(sorted(paths), ensure_ascii=False)],
    ).fetchall()
    now = {str(path): tuple(aliases or ()) for path, aliases in rows}
    for path in sorted(paths):
        resolver.update(path, now.get(path))


def resolve_links_of(
    connection: duckdb.DuckDBPyConnection, vault: str, work: LinkWork, resolver: LinkResolver
) -> int:
    """Resolve only the links `work` names (see `LinkWork`); returns links whose target changed.

    `resolver` is the one kept alive since the last resolution: `work.paths`
    brings it up to date (a query for the few notes that came, went or changed
    aliases, not one for every note). The links it resolves are those of the
    rewritten notes and those whose key ends in a name that came or went."""
    update_resolver(connection, vault, resolver, work.paths)
    if not work.sources and not work.names:
        return 0
    parameters = {"vault": vault, "sources": json.dumps(sorted(work.sources))}
    # Without names (an edit that adds, removes and renames no note nor alias, the usual
    # one) no link's key is cut with a regex: that is one per link of the vault.
    named = ""
    if work.names:
        named = """OR regexp_extract(l.key, '[^/]*$')
                   IN (SELECT unnest(from_json($names, '["VARCHAR"]')))"""
        parameters["names"] = json.dumps(sorted(work.names), ensure_ascii=False)
    rows = connection.execute(
        f"""
        SELECT DISTINCT n.path, l.key FROM links l JOIN notes n ON n.id = l.note_id
        WHERE n.vault = $vault AND l.targets_note AND (
            l.note_id IN (SELECT unnest(from_json($sources, '["BIGINT"]'))) {named}
        )
        """,
        parameters,
    ).fetchall()
    mapping = {
        pair: resolver.resolve(pair.key, pair.source_path)
        for pair in (LinkKey(str(path), str(key)) for path, key in rows)
    }
    return set_link_targets(connection, vault, mapping)
