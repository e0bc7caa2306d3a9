"""jarvisctl search QUERY [--mode M] [--limit N] [--offset N] [--threshold X] [filters]."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from jarvisd.cli import render
from jarvisd.cli.client import ControlClient
from jarvisd.indexing.progress import Progress

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

MODES = ("hybrid", "semantic", "keyword")  # jarvisd.search.MODES, without importing numpy


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    search = commands.add_parser(
        "search",
        parents=[common],
        help="search the notes (hybrid by default)",
        description="Search the indexed notes. Dates take 2024-05-01, 2024-05-01T08:30, "
        "or an age: 90m, 12h, 7d, 2w.",
    )
    search.add_argument("query", nargs="+", help="what to look for")
    search.add_argument("--mode", choices=MODES, help="hybrid (default), semantic or keyword")
    search.add_argument("--limit", type=int, help="results per page (search.default_limit)")
    search.add_argument("--offset", type=int, help="skip this many results (paging)")
    search.add_argument(
        "--threshold",
        type=float,
        help="lowest cosine for semantic hits (search.similarity_threshold)",
    )
    search.add_argument("--tag", help="only notes with this tag (nested tags included)")
    search.add_argument("--folder", help="only notes under this vault folder")
    search.add_argument("--vault", help="only notes of this vault")
    search.add_argument("--since", help="only notes modified at or after this")
    search.add_argument("--before", help="only notes modified before this")
    search.set_defaults(handler=cmd_search)


def cmd_search(client: ControlClient, args: argparse.Namespace) -> int:
    query = {
        "q": " ".join(args.query),
        "mode": args.mode,
        "limit": args.limit,
        "offset": args.offset,
        "threshold": args.threshold,
        "tag": args.tag,
        "folder": args.folder,
        "vault": args.vault,
        "since": args.since,
        "before": args.before,
    }
    reply = client.get("/v1/search", **query)
    if args.json:
        render.print_json(reply)
        return 0
    out = render.console()
    if reply.get("degraded"):
        out.print(f"[yellow]degraded:[/yellow] {render_escape(reply.get('degraded_reason', ''))}")
    if reply.get("rebuilding"):
        reason = render_escape(reply.get("rebuilding_reason", ""))
        out.print(f"[yellow]rebuilding:[/yellow] {reason}")
    if reply.get("indexing"):
        out.print(f"[yellow]indexing:[/yellow] {indexing_line(reply['indexing'])}")
    for number, result in enumerate(reply["results"], start=reply.get("offset", 0) + 1):
        out.print(format_result(number, result))
    out.print(_footer(reply))
    return 0


def indexing_line(indexing: dict[str, Any]) -> str:
    """One line for a reply given while the first index run is still working."""
    progress = Progress.from_brief(indexing)
    done, total = progress.done, progress.total
    counted = f"{done} of {total} notes indexed" if total else "scanning the vaults"
    return (
        f"the first index run is in progress ({counted}); "
        "results come from the index as it was before it and may be missing notes"
    )


def render_escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def highlighted(text: str, spans: list[list[int]]) -> str:
    """Rich markup for `text` with each [start, end) span in bold yellow; the rest escaped."""
    out, position = [], 0
    for start, end in sorted(spans):
        if start < position or end > len(text):
            continue
        out.append(render_escape(text[position:start]))
        out.append(f"[bold yellow]{render_escape(text[start:end])}[/bold yellow]")
        position = end
    out.append(render_escape(text[position:]))
    return "".join(out)


def format_result(number: int, result: dict[str, Any]) -> str:
    location = result["path"] if not result.get("vault") else f"{result['vault']}:{result['path']}"
    heading = " > ".join(result.get("heading_path") or [])
    modes = " ".join(result.get("modes", []))
    lines = [
        f"[bold]{number:>2}. {render_escape(result['title'])}[/bold]  "
        f"[dim]{render_escape(location)}  {result['score']:.4g}  ({modes})[/dim]"
    ]
    if heading:
        lines.append(f"    [cyan]{render_escape(heading)}[/cyan]")
    lines.append("    " + highlighted(result.get("snippet", ""), result.get("highlights", [])))
    return "\n".join(lines) + "\n"


def _footer(reply: dict[str, Any]) -> str:
    shown = len(reply["results"])
    total = reply["total"]
    if not shown:
        return f"no results for {render_escape(repr(reply['query']))} ({reply['mode']})"
    first = reply.get("offset", 0) + 1
    mode = reply["mode"]
    if reply.get("semantic_weight") is not None:  # hybrid: how much meaning counted
        mode += f", meaning {reply['semantic_weight']:.2f}"
    text = f"[dim]{first}-{first + shown - 1} of {total} ({mode}, {reply['took_ms']:.1f} ms"
    text += ", cached)" if reply.get("cached") else ")"
    if reply.get("next_offset") is not None:
        text += f"  next page: --offset {reply['next_offset']}"
    return text + "[/dim]"
