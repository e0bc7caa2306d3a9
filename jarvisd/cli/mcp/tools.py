"""The MCP tools: each an argument model (its JSON Schema), a description, and one daemon call.

Bounds stay the daemon's: a limit, a query length, a depth or a path that
leaves the vault is refused by jarvisd with a 400 that names the bound and its
config key, and that text reaches the model as the tool error. The argument
models only fix types and the closed vocabularies (modes, directions), so a
bound changed in jarvis.yaml needs no change here.

A tool that needs more than the core daemon names the capability it needs in
`requires`; it is listed (and callable) only while `/v1/status` lists that
capability. `ask` (issue #14) joins as one more `Tool` with `requires="ask"`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jarvisd.cli.mcp import schemas, text
from jarvisd.cli.mcp.bridge import DaemonBridge, DaemonFailure
from jarvisd.cli.mcp.pages import ArgumentProblem, page_of

Direction = Literal["out", "in", "both"]
# Reports the daemon sends whole (unresolved links, orphans) are cut to this many
# items for a model's context; `limit` asks for more, up to REPORT_MAX.
REPORT_LIMIT = 100
REPORT_MAX = 1000
VAULT_HELP = "Vault name (vault_status lists them). Leave it out for the first configured vault."
NOTE_HELP = (
    "The note: its vault-relative path as search results give it (e.g. "
    "'Coffee/Espresso.md', '.md' optional), or its title or an alias."
)


@dataclass(frozen=True, slots=True)
class Answer:
    """A tool's result: text for the model, the structure behind it, and whether it failed."""

    text: str
    structured: dict[str, Any]
    error: bool = False


class Arguments(BaseModel):
    # An argument the tool does not take is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid")


