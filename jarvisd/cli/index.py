"""jarvisctl index [--full] [--wait] | maintenance."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from jarvisd.cli import render
from jarvisd.cli.client import ControlClient
from jarvisd.indexing.progress import Progress

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    index = commands.add_parser("index", parents=[common], help="index the vaults now")
    index.add_argument(
        "--full", action="store_true", help="re-read and re-embed every note, not only what changed"
    )
    index.add_argument(
        "--wait",
        action="store_true",
        help="follow the run with a progress bar (--json: progress lines)",
    )
    index.set_defaults(handler=cmd_index)
    maintenance = commands.add_parser(
        "maintenance", parents=[common], help="run DuckDB maintenance now"
    )
    maintenance.set_defaults(handler=cmd_maintenance)


def cmd_index(client: ControlClient, args: argparse.Namespace) -> int:
    query = {"full": 1 if args.full else None}
    if not args.wait:
        started = client.post("/v1/index", **query)
        if args.json:
            render.print_json(started)
        else:
            queued = " (after the run in progress)" if started.get("queued_after_current") else ""
            print(f"indexing started{queued}; follow it with `jarvisctl index --wait`")
        return 0
    events = client.stream("POST", "/v1/index", query={**query, "wait": 1})
    if args.json:
        final: dict[str, Any] = {}
        for event in events:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
            final = event
        return 0 if final.get("run", {}).get("state") == "done" else 1
    return _follow(events)


def _follow(events: Any) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as ProgressBar

    out = render.console()
    columns = (
        TextColumn("[bold]{task.description:<13}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files  {task.fields[chunks]} chunks  {task.fields[rate]} chunks/s"),
        TimeElapsedColumn(),
        # The daemon's ETA (chunks still to encode over the smoothed rate), not one
        # rich would extrapolate from files done: notes differ tenfold in length.
        TextColumn("eta {task.fields[eta]}"),
    )
    run: dict[str, Any] = {}
    with ProgressBar(*columns, console=out, transient=False) as progress:
        bar = progress.add_task("scanning", total=None, chunks=0, rate="-", eta="-")
        for event in events:
            if event.get("type") == "done":
                run = event["run"]
                ended = Progress.from_run(run)
                progress.update(
                    bar,
                    description=ended.phase,
                    total=max(1, ended.total),
                    completed=ended.done,
                    chunks=ended.chunks_done,
                    eta="-",
                )
                break
            progress.update(bar, **progress_fields(event))
    _print_run(out, run)
    return 0 if run.get("state") == "done" else 1


def progress_fields(event: dict[str, Any]) -> dict[str, Any]:
    """What the bar shows of one progress event: phase, files, chunks, rate, ETA."""
    progress = Progress.from_dict(event)
    rate, eta = progress.chunks_per_second, progress.eta_seconds
    chunks, planned = progress.chunks_encoded, progress.chunks_to_encode
    return {
        "description": progress.phase,
        "total": progress.total or None,
        "completed": progress.done,
        "chunks": f"{chunks}/~{planned}" if planned else chunks,
        "rate": "-" if rate is None else f"{rate:.1f}",
        "eta": "-" if eta is None else ("<1 s" if eta < 1 else render.duration(eta)),
    }


def _print_run(out: Any, run: dict[str, Any]) -> None:
    if run.get("state") != "done":
        out.print(f"[red]indexing failed:[/red] {run.get('error')}")
        return
    skipped = ", ".join(f"{k} {v}" for k, v in (run.get("skipped_reasons") or {}).items())
    out.print(
        render.key_values(
            [
                ("files seen", run.get("files_seen")),
                (
                    "indexed",
                    f"{run.get('files_changed')} ({run.get('chunks')} chunks, "
                    f"{run.get('chunks_encoded')} encoded, {run.get('chunks_reused')} reused)",
                ),
                ("unchanged", run.get("files_unchanged")),
                ("renamed / deleted", f"{run.get('files_renamed')} / {run.get('files_deleted')}"),
                ("skipped", f"{run.get('files_skipped')}" + (f" ({skipped})" if skipped else "")),
                ("took", render.duration(run.get("duration_seconds"))),
            ]
        )
    )
    for item in run.get("skipped", [])[:10]:
        out.print(f"  [yellow]skipped[/yellow] {item['path']}: {item['reason']} ({item['detail']})")


def cmd_maintenance(client: ControlClient, args: argparse.Namespace) -> int:
    result = client.request("POST", "/v1/maintenance", timeout=3600)
    if args.json:
        render.print_json(result)
        return 0
    rows = [[step["step"], render.duration(step["seconds"])] for step in result["steps"]]
    render.console().print(render.table("maintenance", ["step", "took"], rows))
    return 0
