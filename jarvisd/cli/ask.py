"""jarvisctl ask QUESTION [--json] | model import GGUF_OR_FOLDER DEST [--dtype D] [--force]."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jarvisd.cli import render
from jarvisd.cli.client import ControlClient

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

ASK_TIMEOUT = 600.0  # a first question may load the LLM, then read a long prompt


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    ask = commands.add_parser(
        "ask",
        parents=[common],
        help="ask a question; the answer comes from your notes, with checked citations",
        description="Answered by a template, by the local LLM (streamed on a terminal), or "
        "extractively from the best passages; each sentence's citations are checked.",
    )
    ask.add_argument("question", nargs="+", help="what you want to know")
    ask.add_argument(
        "--no-stream", action="store_true", help="wait for the whole answer before printing"
    )
    ask.set_defaults(handler=cmd_ask)

    model = commands.add_parser("model", parents=[common], help="local LLM folders")
    actions = model.add_subparsers(dest="action", metavar="ACTION", required=True)
    importing = actions.add_parser(
        "import",
        parents=[common],
        help="convert a GGUF file (or check a model folder) into a folder jarvisd loads",
        description="Writes DEST: safetensors weights, config, tokenizer and chat template, "
        "loadable by both runtimes (transformers and mlx). No daemon needed; nothing is "
        "downloaded. Then set llm.model: DEST in jarvis.yaml.",
    )
    importing.add_argument("source", type=Path, metavar="GGUF_OR_FOLDER")
    importing.add_argument("dest", type=Path, metavar="DEST")
    importing.add_argument(
        "--dtype",
        choices=("bfloat16", "float16", "float32"),
        default="bfloat16",
        help="weights written (bfloat16: half the memory of float32; default)",
    )
    importing.add_argument("--force", action="store_true", help="replace a non-empty DEST")
    importing.set_defaults(handler=cmd_model_import, local=True)


def cmd_ask(client: ControlClient, args: argparse.Namespace) -> int:
    question = " ".join(args.question)
    client.timeout = max(client.timeout, ASK_TIMEOUT)
    live = sys.stdout.isatty() and not args.json and not args.no_stream
    if not live:
        reply = client.post("/v1/ask", {"question": question, "stream": False})
        if args.json:
            render.print_json(reply)
        else:
            _print_reply(reply, streamed=False)
        return 0
    final: dict[str, Any] = {}
    streamed = False
    for event in client.stream("POST", "/v1/ask", {"question": question, "stream": True}):
        if event.get("type") == "token":
            sys.stdout.write(event.get("text", ""))
            sys.stdout.flush()
            streamed = True
        elif event.get("type") == "done":
            final = event
        elif event.get("type") == "error":
            error = event.get("error", {})
            print(f"\njarvisctl: {error.get('message')} ({error.get('code')})", file=sys.stderr)
            return 1
    if streamed:
        sys.stdout.write("\n\n")
    _print_reply(final, streamed=streamed)
    return 0


def _print_reply(reply: dict[str, Any], streamed: bool) -> None:
    """The checked answer (unsupported sentences marked), then the citations as a table."""
    from rich.markup import escape

    out = render.console()
    if streamed:
        out.print("[dim]checked:[/dim]")
    if reply.get("sentences") and reply.get("path") == "llm":
        parts = []
        for sentence in reply["sentences"]:
            marks = "".join(f"[{n}]" for n in sentence.get("citations", []))
            text = escape(sentence["text"] + (f" {marks}" if marks else ""))
            parts.append(
                f"[yellow]{text} (unsupported)[/yellow]" if sentence["unsupported"] else text
            )
        out.print(" ".join(parts))
    else:
        out.print(escape(reply.get("answer", "")))
    rows = [
        [
            citation["number"],
            citation["title"],
            citation.get("heading") or "",
            f"{citation['vault']}:{citation['path']}",
            "-".join(str(line) for line in citation["lines"]) if citation.get("lines") else "",
        ]
        for citation in reply.get("citations", [])
    ]
    if rows:
        out.print()
        out.print(render.table(None, ["#", "note", "heading", "path", "lines"], rows))
    footer = _footer(reply)
    out.print()
    out.print(f"[dim]{escape(footer)}[/dim]")


def _footer(reply: dict[str, Any]) -> str:
    timings = reply.get("timings") or {}
    path = reply.get("path", "?")
    text = f"{path}"
    if reply.get("template"):
        text += f" ({reply['template']})"
    total = timings.get("total_ms")
    if total is not None:
        text += f", {render.duration(total / 1000)}"
    if timings.get("first_token_ms") is not None:
        text += f", first token {render.duration(timings['first_token_ms'] / 1000)}"
    if timings.get("tokens_per_second"):
        text += f", {timings['tokens_per_second']:.1f} tokens/s"
    unsupported = sum(1 for s in reply.get("sentences", []) if s.get("unsupported"))
    if unsupported:
        text += f", {unsupported} unsupported sentence{'s' if unsupported > 1 else ''}"
    if reply.get("reason"):
        text += f"\nno model answered: {reply['reason']}"
    return text


def cmd_model_import(client: ControlClient, args: argparse.Namespace) -> int:
    from jarvisd.ask.errors import ModelFolderError
    from jarvisd.ask.importer import import_model

    def progress(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    try:
        folder = import_model(args.source, args.dest, progress, args.dtype, args.force)
    except ModelFolderError as error:
        if args.json:
            print(json.dumps({"ok": False, "error": str(error)}))
        else:
            print(f"jarvisctl: cannot import {args.source}: {error}", file=sys.stderr)
        return 1
    if args.json:
        render.print_json({"ok": True, **folder.describe()})
    else:
        print(f"set llm.model: {folder.path.resolve()} in jarvis.yaml, then `jarvisctl reload`")
    return 0
