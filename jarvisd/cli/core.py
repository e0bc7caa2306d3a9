"""jarvisctl status | reload | config show | config check FILE | jobs [run ID]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jarvisd.cli import render
from jarvisd.cli.client import ControlClient

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    status = commands.add_parser("status", parents=[common], help="daemon state, index, jobs")
    status.set_defaults(handler=cmd_status)

    reload = commands.add_parser("reload", parents=[common], help="re-read jarvis.yaml")
    reload.set_defaults(handler=cmd_reload)

    config = commands.add_parser("config", parents=[common], help="show or check configuration")
    config_actions = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = config_actions.add_parser("show", parents=[common], help="the effective config")
    show.set_defaults(handler=cmd_config_show)
    check = config_actions.add_parser("check", parents=[common], help="validate a config file")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=cmd_config_check, local=True)

    jobs = commands.add_parser("jobs", parents=[common], help="background jobs")
    jobs_actions = jobs.add_subparsers(dest="action", metavar="ACTION")
    run = jobs_actions.add_parser("run", parents=[common], help="run a job now")
    run.add_argument("job_id", metavar="ID")
    run.set_defaults(handler=cmd_jobs_run)
    jobs.set_defaults(handler=cmd_jobs)


def cmd_status(client: ControlClient, args: argparse.Namespace) -> int:
    status = client.get("/v1/status")
    if args.json:
        render.print_json(status)
        return 0
    out = render.console()
    pairs: list[tuple[str, Any]] = [
        ("state", status["state"]),
        ("pid", status["pid"]),
        ("version", status["version"]),
        ("uptime", render.duration(status["uptime_seconds"])),
        ("memory mode", status.get("memory_mode")),
        ("config", status.get("config_path") or "(built-in defaults)"),
        ("socket", status.get("socket")),
        ("database", status.get("database")),
    ]
    store = status.get("store")
    if isinstance(store, dict):
        if not store.get("healthy", True):
            pairs.append(("health", f"UNHEALTHY: {store.get('unhealthy_reason')}"))
        recovery = store.get("recovery")
        if isinstance(recovery, dict):
            kept = ", ".join(recovery.get("kept") or []) or "none"
            state = "rebuilding the index" if store.get("rebuilding") else "rebuilt"
            pairs.append(("store", f"recovered at {recovery.get('at')} ({state})"))
            pairs.append(("recovery reason", recovery.get("reason")))
            pairs.append(("files kept", kept))
    index = status.get("index")
    if isinstance(index, dict):
        pairs.append(("notes", index.get("notes")))
        pairs.append(("chunks", index.get("chunks")))
        pairs.append(
            ("links", f"{index.get('links')} ({index.get('unresolved_links')} unresolved)")
        )
    out.print(render.key_values(pairs))
    _print_last_run(out, status.get("last_index_run"))
    out.print()
    out.print(_jobs_table(status.get("jobs", [])))
    return 0


def _print_last_run(out: Any, run: dict[str, Any] | None) -> None:
    if not run:
        return
    skipped = run.get("skipped_reasons") or {}
    reasons = ", ".join(f"{reason} {count}" for reason, count in skipped.items())
    out.print()
    out.print(
        render.key_values(
            [
                ("last index run", render.when(run.get("finished_at"))),
                # A failed run says why and what to do (a full or read-only disk).
                *([("run state", run.get("state"))] if run.get("state") != "done" else []),
                *([("run error", run["error"])] if run.get("error") else []),
                ("files seen", run.get("files_seen")),
                ("changed", run.get("files_changed")),
                (
                    "skipped",
                    f"{run.get('files_skipped', 0)}" + (f" ({reasons})" if reasons else ""),
                ),
                ("chunks", run.get("chunks")),
                ("duration", render.duration(run.get("duration_seconds"))),
            ]
        )
    )


def _jobs_table(jobs: list[dict[str, Any]]) -> Any:
    rows = [
        [
            job["id"],
            job.get("schedule") or "off",
            "running" if job.get("running") else (job.get("last_result") or "-"),
            job.get("runs"),
            job.get("failures"),
            render.duration(job.get("last_duration_seconds")),
            render.when(job.get("next_run")),
        ]
        for job in jobs
    ]
    return render.table(
        "jobs", ["id", "schedule", "state", "runs", "failures", "last took", "next run"], rows
    )


def cmd_reload(client: ControlClient, args: argparse.Namespace) -> int:
    outcome = client.post("/v1/reload")
    if args.json:
        render.print_json(outcome)
        return 0
    out = render.console()
    out.print("[green]config reloaded[/green]")
    for label, key in (("changed", "changed"), ("added", "added"), ("removed", "removed")):
        for item in outcome.get(key, []):
            out.print(f"  {label:>8}  {item}")
    for item in outcome.get("restart_required", []):
        out.print(f"  [yellow]{'restart':>8}[/yellow]  {item} (kept its old value until a restart)")
    if not any(outcome.get(key) for key in ("changed", "added", "removed", "restart_required")):
        out.print("  no changes")
    return 0


def cmd_config_show(client: ControlClient, args: argparse.Namespace) -> int:
    effective = client.get("/v1/config")
    if args.json:
        render.print_json(effective)
        return 0
    import yaml

    print(f"# effective config of the running daemon (file: {effective.get('path') or 'none'})")
    print(yaml.safe_dump(effective["config"], sort_keys=False, default_flow_style=None), end="")
    return 0


def cmd_config_check(client: ControlClient, args: argparse.Namespace) -> int:
    from jarvisd.cli import EXIT_CONFIG
    from jarvisd.config import ConfigError, load_config

    try:
        load_config(args.file)
    except ConfigError as error:
        if args.json:
            render.print_json({"ok": False, "file": str(args.file), "problems": error.problems})
        else:
            print(f"jarvisctl: invalid config: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        render.print_json({"ok": True, "file": str(args.file)})
    else:
        print(f"{args.file}: ok")
    return 0


def cmd_jobs(client: ControlClient, args: argparse.Namespace) -> int:
    jobs = client.get("/v1/jobs")
    if args.json:
        render.print_json(jobs)
        return 0
    render.console().print(_jobs_table(jobs["jobs"]))
    return 0


def cmd_jobs_run(client: ControlClient, args: argparse.Namespace) -> int:
    started = client.post(f"/v1/jobs/{args.job_id}/run")
    if args.json:
        render.print_json(started)
    else:
        print(f"job {args.job_id} started")
    return 0
