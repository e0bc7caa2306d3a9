"""jarvisctl alerts | memory [--export FILE] | gc.

The formatting and charts these share with `top` live in `jarvisd.cli.charts`.
Everything here is stdlib or lazily imported rich, so jarvisctl stays light.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jarvisd.cli import render
from jarvisd.cli.charts import (
    MODE_STYLES,
    SEVERITY_STYLES,
    escape,
    firing_table,
    metric_value,
    sparkline,
    styled,
)
from jarvisd.cli.client import ControlClient
from jarvisd.units import human_bytes

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_USAGE = 2
EXPORT_SUFFIXES = (".json", ".csv")
# The columns of an exported sample, in the order of jarvisd.observe.memory.Sample (a test keeps
# them in step; importing jarvisd.observe.memory here would pull in psutil and pydantic).
EXPORT_FIELDS = (
    "time",
    "timestamp",
    "rss",
    "vms",
    "available",
    "total",
    "percent",
    "cpu_percent",
    "mode",
)


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    alerts = commands.add_parser(
        "alerts", parents=[common], help="firing alerts and recent alert events"
    )
    alerts.set_defaults(handler=cmd_alerts)

    memory = commands.add_parser(
        "memory", parents=[common], help="memory mode, latest sample, trend, model memory"
    )
    memory.add_argument(
        "--export",
        type=Path,
        metavar="FILE",
        help="write the sampled history to FILE.json or FILE.csv",
    )
    memory.set_defaults(handler=cmd_memory)

    gc = commands.add_parser("gc", parents=[common], help="run a full garbage collection now")
    gc.add_argument(
        "--models", action="store_true", help="unload the LLM first (it loads again when needed)"
    )
    gc.set_defaults(handler=cmd_gc)


# ------------------------------------------------------------------------ formatting


# ---------------------------------------------------------------------------- alerts


def cmd_alerts(client: ControlClient, args: argparse.Namespace) -> int:
    report = client.get("/v1/alerts")
    if args.json:
        render.print_json(report)
        return 0
    out = render.console()
    firing = report.get("firing", [])
    if firing:
        out.print(firing_table(firing, title=f"firing ({len(firing)})"))
    else:
        out.print("[green]no alerts firing[/green]")
    out.print()
    recent = report.get("recent", [])
    if recent:
        out.print(_events_table(recent))
    else:
        out.print("no alert events since the daemon started")
    rules = report.get("rules", [])
    out.print(f"\n{len(rules)} rule{'s' if len(rules) != 1 else ''} configured (alerts.rules)")
    return 0


def _events_table(events: list[dict[str, Any]]) -> Any:
    rows = []
    for event in events:
        metric = event.get("metric", "")
        kind = event.get("kind", "")
        severity = event.get("severity", "")
        label = "resolved" if kind == "resolved" else ("repeat" if event.get("repeat") else kind)
        rows.append(
            [
                render.when(event.get("time")),
                styled(label, "green" if kind == "resolved" else "red"),
                escape(event.get("rule")),
                metric_value(metric, event.get("value")),
                f"{event.get('op', '')} {metric_value(metric, event.get('threshold'))}",
                styled(severity, SEVERITY_STYLES.get(severity)),
            ]
        )
    columns = ["time", "event", "rule", "value", "threshold", "severity"]
    return render.table("recent events (newest first)", columns, rows)


# ---------------------------------------------------------------------------- memory


def cmd_memory(client: ControlClient, args: argparse.Namespace) -> int:
    export: Path | None = args.export.expanduser() if args.export else None
    if export is not None and export.suffix.lower() not in EXPORT_SUFFIXES:
        # Refused before asking the daemon: a wrong name is a usage error, not a failure.
        print(
            f"jarvisctl: cannot export to {str(export)!r}: the file name must end in "
            f"{' or '.join(EXPORT_SUFFIXES)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    report = client.get("/v1/memory")
    if export is not None:
        return _export(report.get("history", []), export, as_json=args.json)
    if args.json:
        render.print_json(report)
        return 0
    pairs = memory_pairs(report)
    history = [float(sample["rss"]) for sample in report.get("history", [])]
    if len(history) > 1:
        pairs.append(("rss history", f"[cyan]{sparkline(history, 60)}[/cyan]"))
    models, devices = report.get("models") or {}, report.get("accelerator") or {}
    pairs += [(f"model {name}", _describe(value)) for name, value in models.items()]
    pairs += [(f"device {name}", _describe(value)) for name, value in devices.items()]
    if not models:
        pairs.append(("models", "none reporting memory"))
    render.console().print(render.key_values(pairs))
    return 0


def memory_pairs(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """The readable `jarvisctl memory`: mode and thresholds, latest sample, trend."""
    mode = report.get("mode", "-")
    modes = report.get("thresholds") or {}
    thresholds = (
        f"FULL at {modes.get('full_min_available', '?')} available, "
        f"LITE at {modes.get('lite_min_available', '?')}, "
        f"hysteresis {modes.get('hysteresis', '?')}"
    )
    pairs: list[tuple[str, Any]] = [
        ("mode", f"{styled(mode, MODE_STYLES.get(mode))}  ({thresholds})")
    ]
    latest = report.get("latest") or {}
    if latest:
        available = human_bytes(latest["available"])
        total = human_bytes(latest["total"])
        pairs += [
            ("rss", human_bytes(latest["rss"])),
            ("vms", human_bytes(latest["vms"])),
            ("available", f"{available} of {total} ({latest.get('percent')} % in use)"),
            ("cpu", f"{latest['cpu_percent']:.1f} % of one core"),
            ("sampled", render.when(latest.get("time"))),
        ]
    trend = report.get("trend") or {}
    rss, cpu = trend.get("rss_bytes"), trend.get("cpu_percent")
    if rss:
        slope = rss.get("slope_bytes_per_minute", 0.0)
        sign = "+" if slope >= 0 else "-"
        span = render.duration(trend.get("span_seconds"))
        pairs.append(
            (
                "rss trend",
                f"{human_bytes(rss['min'])} .. {human_bytes(rss['max'])}, "
                f"{sign}{human_bytes(abs(slope))}/min over {trend['samples']} samples ({span})",
            )
        )
    if cpu:
        pairs.append(("cpu trend", f"mean {cpu['mean']:.1f} %, peak {cpu['max']:.1f} %"))
    return pairs


def _describe(value: Any) -> str:
    """A model's or device's memory report on one line, sizes in human units."""
    if not isinstance(value, dict):
        return str(value)
    parts = []
    for key, item in value.items():
        if key.endswith("_bytes") and isinstance(item, int | float):
            item = human_bytes(item)
        elif isinstance(item, dict):
            item = f"({_describe(item)})"
        parts.append(f"{key} {item}")
    return escape(", ".join(parts))


def _export(history: list[dict[str, Any]], path: Path, *, as_json: bool) -> int:
    """Write the history the daemon sent; atomically, so a reader never sees half a file."""
    kind = path.suffix.lower().lstrip(".")
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", newline="", encoding="utf-8") as handle:
            if kind == "json":
                handle.write(json.dumps(history, indent=2) + "\n")
            else:
                extra = sorted({key for sample in history for key in sample} - set(EXPORT_FIELDS))
                writer = csv.DictWriter(handle, fieldnames=[*EXPORT_FIELDS, *extra], restval="")
                writer.writeheader()
                writer.writerows(history)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        print(f"jarvisctl: cannot write {path}: {error.strerror or error}", file=sys.stderr)
        return 1
    if as_json:
        render.print_json({"file": str(path), "format": kind, "samples": len(history)})
    else:
        print(f"wrote {len(history)} sample{'s' if len(history) != 1 else ''} to {path} ({kind})")
    return 0


# -------------------------------------------------------------------------------- gc


def cmd_gc(client: ControlClient, args: argparse.Namespace) -> int:
    unloaded = client.post("/v1/models/unload") if args.models else None
    result = client.post("/v1/metrics/gc")
    if args.json:
        render.print_json(result if unloaded is None else {**result, "models": unloaded})
        return 0
    if unloaded is not None:
        names = ", ".join(unloaded.get("unloaded", [])) or "no model was loaded"
        print(f"unloaded: {names} ({human_bytes(unloaded.get('freed_bytes', 0))} of weights)")
    print(
        f"collected {result.get('collected', 0)} objects in "
        f"{result.get('duration_seconds', 0.0) * 1000:.1f} ms; "
        f"RSS {human_bytes(result.get('rss_before_bytes', 0))} -> "
        f"{human_bytes(result.get('rss_after_bytes', 0))} "
        f"(freed {human_bytes(result.get('freed_bytes', 0))})"
    )
    return 0
