"""The built-in actions a template calls, and the answer each one writes.

Every action reads what the daemon already holds (the search snapshot's
notes, the indexer's counts, the graph's backlinks, a hybrid search); none
runs a model. Notes an answer lists are its citations, in the order listed.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jarvisd.ask.replies import Citation
from jarvisd.ask.sources import AskSources
from jarvisd.ask.templates import Intent
from jarvisd.graph.results import GraphError
from jarvisd.notes.service import NoteError
from jarvisd.search.snapshot import NoteInfo

LISTED = 10  # notes an answer lists at most
NANOSECONDS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Listed:
    vault: str
    path: str
    title: str
    detail: str = ""  # e.g. when it was modified, or which heading matched
    heading: str | None = None
    lines: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class TemplateAnswer:
    answer: str
    citations: tuple[Citation, ...]
    note: str | None = None  # what the action could not do (the slot named no note, ...)


async def run_action(intent: Intent, slots: dict[str, str], sources: AskSources) -> TemplateAnswer:
    fields, listed, note = await _gather(intent.action, slots, sources)
    head = string.Formatter().vformat(intent.response, (), fields)
    lines = [head]
    citations: list[Citation] = []
    for number, item in enumerate(listed[:LISTED], start=1):
        detail = f" ({item.detail})" if item.detail else ""
        lines.append(f"- {item.title}{detail} [{number}]")
        citations.append(
            Citation(number, item.vault, item.path, item.title, item.heading, item.lines)
        )
    if len(listed) > LISTED:
        lines.append(f"- … and {len(listed) - LISTED} more")
    return TemplateAnswer("\n".join(lines), tuple(citations), note)


async def _gather(
    action: str, slots: dict[str, str], sources: AskSources
) -> tuple[dict[str, Any], list[Listed], str | None]:
    if action in ("note_count", "index_status"):
        return await _counts(action, sources), [], None
    if action == "recent_notes":
        notes = sorted(await sources.notes(), key=lambda note: -note.mtime_ns)[:5]
        return {"count": len(notes)}, [_modified(note) for note in notes], None
    if action == "notes_tagged":
        tag = slots["tag"].lstrip("#").lower()
        tagged = [note for note in await sources.notes() if _has_tag(note, tag)]
        tagged.sort(key=lambda note: note.title.lower())
        return {"tag": tag, "count": len(tagged)}, [_modified(note) for note in tagged], None
    if action == "backlinks":
        return await _backlinks(slots["note"], sources)
    query = slots["query"]
    passages = await sources.passages(query, 5)
    listed = [
        Listed(p.vault, p.path, p.title, " > ".join(p.heading_path), None, p.lines)
        for p in passages
    ]
    return {"query": query, "count": len(listed)}, listed, None


async def _counts(action: str, sources: AskSources) -> dict[str, Any]:
    facts = sources.index_facts()
    notes = await sources.notes()
    vaults = sorted({note.vault for note in notes})
    when = "never" if facts.last_run_at is None else _when(facts.last_run_at)
    return {
        "count": len(notes),
        "notes": facts.notes,
        "chunks": facts.chunks,
        "links": facts.links,
        "vaults": (", ".join(vaults) or "no vault") + (" vault" if len(vaults) == 1 else ""),
        "last_run": when,
        "state": "indexing now" if facts.indexing else "not indexing now",
    }


async def _backlinks(
    reference: str, sources: AskSources
) -> tuple[dict[str, Any], list[Listed], str | None]:
    try:
        links = await sources.backlinks(reference)
    except (GraphError, NoteError) as error:
        return {"note": reference, "count": 0}, [], str(error)
    names = {note.path: note.title for note in await sources.notes() if note.vault == links.vault}
    linking: dict[str, Listed] = {}
    for link in links.links:
        title = names.get(link.source) or link.source.rsplit("/", 1)[-1].removesuffix(".md")
        linking.setdefault(link.source, Listed(links.vault, link.source, title))
    return {"note": links.note.title, "count": len(linking)}, list(linking.values()), None


def _has_tag(note: NoteInfo, tag: str) -> bool:
    return any(own == tag or own.startswith(tag + "/") for own in note.tags)


def _modified(note: NoteInfo) -> Listed:
    return Listed(note.vault, note.path, note.title, f"modified {_when(note.mtime_ns / 1e9)}")


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M")
