"""The Cypher of the Neo4j backend: constants only, every value a parameter.

Plain Cypher that Neo4j 4.4 and 5 both run (pattern predicates and
comprehensions rather than 5-only subqueries); the index statements need 4.3+.
"""

from __future__ import annotations

from jarvisd.graph.results import DIRECTIONS, Direction

# The config model accepts graph.max_depth up to 10; deeper walks have no text here.
DEEPEST = 10

SCHEMA: tuple[str, ...] = (
    "CREATE INDEX jarvis_note_path IF NOT EXISTS FOR (n:Note) ON (n.vault, n.path)",
    "CREATE INDEX jarvis_unresolved_key IF NOT EXISTS FOR (u:Unresolved) ON (u.vault, u.key)",
)

NOTES = """
MATCH (n:Note {vault: $vault}) WHERE n.path IN $paths
RETURN n.path AS path, n.title AS title
"""

OUTGOING = """
MATCH (n:Note {vault: $vault, path: $path})
OPTIONAL MATCH (n)-[r:LINKS_TO|UNRESOLVED]->(t)
RETURN n.title AS title, r.target AS target, t.path AS target_path, t.title AS target_title,
       r.kind AS kind, r.line AS line, r.heading AS heading, r.alias AS alias
ORDER BY r.ordinal
"""

BACKLINKS = """
MATCH (n:Note {vault: $vault, path: $path})
OPTIONAL MATCH (s:Note)-[r:LINKS_TO]->(n)
RETURN n.title AS title, s.path AS source, r.target AS target, r.kind AS kind,
       r.line AS line, r.heading AS heading, r.alias AS alias
ORDER BY source, r.ordinal
"""

_ARROWS: dict[Direction, tuple[str, str]] = {
    "out": ("-", "->"),
    "in": ("<-", "-"),
    "both": ("-", "-"),
}


def _neighbours(direction: Direction, depth: int) -> str:
    left, right = _ARROWS[direction]
    return f"""
MATCH (n:Note {{vault: $vault, path: $path}})
OPTIONAL MATCH p = (n){left}[:LINKS_TO*1..{int(depth)}]{right}(m:Note)
WITH n, m, min(length(p)) AS distance
RETURN n.title AS title, m.path AS path, m.title AS neighbour_title, distance
"""


def _path(direction: Direction) -> str:
    left, right = _ARROWS[direction]
    return f"""
MATCH (a:Note {{vault: $vault, path: $source}}), (b:Note {{vault: $vault, path: $target}})
OPTIONAL MATCH p = shortestPath((a){left}[:LINKS_TO*..64]{right}(b))
RETURN [x IN nodes(p) | [x.path, x.title]] AS notes
"""


# Built once at import from trusted constants, never from a request.
NEIGHBOURS: dict[Direction, dict[int, str]] = {
    direction: {depth: _neighbours(direction, depth) for depth in range(1, DEEPEST + 1)}
    for direction in DIRECTIONS
}
PATHS: dict[Direction, str] = {direction: _path(direction) for direction in DIRECTIONS}

NEIGHBOUR_EDGES = """
MATCH (a:Note {vault: $vault})-[:LINKS_TO]->(b:Note)
WHERE a.path IN $paths AND b.path IN $paths
RETURN DISTINCT a.path AS source, b.path AS target
"""

UNRESOLVED = """
MATCH (s:Note {vault: $vault})-[r:UNRESOLVED]->(u:Unresolved)
WITH u, min(r.target) AS target, count(r) AS links, collect(DISTINCT s.path) AS sources
RETURN target, links, sources
"""

ORPHANS = """
MATCH (n:Note {vault: $vault})
WHERE size([(n)-[:LINKS_TO]-(m:Note) WHERE m <> n | m]) = 0
RETURN n.path AS path, n.title AS title
"""

# ------------------------------------------------------------------------ sync

FINGERPRINTS = """
MATCH (n:Note {vault: $vault})
RETURN n.path AS path, n.fingerprint AS fingerprint
"""

DELETE_OTHER_VAULTS = """
MATCH (n:Note) WHERE NOT n.vault IN $vaults
DETACH DELETE n
RETURN count(*)
"""

DELETE_NOTES = """
UNWIND $rows AS path
MATCH (n:Note {vault: $vault, path: path})
DETACH DELETE n
RETURN count(*)
"""

UPSERT_NOTES = """
UNWIND $rows AS row
MERGE (n:Note {vault: $vault, path: row.path})
SET n.title = row.title
RETURN count(n)
"""

# Links of each row's note are replaced whole; the fingerprint is set last, so a
# transaction that fails leaves the old fingerprint and the next sync retries.
REPLACE_LINKS = """
UNWIND $rows AS row
MATCH (n:Note {vault: $vault, path: row.path})
OPTIONAL MATCH (n)-[old:LINKS_TO|UNRESOLVED]->()
DELETE old
WITH DISTINCT n, row
FOREACH (link IN [item IN row.links WHERE item.target_path IS NOT NULL] |
  MERGE (t:Note {vault: $vault, path: link.target_path})
  CREATE (n)-[:LINKS_TO {ordinal: link.ordinal, target: link.target, kind: link.kind,
                         line: link.line, heading: link.heading, alias: link.alias}]->(t))
FOREACH (link IN [item IN row.links WHERE item.target_path IS NULL] |
  MERGE (u:Unresolved {vault: $vault, key: link.key})
  CREATE (n)-[:UNRESOLVED {ordinal: link.ordinal, target: link.target, kind: link.kind,
                           line: link.line, heading: link.heading, alias: link.alias}]->(u))
SET n.fingerprint = row.fingerprint
RETURN count(n)
"""

DELETE_UNUSED_UNRESOLVED = """
MATCH (u:Unresolved) WHERE NOT (u)<-[:UNRESOLVED]-()
DELETE u
RETURN count(*)
"""
