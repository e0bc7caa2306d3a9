"""The readable half of each tool result: short Markdown a model (or a person) reads at a glance.

The structured half is the daemon's reply itself; this text says the same in
fewer tokens, names notes by the path the other tools take, and ends with the
next call to make when there is more (another page, the next lines).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jarvisd.indexing.progress import Progress

ARROWS = {"out": "→", "in": "←", "both": "—"}


def when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def bold_spans(text: str, spans: list[list[int]]) -> str:
    """`text` with each [start, end) span in **bold** (the query's words in a snippet)."""
    out, position = [], 0
    for start, end in sorted(spans):
        if start < position or end > len(text):
            continue
        out.append(text[position:start])
        out.append(f"**{text[start:end]}**")
        position = end
    out.append(text[position:])
    return "".join(out)


def count(number: int, word: str) -> str:
    """`1 note`, `2 notes`: English plurals of the words used here (all take an s)."""
    return f"{number} {word}" if number == 1 else f"{number} {word}s"


def note_label(note: dict[str, Any]) -> str:
    return f"{note.get('title') or note['path']} ({note['path']})"


# ------------------------------------------------------------------- search


def search(reply: dict[str, Any]) -> str:
    text = _search(reply)
    if reply.get("indexing"):
        first_run = Progress.from_brief(reply["indexing"])
        text += (
            f"\n\nThe first index run is still in progress ({first_run.done} of "
            f"{first_run.total} notes indexed): notes it has not reached are missing "
            "from these results. Search again once it is done."
        )
    return text


def _search(reply: dict[str, Any]) -> str:
    results = reply["results"]
    if not results:
        return f"No notes match {reply['query']!r} ({reply['mode']} search)."
    first = reply.get("offset", 0) + 1
    lines = [
        f"Notes {first}-{first + len(results) - 1} of {reply['total']} for {reply['query']!r} "
        f"({reply['mode']} search, best first):",
        "",
    ]
    for number, result in enumerate(results, start=first):
        span = result.get("lines") or []
        where = f", lines {span[0]}-{span[1]}" if len(span) == 2 else ""
        lines.append(
            f"{number}. {result['title']}: {result['path']}{where} "
            f"(vault {result['vault']}, score {result['score']:.3f}, "
            f"{' + '.join(result.get('modes') or [])})"
        )
        if result.get("heading_path"):
            lines.append(f"   under: {' > '.join(result['heading_path'])}")
        if result.get("snippet"):
            lines.append(f"   {bold_spans(result['snippet'], result.get('highlights') or [])}")
    if reply.get("next_offset") is not None:
        lines += ["", f"More results: call search again with offset={reply['next_offset']}."]
    lines += ["", "Read a note with read_note (its path, and start_line to jump to the lines)."]
    return "\n".join(lines)


def degraded(reply: dict[str, Any]) -> str:
    return (
        f"Degraded answer: {reply.get('degraded_reason') or 'semantic search is unavailable'}. "
        "These results come from keyword search alone, so notes that match the meaning "
        "but not the words are missing. What to do: use them as keyword results (or call "
        "again with mode=keyword), and tell the user that jarvisd is short of memory; it "
        "returns to full search by itself when memory is available again.\n\n" + search(reply)
    )


# -------------------------------------------------------------------- notes


def note_page(page: dict[str, Any]) -> str:
    lines = [f"# {page['title']}", f"path: {page['path']} (vault {page['vault']})"]
    match = page.get("match") or {}
    if match.get("message"):
        lines.append(f"note: {match['message']}")
    for key in ("tags", "aliases"):
        if page.get(key):
            lines.append(f"{key}: {', '.join(page[key])}")
    outgoing = [_link_out(link) for link in page.get("links", []) if link.get("targets_note")]
    if outgoing:
        lines.append(f"links out: {'; '.join(outgoing)}")
    incoming = [f"{link['source_path']} (line {link['line']})" for link in page["backlinks"]]
    if incoming:
        lines.append(f"backlinks: {'; '.join(incoming)}")
    if page.get("content_error"):
        lines.append(f"content: unavailable, {page['content_error']}")
        return "\n".join(lines)
    span = page["lines"]
    lines += ["", f"Lines {span['start']}-{span['end']} of {span['total']}:", ""]
    lines.append(page["content"] or "")
    if page.get("next_start_line") is not None:
        lines += ["", f"More: call read_note again with start_line={page['next_start_line']}."]
    return "\n".join(lines)


def _link_out(link: dict[str, Any]) -> str:
    written = link["target"] + (f"#{link['heading']}" if link.get("heading") else "")
    return f"[[{written}]] → {link.get('resolved_path') or 'unresolved'}"


def note_links(reply: dict[str, Any]) -> str:
    lines = [f"Links of {note_label(reply['note'])} in vault {reply['vault']}:"]
    outgoing = reply["links"]
    lines.append(f"links out ({len(outgoing)}):" if outgoing else "links out: none")
    for link in outgoing:
        target = link.get("target_path") or "unresolved: no note has that name"
        lines.append(f"- line {link['line']}: [[{link['target']}]] → {target}")
    incoming = reply["backlinks"]
    lines.append(f"backlinks ({len(incoming)}):" if incoming else "backlinks: none")
    lines += [f"- {link['source']} (line {link['line']})" for link in incoming]
    return "\n".join(lines)


# -------------------------------------------------------------------- graph


def neighbours(reply: dict[str, Any]) -> str:
    following = {"out": "links", "in": "backlinks", "both": "links and backlinks"}
    direction = following.get(reply["direction"], reply["direction"])
    lines = [
        f"{count(reply['total'], 'note')} within {count(reply['depth'], 'step')} of "
        f"{note_label(reply['note'])}, following {direction}:"
    ]
    for item in reply["neighbours"]:
        via = f", via {item['via']}" if item.get("via") and item["distance"] > 1 else ""
        lines.append(f"{'  ' * (item['distance'] - 1)}- {note_label(item)}{via}")
    if reply.get("truncated"):
        lines.append(f"(first {len(reply['neighbours'])} shown; raise limit for more)")
    return "\n".join(lines)


def path(reply: dict[str, Any]) -> str:
    source, target = note_label(reply["from"]), note_label(reply["to"])
    if not reply["found"]:
        return (
            f"No path from {source} to {target} following {reply['direction']} links: "
            "they are not connected that way."
        )
    arrow = f" {ARROWS.get(reply['direction'], '→')} "
    chain = arrow.join(note_label(note) for note in reply["notes"])
    return f"{count(reply['length'], 'step')}: {chain}"


def unresolved(reply: dict[str, Any]) -> str:
    if not reply["targets"]:
        return f"Every link in vault {reply['vault']} resolves to a note."
    lines = [
        f"{count(reply['count'], 'name')} in vault {reply['vault']} "
        f"({count(reply['links'], 'link')}) point at no note, most linked first:"
    ]
    for item in reply["targets"]:
        lines.append(f"- [[{item['target']}]] x{item['count']}, in {', '.join(item['sources'])}")
    if reply["truncated"]:
        lines.append(f"(first {len(reply['targets'])} shown; raise limit for more)")
    return "\n".join(lines)


def orphans(reply: dict[str, Any]) -> str:
    if not reply["notes"]:
        return f"No orphans: every note in vault {reply['vault']} links or is linked."
    lines = [f"{count(reply['count'], 'note')} in vault {reply['vault']} without links in or out:"]
    lines += [f"- {note_label(note)}" for note in reply["notes"]]
    if reply["truncated"]:
        lines.append(f"(first {len(reply['notes'])} shown; raise limit for more)")
    return "\n".join(lines)


# ------------------------------------------------------------------- status


def vault_status(report: dict[str, Any]) -> str:
    health = (
        "degraded: " + "; ".join(report["degraded_reasons"])
        if report["degraded"]
        else "not degraded"
    )
    lines = [
        f"jarvisd {report.get('version')}: {report['state']}, memory mode "
        f"{report['memory_mode']}, {health}.",
        "vaults: "
        + (
            "; ".join(
                f"{vault['name']} ({vault.get('path')}, {vault['notes']} notes)"
                for vault in report["vaults"]
            )
            or "none configured"
        ),
    ]
    index = report.get("index") or {}
    if index:
        lines.append(
            f"index: {index.get('notes')} notes, {index.get('chunks')} chunks, "
            f"{index.get('links')} links ({index.get('unresolved_links')} unresolved), "
            f"{index.get('tags')} tags"
        )
    run = report.get("last_index_run")
    if run:
        lines.append(
            f"last index run: {run.get('state')} at {when(run.get('finished_at'))}, "
            f"{run.get('files_seen')} files seen, {run.get('files_changed')} changed, "
            f"{run.get('files_skipped')} skipped, {run.get('duration_seconds')} s"
        )
    if report.get("indexing"):
        lines.append(f"indexing now: {report['indexing'].get('phase')}")
    embedding = report.get("embedding") or {}
    lines.append(f"embedding model: {embedding.get('state')} ({embedding.get('model')})")
    if report.get("alerts_firing"):
        lines.append(f"alerts firing: {', '.join(report['alerts_firing'])}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- ask


def answer(reply: dict[str, Any]) -> str:
    """The checked answer, the notes it cites, and the sentences no passage supports."""
    lines = [reply["answer"] or "(no answer)", ""]
    how = {"template": "a template", "llm": "the local LLM", "extractive": "sentences of the notes"}
    lines.append(f"Answered by {how.get(reply['path'], reply['path'])}.")
    if reply.get("reason"):
        lines.append(f"Why: {reply['reason']}")
    unsupported = [
        sentence["text"] for sentence in reply.get("sentences", ()) if sentence["unsupported"]
    ]
    if unsupported:
        lines.append(
            f"{count(len(unsupported), 'sentence')} no passage of the notes supports "
            "(treat as unverified): " + " | ".join(unsupported)
        )
    if reply.get("citations"):
        lines += ["", "Sources (checked by jarvisd, not by the model):"]
        for citation in reply["citations"]:
            where = (
                f", lines {citation['lines'][0]}-{citation['lines'][1]}"
                if citation["lines"]
                else ""
            )
            heading = f" > {citation['heading']}" if citation.get("heading") else ""
            lines.append(
                f"[{citation['number']}] {citation['title']}{heading} "
                f"({citation['vault']}: {citation['path']}{where})"
            )
    return "\n".join(lines)
