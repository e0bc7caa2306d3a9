"""jarvisctl graph NOTE | --path A B | --unresolved | --orphans, and jarvisctl note NOTE.

NOTE is a vault-relative path (`.md` optional) or a title or alias. Output is a
tree (the neighbourhood), tables (links, reports) or the note rendered as
Markdown; `--json` prints the daemon's reply as it is.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

from jarvisd.cli import render
from jarvisd.cli.client import ControlClient

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

_FRONTMATTER = re.compile(r"\A---[ \t]*\r?\n.*?\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    graph = commands.add_parser(
        "graph",
        parents=[common],
        help="a note's link neighbourhood, a path between notes, unresolved links, orphans",
        description="Without an option: the neighbourhood of NOTE as a tree, nearest first.",
    )
    graph.add_argument("note", nargs="?", metavar="NOTE", help="vault-relative path or title")
    graph.add_argument("--depth", type=int, default=1, help="link steps to follow (1)")
    graph.add_argument(
        "--direction",
        choices=("out", "in", "both"),
        default="both",
        help="follow links (out), backlinks (in) or both (default)",
    )
    graph.add_argument("--limit", type=int, default=None, help="most notes listed (500)")
    graph.add_argument("--vault", help="vault name (default: look in every vault)")
    what = graph.add_mutually_exclusive_group()
    what.add_argument("--links", action="store_true", help="NOTE's outgoing links and backlinks")
    what.add_argument("--path", nargs=2, metavar=("FROM", "TO"), help="a shortest path")
    what.add_argument("--unresolved", action="store_true", help="links that name no note")
    what.add_argument("--orphans", action="store_true", help="notes with no links in or out")
    graph.set_defaults(handler=cmd_graph, parser=graph)

    note = commands.add_parser(
        "note", parents=[common], help="read one note: metadata, links both ways, content"
    )
    note.add_argument("note", metavar="NOTE", help="vault-relative path (.md optional) or title")
    note.add_argument("--vault", help="vault name (default: look in every vault)")
    note.set_defaults(handler=cmd_note)


# ------------------------------------------------------------------- graph


def cmd_graph(client: ControlClient, args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if args.unresolved:
        return _show(args, client.get("/v1/graph/unresolved", vault=args.vault), _unresolved)
    if args.orphans:
        return _show(args, client.get("/v1/graph/orphans", vault=args.vault), _orphans)
    if args.path:
        source, target = args.path
        query = {"from": source, "to": target, "vault": args.vault, "direction": args.direction}
        reply = client.request("GET", "/v1/graph/path", query=query)
        return _show(args, reply, _path)
    if not args.note:
        parser.error("name a NOTE, or use --path, --unresolved or --orphans")
    if args.links:
        query = {"path": args.note, "vault": args.vault}
        outgoing = client.request("GET", "/v1/graph/links", query=query)
        incoming = client.request("GET", "/v1/graph/backlinks", query=query)
        return _show(args, {"links": outgoing, "backlinks": incoming}, _links)
    query = {
        "path": args.note,
        "vault": args.vault,
        "depth": args.depth,
        "direction": args.direction,
        "limit": args.limit,
    }
    reply = client.request("GET", "/v1/graph/neighbours", query=query)
    return _show(args, reply, _tree)


def _show(args: argparse.Namespace, reply: Any, draw: Any) -> int:
    if args.json:
        render.print_json(reply)
        return 0
    out = render.console()
    # How the note was chosen (a title, one of several vaults) comes first.
    outgoing = reply.get("links")  # --links: the note's reply is inside
    match = reply.get("match") or (outgoing.get("match") if isinstance(outgoing, dict) else None)
    match = match or {}
    if match.get("message"):
        out.print(f"[yellow]{_escape(match['message'])}[/yellow]")
    # A report asked of no vault in particular comes as one report per vault.
    for each in reply.get("vaults", [reply]):
        draw(out, each)
    return 0


def _label(note: dict[str, Any]) -> str:
    title, path = note.get("title") or "", note.get("path") or ""
    return f"[bold]{_escape(title)}[/bold]  [dim]{_escape(path)}[/dim]"


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _tree(out: Any, reply: dict[str, Any]) -> None:
    from rich.tree import Tree

    arrows = {"out": "links", "in": "backlinks", "both": "links and backlinks"}
    tree = Tree(_label(reply["note"]))
    branches = {reply["note"]["path"]: tree}
    for item in reply["neighbours"]:
        parent = branches.get(item.get("via") or "", tree)
        branches[item["path"]] = parent.add(_label(item))
    out.print(tree)
    shown = len(reply["neighbours"])
    more = f" (first {shown} shown)" if reply.get("truncated") else ""
    out.print(
        f"[dim]{reply['total']} notes within {reply['depth']} step(s) following "
        f"{arrows.get(reply['direction'], reply['direction'])}{more}[/dim]"
    )


def _links(out: Any, reply: dict[str, Any]) -> None:
    outgoing, incoming = reply["links"], reply["backlinks"]
    rows = [
        [
            link["line"],
            link["target"] + (f"#{link['heading']}" if link.get("heading") else ""),
            link["target_path"] or "[red]unresolved[/red]",
        ]
        for link in outgoing["links"]
    ]
    out.print(_label(outgoing["note"]))
    out.print(render.table(f"links out ({len(rows)})", ["line", "as written", "note"], rows))
    back = [[link["source"], link["line"], link["kind"]] for link in incoming["links"]]
    out.print(render.table(f"backlinks ({len(back)})", ["from", "line", "kind"], back))


def _path(out: Any, reply: dict[str, Any]) -> None:
    if not reply["found"]:
        out.print(
            f"no path from {reply['from']['path']} to {reply['to']['path']} "
            f"following {reply['direction']} links"
        )
        return
    arrow = {"out": "→", "in": "←", "both": "—"}.get(reply["direction"], "→")
    out.print(f"[dim]{reply['length']} step(s)[/dim]")
    for index, note in enumerate(reply["notes"]):
        prefix = "  " if index == 0 else f"{arrow} "
        out.print(prefix + _label(note))


def _unresolved(out: Any, reply: dict[str, Any]) -> None:
    rows = [
        [item["target"], item["count"], ", ".join(item["sources"])] for item in reply["targets"]
    ]
    title = f"unresolved links in {reply['vault']} ({reply['links']} links, {reply['count']} names)"
    out.print(render.table(title, ["names", "links", "in notes"], rows))


def _orphans(out: Any, reply: dict[str, Any]) -> None:
    rows = [[note["path"], note["title"]] for note in reply["notes"]]
    out.print(
        render.table(f"orphans in {reply['vault']} ({reply['count']})", ["path", "title"], rows)
    )


# -------------------------------------------------------------------- note


def cmd_note(client: ControlClient, args: argparse.Namespace) -> int:
    name: str = args.note
    looks_like_path = "/" in name or name.lower().endswith(".md")
    key = "path" if looks_like_path else "title"
    reply = client.request("GET", "/v1/notes", query={key: name, "vault": args.vault})
    if args.json:
        render.print_json(reply)
        return 0
    _note(render.console(), reply)
    return 0


def _note(out: Any, note: dict[str, Any]) -> None:
    from rich.markdown import Markdown
    from rich.rule import Rule

    match = note.get("match") or {}
    if match.get("message"):
        out.print(f"[yellow]{_escape(match['message'])}[/yellow]")
    out.print(Rule(_escape(note["title"])))
    pairs: list[tuple[str, Any]] = [("path", note["path"])]
    for key in ("tags", "aliases"):
        if note.get(key):
            pairs.append((key, ", ".join(note[key])))
    out.print(render.key_values(pairs))
    for heading in note.get("headings", []):
        out.print(
            "  " * (heading["level"] - 1)
            + f"[dim]{'#' * heading['level']}[/dim] "
            + _escape(heading["text"])
        )
    outgoing = [
        [link["target"], link.get("resolved_path") or "[red]unresolved[/red]"]
        for link in note.get("links", [])
        if link.get("targets_note")
    ]
    if outgoing:
        out.print(render.table(f"links out ({len(outgoing)})", ["as written", "note"], outgoing))
    incoming = [[link["source_path"], link["line"]] for link in note.get("backlinks", [])]
    if incoming:
        out.print(render.table(f"links in ({len(incoming)})", ["from", "line"], incoming))
    if note.get("content_error"):
        out.print(f"[yellow]{_escape(note['content_error'])}[/yellow]")
    if note.get("content"):
        out.print(Rule())
        out.print(Markdown(_FRONTMATTER.sub("", note["content"], count=1)))
