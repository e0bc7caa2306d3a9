"""What `jarvisctl alerts`, `memory` and `top` draw alike: values in their unit, times,
rich markup, block-character charts and the firing-alerts table.

Stdlib and lazily imported rich only, so jarvisctl stays light. A module of its
own so that `cli.observe` and `cli.top` both import it and not each other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from jarvisd.cli import render
from jarvisd.units import human_bytes

# Eighths of a cell, from empty to full: one chart row holds 9 levels.
BLOCKS = " ▁▂▃▄▅▆▇█"
SEVERITY_STYLES = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
MODE_STYLES = {"FULL": "green", "LITE": "yellow", "MINIMAL": "bold red"}


def metric_value(metric: str, value: float | None) -> str:
    """A sampled alert metric for people, in the unit its name says."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if metric.endswith("_bytes"):
        return human_bytes(value)
    if metric.endswith("_percent"):
        return f"{value:.1f} %"
    if metric.endswith("_seconds"):
        return render.duration(value)
    if metric == "error_rate":
        return f"{value * 100:.1f} %"
    return f"{value:g}"


def seconds_since(iso: str | None, now: datetime | None = None) -> float | None:
    """Seconds from an ISO time to now (negative: in the future); None if unparsable."""
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - moment).total_seconds()


def ago(iso: str | None) -> str:
    elapsed = seconds_since(iso)
    return "-" if elapsed is None else f"{render.duration(max(0.0, elapsed))} ago"


def escape(text: object) -> str:
    """Text safe inside rich markup (a rule named `[x]` must not be read as a style)."""
    from rich.markup import escape as rich_escape

    return rich_escape(str(text))


def styled(text: object, style: str | None) -> str:
    return f"[{style}]{escape(text)}[/]" if style else escape(text)


# ---------------------------------------------------------------------------- charts


def downsample(values: Sequence[float], width: int) -> list[float]:
    """At most `width` values: the peak of each run, so a short spike stays visible."""
    count = len(values)
    if count <= width:
        return list(values)
    return [max(values[i * count // width : (i + 1) * count // width]) for i in range(width)]


def bar_chart(
    values: Sequence[float],
    width: int,
    height: int,
    *,
    low: float | None = None,
    high: float | None = None,
) -> list[str]:
    """`height` rows of `width` block characters, newest value at the right edge.

    The vertical scale runs from `low` (default: the smallest value) to `high`
    (default: the largest); every value present gets at least the lowest block, so
    a flat series still shows how far back the data goes.
    """
    if width <= 0 or height <= 0:
        return [""] * max(height, 0)
    columns = downsample(values, width)
    bottom = low if low is not None else min(columns, default=0.0)
    top = high if high is not None else max(columns, default=0.0)
    steps = height * 8
    levels = []
    for value in columns:
        share = (value - bottom) / (top - bottom) if top > bottom else 0.0
        levels.append(1 + round(min(1.0, max(0.0, share)) * (steps - 1)))
    pad = width - len(levels)
    rows = []
    for row in range(height - 1, -1, -1):
        cells = (BLOCKS[min(8, max(0, level - row * 8))] for level in levels)
        rows.append(" " * pad + "".join(cells))
    return rows


def sparkline(values: Sequence[float], width: int) -> str:
    return bar_chart(values, width, 1)[0]


def firing_table(firing: list[dict[str, Any]], title: str | None, *, compact: bool = False) -> Any:
    """The firing alerts; `compact` (for top): no box, and how long ago, not the clock time."""
    rows = []
    for alert in firing:
        metric = alert.get("metric", "")
        severity = alert.get("severity", "")
        since = alert.get("since")
        threshold = f"{alert.get('op', '')} {metric_value(metric, alert.get('threshold'))}"
        rows.append(
            [
                escape(alert.get("rule")),
                metric,
                metric_value(metric, alert.get("value")),
                threshold,
                styled(severity, SEVERITY_STYLES.get(severity)),
                ago(since) if compact else render.when(since),
            ]
        )
    columns = ["rule", "metric", "value", "threshold", "severity", "since"]
    table = render.table(title, columns, rows)
    if compact:
        table.box = None  # the header rule would cost a row the alerts need
    return table
