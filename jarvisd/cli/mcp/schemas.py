"""The JSON Schemas of the tools' `structuredContent` (their `outputSchema`).

They state the fields a model or a client can rely on and leave the rest open
(`additionalProperties` stays allowed): the daemon's replies may grow a field
without breaking a client that validates, as the SDK's own client does.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
MAYBE_STRING: Schema = {"type": ["string", "null"]}
MAYBE_INTEGER: Schema = {"type": ["integer", "null"]}


def shape(properties: dict[str, Schema], *required: str) -> Schema:
    """An object with these properties, of which `required` must be present."""
    return {"type": "object", "properties": properties, "required": list(required)}


def listing(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def per_vault(report: Schema) -> Schema:
    """One vault's report, or, asked of no vault with several configured, one per vault."""
    return {"type": "object", "oneOf": [report, shape({"vaults": listing(report)}, "vaults")]}


NOTE_REFERENCE = shape({"path": STRING, "title": STRING}, "path", "title")

SEARCH_RESULT = shape(
    {
        "vault": STRING,
        "path": STRING,
        "title": STRING,
        "score": NUMBER,
        "scores": {"type": "object", "additionalProperties": NUMBER},
        "modes": listing(STRING),
        "snippet": STRING,
        "heading_path": listing(STRING),
        "lines": listing(INTEGER),
        "tags": listing(STRING),
        "modified": STRING,
    },
    "vault",
    "path",
    "title",
    "score",
    "modes",
    "snippet",
)

SEARCH = shape(
    {
        "query": STRING,
        "mode": {"enum": ["hybrid", "semantic", "keyword"]},
        "total": INTEGER,
        "offset": INTEGER,
        "next_offset": MAYBE_INTEGER,
        "degraded": BOOLEAN,
        "degraded_reason": STRING,
        # While the first index run works: its notes done and to do; null after it.
        "indexing": {
            "type": ["object", "null"],
            "properties": {"done": INTEGER, "total": INTEGER, "phase": STRING},
        },
        "results": listing(SEARCH_RESULT),
    },
    "query",
    "mode",
    "total",
    "next_offset",
    "degraded",
    "results",
)

READ_NOTE = shape(
    {
        "vault": STRING,
        "path": STRING,
        "title": STRING,
        "tags": listing(STRING),
        "aliases": listing(STRING),
        "frontmatter": {"type": "object"},
        "headings": listing(shape({"level": INTEGER, "text": STRING, "line": INTEGER})),
        "links": listing({"type": "object"}),
        "backlinks": listing({"type": "object"}),
        "lines": shape(
            {"start": INTEGER, "end": INTEGER, "total": INTEGER}, "start", "end", "total"
        ),
        "next_start_line": MAYBE_INTEGER,
        "content": MAYBE_STRING,
        "content_error": MAYBE_STRING,
    },
    "vault",
    "path",
    "title",
    "lines",
    "next_start_line",
    "content",
)

LINK = shape(
    {"target": STRING, "target_path": MAYBE_STRING, "line": INTEGER, "kind": STRING},
    "target",
    "target_path",
)
BACKLINK = shape({"source": STRING, "line": INTEGER, "kind": STRING}, "source")
NOTE_LINKS = shape(
    {
        "vault": STRING,
        "note": NOTE_REFERENCE,
        "links": listing(LINK),
        "backlinks": listing(BACKLINK),
    },
    "vault",
    "note",
    "links",
    "backlinks",
)

NEIGHBOUR = shape(
    {"path": STRING, "title": STRING, "distance": INTEGER, "via": MAYBE_STRING},
    "path",
    "title",
    "distance",
)
NEIGHBOURS = shape(
    {
        "vault": STRING,
        "note": NOTE_REFERENCE,
        "depth": INTEGER,
        "direction": STRING,
        "total": INTEGER,
        "truncated": BOOLEAN,
        "neighbours": listing(NEIGHBOUR),
    },
    "vault",
    "note",
    "total",
    "neighbours",
)

PATH = shape(
    {
        "vault": STRING,
        "from": NOTE_REFERENCE,
        "to": NOTE_REFERENCE,
        "found": BOOLEAN,
        "length": MAYBE_INTEGER,
        "notes": listing(NOTE_REFERENCE),
    },
    "vault",
    "from",
    "to",
    "found",
    "notes",
)

UNRESOLVED_REPORT = shape(
    {
        "vault": STRING,
        "count": INTEGER,
        "links": INTEGER,
        "truncated": BOOLEAN,
        "targets": listing(
            shape({"target": STRING, "count": INTEGER, "sources": listing(STRING)}, "target")
        ),
    },
    "vault",
    "count",
    "truncated",
    "targets",
)

ORPHANS_REPORT = shape(
    {"vault": STRING, "count": INTEGER, "truncated": BOOLEAN, "notes": listing(NOTE_REFERENCE)},
    "vault",
    "count",
    "truncated",
    "notes",
)

UNRESOLVED = per_vault(UNRESOLVED_REPORT)
ORPHANS = per_vault(ORPHANS_REPORT)

VAULT_STATUS = shape(
    {
        "state": STRING,
        "version": STRING,
        "vaults": listing(
            shape({"name": STRING, "path": STRING, "notes": MAYBE_INTEGER}, "name", "notes")
        ),
        "index": {"type": ["object", "null"]},
        "last_index_run": {"type": ["object", "null"]},
        "indexing": {"type": ["object", "null"]},
        "memory_mode": STRING,
        "embedding": {"type": "object"},
        "degraded": BOOLEAN,
        "degraded_reasons": listing(STRING),
        "capabilities": listing(STRING),
    },
    "state",
    "vaults",
    "memory_mode",
    "degraded",
    "degraded_reasons",
)

ASK = shape(
    {
        "question": STRING,
        "answer": STRING,
        "path": {"enum": ["template", "llm", "extractive"]},
        "reason": MAYBE_STRING,
        "citations": listing(
            shape(
                {
                    "number": INTEGER,
                    "vault": STRING,
                    "path": STRING,
                    "title": STRING,
                    "heading": MAYBE_STRING,
                    "lines": {"type": ["array", "null"], "items": INTEGER},
                },
                "number",
                "vault",
                "path",
            )
        ),
        "sentences": listing(
            shape(
                {"text": STRING, "citations": listing(INTEGER), "unsupported": BOOLEAN},
                "text",
                "unsupported",
            )
        ),
    },
    "answer",
    "path",
    "citations",
    "sentences",
)
