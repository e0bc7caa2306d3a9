"""Output for people (rich tables) or scripts (--json), chosen per command."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Any:
    from rich.table import Table

    out = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*("" if cell is None else str(cell) for cell in row))
    return out


def key_values(pairs: list[tuple[str, Any]]) -> Any:
    from rich.table import Table

    out = Table.grid(padding=(0, 2))
    out.add_column(style="bold")
    out.add_column()
    for key, value in pairs:
        out.add_row(key, "" if value is None else str(value))
    return out


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes}m"
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"


def when(value: str | float | None) -> str:
    """An ISO timestamp or Unix seconds, in local time."""
    if value is None or value == "":
        return "-"
    try:
        moment = (
            datetime.fromtimestamp(value)
            if isinstance(value, int | float)
            else datetime.fromisoformat(value)
        )
    except (ValueError, OverflowError, OSError):
        return str(value)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