Run = Callable[[DaemonBridge, Any], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    title: str
    description: str
    arguments: type[Arguments]
    output_schema: dict[str, Any]
    run: Run
    requires: str | None = None  # a daemon capability, for tools beyond the core

    def input_schema(self) -> dict[str, Any]:
        return self.arguments.model_json_schema(by_alias=True)


# ------------------------------------------------------------------- search


class SearchArguments(Arguments):
    query: str = Field(
        description="What to look for: a question, a phrase or keywords. Plain text, "
        "never a query language."
    )
    mode: Literal["hybrid", "semantic", "keyword"] = Field(
        "hybrid",
        description="hybrid (default, best in general): meaning and words together. "
        "semantic: by meaning, for paraphrases and questions. keyword: BM25 on the exact "
        "words, for names, codes and rare terms.",
    )
    limit: int | None = Field(
        None, description="Results per page (default and maximum: the daemon's search settings)."
    )
    offset: int | None = Field(
        None, description="Skip this many results: pass next_offset to get the next page."
    )
    tag: str | None = Field(None, description="Only notes with this tag (nested tags included).")
    folder: str | None = Field(None, description="Only notes under this vault folder.")
    vault: str | None = Field(None, description="Only notes of this vault.")
    since: str | None = Field(
        None,
        description="Only notes modified at or after this: 2024-05-01, 2024-05-01T08:30, "
        "or an age such as 90m, 12h, 7d, 2w.",
    )
    before: str | None = Field(None, description="Only notes modified before this (as since).")


async def search(daemon: DaemonBridge, arguments: SearchArguments) -> Answer:
    query = arguments.model_dump(exclude={"query"})
    reply = await daemon.get("/v1/search", q=arguments.query, **query)
    if reply.get("degraded"):
        return Answer(text.degraded(reply), reply, error=True)
    return Answer(text.search(reply), reply)


# -------------------------------------------------------------------- notes


class ReadNoteArguments(Arguments):
    note: str = Field(description=NOTE_HELP)
    vault: str | None = Field(None, description=VAULT_HELP)
    start_line: int = Field(
        1, description="First line to return (1-based; search results give a note's lines)."
    )
    end_line: int | None = Field(
        None, description="Last line to return (default: as far as one page goes)."
    )


async def read_note(daemon: DaemonBridge, arguments: ReadNoteArguments) -> Answer:
    note = await find_note(daemon, arguments.note, arguments.vault)
    try:
        page = page_of(note.get("content"), arguments.start_line, arguments.end_line)
    except ArgumentProblem as problem:
        return Answer(f"{problem} (note {note['path']})", {"error": str(problem)}, error=True)
    keep = ("vault", "path", "title", "tags", "aliases", "frontmatter", "headings", "match")
    structured: dict[str, Any] = {key: note[key] for key in keep if key in note}
    structured["links"] = note.get("links", [])
    structured["backlinks"] = note.get("backlinks", [])
    structured["lines"] = {"start": page.start, "end": page.end, "total": page.total}
    structured["next_start_line"] = page.next_start
    structured["content"] = page.text if note.get("content") is not None else None
    structured["content_error"] = note.get("content_error")
    return Answer(text.note_page(structured), structured)


async def find_note(daemon: DaemonBridge, name: str, vault: str | None) -> Any:
    """The note at a path (`/` in it, or `.md`), else by title; a path-like title too."""
    if name.lower().endswith(".md"):
        return await daemon.get("/v1/notes", vault=vault, path=name)
    if "/" in name:
        try:
            return await daemon.get("/v1/notes", vault=vault, path=name)
        except DaemonFailure as failure:
            if failure.error.get("status") != 404:
                raise  # a path that leaves the vault stays refused
    return await daemon.get("/v1/notes", vault=vault, title=name)


class NoteArguments(Arguments):
    note: str = Field(description=NOTE_HELP)
    vault: str | None = Field(None, description=VAULT_HELP)


async def note_links(daemon: DaemonBridge, arguments: NoteArguments) -> Answer:
    query = {"path": arguments.note, "vault": arguments.vault}
    outgoing = await daemon.get("/v1/graph/links", **query)
    incoming = await daemon.get("/v1/graph/backlinks", **query)
    reply = {
        "vault": outgoing["vault"],
        "note": outgoing["note"],
        "links": outgoing["links"],
        "backlinks": incoming["links"],
    }
    return Answer(text.note_links(reply), reply)


# -------------------------------------------------------------------- graph


class NeighbourArguments(Arguments):
    note: str = Field(description=NOTE_HELP)
    depth: int = Field(1, description="Link steps to follow (1 to the daemon's graph.max_depth).")
    direction: Direction = Field(
        "both",
        description="out: the notes it links to; in: the notes linking to it; both (default).",
    )
    limit: int | None = Field(None, description="Most notes to list (daemon default 500).")
    vault: str | None = Field(None, description=VAULT_HELP)


async def graph_neighbours(daemon: DaemonBridge, arguments: NeighbourArguments) -> Answer:
    query = arguments.model_dump(exclude={"note"})
    reply = await daemon.get("/v1/graph/neighbours", path=arguments.note, **query)
    return Answer(text.neighbours(reply), reply)


class PathArguments(Arguments):
    source: str = Field(alias="from", description="Where the walk starts. " + NOTE_HELP)
    target: str = Field(alias="to", description="Where it should end. " + NOTE_HELP)
    direction: Direction = Field(
        "both", description="out: follow links only; in: backlinks only; both (default)."
    )
    vault: str | None = Field(None, description=VAULT_HELP)


async def graph_path(daemon: DaemonBridge, arguments: PathArguments) -> Answer:
    query = {"from": arguments.source, "to": arguments.target, "vault": arguments.vault}
    reply = await daemon.get("/v1/graph/path", direction=arguments.direction, **query)
    return Answer(text.path(reply), reply)


class ReportArguments(Arguments):
    vault: str | None = Field(None, description=VAULT_HELP)
    limit: int = Field(
        REPORT_LIMIT, ge=1, le=REPORT_MAX, description=f"Most items to list (1-{REPORT_MAX})."
    )


async def unresolved_links(daemon: DaemonBridge, arguments: ReportArguments) -> Answer:
    reply = await daemon.get("/v1/graph/unresolved", vault=arguments.vault)
    return _per_vault(reply, "targets", arguments.limit, text.unresolved)


async def orphans(daemon: DaemonBridge, arguments: ReportArguments) -> Answer:
    reply = await daemon.get("/v1/graph/orphans", vault=arguments.vault)
    return _per_vault(reply, "notes", arguments.limit, text.orphans)


def _per_vault(
    reply: dict[str, Any],
    items: str,
    limit: int,
    render: Callable[[dict[str, Any]], str],
) -> Answer:
    """Cut a report's list to `limit`; asked of no vault with several configured, the
    daemon sends one report per vault (`vaults`), each cut and rendered in turn."""

    def cut(report: dict[str, Any]) -> dict[str, Any]:
        listed = report[items]
        return {**report, items: listed[:limit], "truncated": len(listed) > limit}

    if "vaults" in reply:
        reports = [cut(report) for report in reply["vaults"]]
        return Answer("\n\n".join(render(report) for report in reports), {"vaults": reports})
    report = cut(reply)
    return Answer(render(report), report)


# ------------------------------------------------------------------- status


class NoArguments(Arguments):
    pass


async def vault_status(daemon: DaemonBridge, arguments: NoArguments) -> Answer:
    status = await daemon.get("/v1/status")
    configured = (await daemon.get("/v1/config"))["config"].get("vaults") or []
    vaults = []
    for vault in configured:
        page = await daemon.get("/v1/notes/list", vault=vault["name"], limit=1)
        vaults.append({"name": vault["name"], "path": vault.get("path"), "notes": page["total"]})
    keep = ("state", "version", "index", "last_index_run", "indexing", "memory_mode")
    report: dict[str, Any] = {key: status.get(key) for key in keep}
    report["vaults"] = vaults
    report["embedding"] = status.get("embedding") or {}
    report["alerts_firing"] = status.get("alerts_firing") or []
    report["capabilities"] = status.get("capabilities") or []
    report["degraded_reasons"] = degraded_reasons(status)
    report["degraded"] = bool(report["degraded_reasons"])
    return Answer(text.vault_status(report), report)


def degraded_reasons(status: dict[str, Any]) -> list[str]:
    """What keeps the daemon from answering in full, in words; empty when nothing does."""
    reasons = []
    if status.get("state") not in ("running", "reloading"):
        reasons.append(f"jarvisd is {status.get('state')}, not serving in full yet")
    if str(status.get("memory_mode")).upper() == "MINIMAL":
        reasons.append(
            "memory is low (MINIMAL mode): semantic and hybrid search answer from keyword "
            "search only, and indexing waits"
        )
    model = str((status.get("embedding") or {}).get("state") or "")
    if model.startswith("failed"):
        reasons.append(f"the embedding model {model}: searches answer from keywords only")
    return reasons


# ---------------------------------------------------------------------- ask

# The daemon bounds a generation itself (llm.timeout, 120 s by default, then it answers
# extractively); the bridge waits longer than that so it reports the daemon's answer,
# not its own impatience.
ASK_TIMEOUT = 300.0


class AskArguments(Arguments):
    question: str = Field(
        description="The user's question in plain words, about what their notes say."
    )


async def ask(daemon: DaemonBridge, arguments: AskArguments) -> Answer:
    reply = await daemon.post("/v1/ask", {"question": arguments.question}, timeout=ASK_TIMEOUT)
    return Answer(text.answer(reply), reply)


# ----------------------------------------------------------------- the list

TOOLS: tuple[Tool, ...] = (
    Tool(
        "search",
        "Search the notes",
        "Search the user's notes (their Obsidian-style markdown vault) and get the best "
        "matching notes with a snippet, heading and line numbers each. Use it first "
        "whenever the user's own notes may know the answer, then read_note for the whole "
        "note.",
        SearchArguments,
        schemas.SEARCH,
        search,
    ),
    Tool(
        "read_note",
        "Read a note",
        "Read one note: its metadata (tags, aliases, headings), its links in both "
        "directions, and its text. Long notes come a page at a time; the reply says which "
        "start_line to ask for next. Use it after search, or when the user names a note.",
        ReadNoteArguments,
        schemas.READ_NOTE,
        read_note,
    ),
    Tool(
        "note_links",
        "Links of a note",
        "List a note's outgoing links (where each resolves, or that it is unresolved) and "
        "the notes linking back to it. Use it to see what a note connects to.",
        NoteArguments,
        schemas.NOTE_LINKS,
        note_links,
    ),
    Tool(
        "graph_neighbours",
        "Notes near a note",
        "The notes within a few link steps of a note, nearest first, each with how it is "
        "reached. Use it to gather related notes beyond what search finds by words.",
        NeighbourArguments,
        schemas.NEIGHBOURS,
        graph_neighbours,
    ),
    Tool(
        "graph_path",
        "Path between notes",
        "One shortest chain of links between two notes. Use it to explain how two topics "
        "in the notes connect.",
        PathArguments,
        schemas.PATH,
        graph_path,
    ),
    Tool(
        "unresolved_links",
        "Unresolved links",
        "Links that name no existing note (notes the user meant to write, or typos), most "
        "linked first, with the notes that hold them.",
        ReportArguments,
        schemas.UNRESOLVED,
        unresolved_links,
    ),
    Tool(
        "orphans",
        "Orphan notes",
        "Notes with no links in or out. Use it when the user wants to tidy or connect their notes.",
        ReportArguments,
        schemas.ORPHANS,
        orphans,
    ),
    Tool(
        "vault_status",
        "Vault status",
        "The vaults and their note counts, the index (notes, chunks, links), the last "
        "index run, the memory mode, and whether answers are degraded and why. Use it to "
        "learn the vault names or when results look wrong or stale.",
        NoArguments,
        schemas.VAULT_STATUS,
        vault_status,
    ),
    Tool(
        "ask",
        "Ask the notes",
        "A short answer to a question, written from the user's notes by jarvisd (a "
        "template, its local LLM, or the notes' own sentences), with numbered citations "
        "jarvisd checked itself and the sentences no note supports marked. Use it for a "
        "direct question; use search and read_note to gather material yourself.",
        AskArguments,
        schemas.ASK,
        ask,
        requires="ask",
    ),
)


def offered(capabilities: frozenset[str], tools: tuple[Tool, ...] = TOOLS) -> list[Tool]:
    """The tools to list: the core ones, and the others whose capability the daemon has."""
    return [tool for tool in tools if tool.requires is None or tool.requires in capabilities]


def by_name(name: str) -> Tool | None:
    return next((tool for tool in TOOLS if tool.name == name), None)
