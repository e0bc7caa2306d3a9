"""`jarvisctl top`: a live dashboard of the daemon watching itself.

Every --interval seconds it asks the control socket (never the metrics port, which
may be off) for status, the sampled memory history, alerts, and the latency and
request reports, and draws them with `rich.live.Live` on the alternate screen: RSS
and CPU charts drawn with block characters, request and error rates, latency
percentiles per operation, jobs and firing alerts. Each refresh lays the frame out
for the terminal's current size, so a resize reflows within a quarter second; 80x24
is the smallest size it is designed for.

`--once` prints one frame and exits (with --json: the data behind it). `--json`
alone streams one JSON object per interval. `q` (read from the terminal without
Enter) or Ctrl-C leaves with exit 0, as the footer says. Its polls carry
MONITOR_HEADER, so the request panel shows everyone's requests but its own.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from jarvisd.cli import render
from jarvisd.cli.charts import (
    MODE_STYLES,
    bar_chart,
    escape,
    firing_table,
    seconds_since,
    sparkline,
    styled,
)
from jarvisd.cli.client import ControlClient, DaemonError, DaemonUnreachable
from jarvisd.observe.latency import MONITOR_HEADER
from jarvisd.units import human_bytes

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions
    from rich.text import Text

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

REQUEST_WINDOW_SECONDS = 60
QUIT_KEYS = frozenset(b"qQ")
RATE_POINTS = 240  # request-rate readings kept client-side for the sparkline
MIN_INTERVAL = 0.1  # below this, top itself would dominate the request rate


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    top = commands.add_parser(
        "top",
        parents=[common],
        help="live dashboard: memory, CPU, requests, latency, jobs, alerts (q quits)",
    )
    top.add_argument(
        "--interval",
        type=_interval,
        default=2.0,
        metavar="SECONDS",
        help="seconds between refreshes (2)",
    )
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.set_defaults(handler=cmd_top)


def _interval(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds >= MIN_INTERVAL:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be at least {MIN_INTERVAL} seconds, got {text!r}")
    return seconds


# ------------------------------------------------------------------------------ data


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one frame shows, as the daemon sent it."""

    status: dict[str, Any]
    memory: dict[str, Any]
    alerts: dict[str, Any]
    latency: dict[str, Any] | None
    requests: dict[str, Any] | None
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "status": self.status,
            "memory": self.memory,
            "alerts": self.alerts,
            "latency": self.latency,
            "requests": self.requests,
        }


def fetch(client: ControlClient) -> Snapshot:
    return Snapshot(
        status=client.get("/v1/status"),
        memory=client.get("/v1/memory"),
        alerts=client.get("/v1/alerts"),
        latency=_optional(client, "/v1/metrics/latency"),
        requests=_optional(client, "/v1/metrics/requests", window=REQUEST_WINDOW_SECONDS),
        at=time.time(),
    )


def _optional(client: ControlClient, path: str, **query: Any) -> dict[str, Any] | None:
    """A report an older daemon lacks: None on 404, and its panel says n/a."""
    try:
        report: dict[str, Any] = client.get(path, **query)
    except DaemonError as error:
        if error.status == 404:
            return None
        raise
    return report


@dataclass(frozen=True, slots=True)
class View:
    """One frame's input: the latest snapshot, the rate history, the last poll's error."""

    snapshot: Snapshot
    interval: float
    rates: tuple[float, ...] = ()
    error: str | None = None

    @classmethod
    def first(cls, client: ControlClient, interval: float) -> View:
        """The first view; an unreachable daemon here ends the command (exit 3)."""
        snapshot = fetch(client)
        return cls(snapshot, interval, _rate(snapshot, ()))

    def advanced(self, client: ControlClient) -> View:
        """The next view; on a failed poll the old data stays, with the reason on top."""
        try:
            snapshot = fetch(client)
        except (DaemonUnreachable, DaemonError) as error:
            return replace(self, error=str(error))
        return View(snapshot, self.interval, _rate(snapshot, self.rates))


def _rate(snapshot: Snapshot | None, rates: tuple[float, ...]) -> tuple[float, ...]:
    """`rates` with this snapshot's request rate appended, at most RATE_POINTS long."""
    rate = ((snapshot.requests if snapshot else None) or {}).get("rate_per_second")
    return rates if rate is None else (*rates[-(RATE_POINTS - 1) :], float(rate))


# --------------------------------------------------------------------------- command


def cmd_top(client: ControlClient, args: argparse.Namespace) -> int:
    client.headers[MONITOR_HEADER] = "jarvisctl top"
    view = View.first(client, args.interval)
    if args.once:
        if args.json:
            render.print_json(view.snapshot.as_dict())
        else:
            console = render.console()
            console.print(frame(view, console.size.width, console.size.height))
        return 0
    # Ctrl-C is how one leaves top, even when started with SIGINT ignored (as a shell
    # does for a background job's children), where Python never raises on it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with Keys() as keys:
            if args.json:
                _stream_json(client, view, keys)
            else:
                _watch(client, view, keys)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how one leaves top: not an error
    return 0


class Keys:
    """Keys pressed on the terminal, one at a time (cbreak: no Enter; Ctrl-C still works).

    Only when stdin is a terminal this process owns: a background job changing
    the terminal's mode would be stopped by SIGTTOU. Otherwise `q` is not read
    and waiting is a plain sleep.
    """

    def __init__(self) -> None:
        self._fd: int | None = None
        self._saved: list[Any] | None = None

    def __enter__(self) -> Keys:
        import os
        import sys

        fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
        try:
            foreground = fd is not None and os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:  # a terminal, but not this process's controlling one
            foreground = False
        if fd is not None and foreground:
            import termios
            import tty

            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
            self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None and self._saved is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def quit_within(self, seconds: float) -> bool:
        """Wait `seconds`; True as soon as `q` is pressed."""
        if self._fd is None:
            time.sleep(seconds)
            return False
        import os
        import select

        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self._fd], [], [], left)
            if ready and QUIT_KEYS & set(os.read(self._fd, 64)):
                return True
        return False


def _stream_json(client: ControlClient, view: View, keys: Keys) -> None:
    while True:
        if view.error is None:
            body = view.snapshot.as_dict()
        else:
            body = {"at": time.time(), "error": view.error}
        print(json.dumps(body, default=str), flush=True)
        if keys.quit_within(view.interval):
            return
        view = view.advanced(client)


def _watch(client: ControlClient, view: View, keys: Keys) -> None:
    from rich.live import Live

    console = render.console()
    if not console.is_terminal:
        _print_frames(client, view, console, keys)
        return
    # get_renderable reads `view` when it draws (it is a closure over the variable),
    # so the auto refresh re-lays out the latest data for the current terminal size.
    with Live(
        console=console,
        screen=True,
        refresh_per_second=4,
        redirect_stdout=False,
        redirect_stderr=False,
        get_renderable=lambda: frame(view, console.size.width, console.size.height),
    ) as live:
        while not keys.quit_within(view.interval):
            view = view.advanced(client)
            live.refresh()


def _print_frames(client: ControlClient, view: View, console: Console, keys: Keys) -> None:
    """Piped or redirected: one frame after another, like `top -b`."""
    while True:
        console.print(frame(view, console.size.width, console.size.height))
        if keys.quit_within(view.interval):
            return
        view = view.advanced(client)


# ---------------------------------------------------------------------------- layout


def frame(view: View, width: int, height: int) -> Any:
    """The whole screen for a terminal of this size; 80x24 is the smallest laid out for."""
    from rich.layout import Layout

    snapshot = view.snapshot
    firing = snapshot.alerts.get("firing", [])
    alert_rows = min(3 + len(firing), 8) if firing else 3  # borders, header, one per alert
    layout = Layout()
    layout.split_column(
        Layout(_header(view), size=1),
        Layout(name="upper", size=max(8, (height - 2) * 2 // 5)),
        Layout(name="lower", minimum_size=4),
        Layout(_alerts_panel(firing), size=alert_rows),
        Layout(_footer(view), size=1),
    )
    layout["upper"].split_row(
        Layout(_memory_panel(snapshot.memory), ratio=3),
        Layout(_requests_panel(view), ratio=2),
    )
    layout["lower"].split_row(
        Layout(_latency_panel(snapshot.latency, wide=width >= 100), ratio=3),
        Layout(_jobs_panel(snapshot.status.get("jobs", [])), ratio=2),
    )
    return layout


def _header(view: View) -> Any:
    from rich.table import Table
    from rich.text import Text

    status = view.snapshot.status
    clock = Text(time.strftime("%H:%M:%S", time.localtime(view.snapshot.at)), style="dim")
    if view.error is not None:
        left = Text(f"jarvisd: {view.error}", style="bold white on red")
    else:
        left = Text()
        left.append(f"jarvisd {status.get('version', '')}", style="bold")
        left.append(
            f"  pid {status.get('pid')}  up {render.duration(status.get('uptime_seconds'))}"
        )
        state = status.get("state", "-")
        if state != "running":
            left.append(f"  {state}", style="bold yellow")
        mode = str(status.get("memory_mode", "-"))
        left.append("  mode ")
        left.append(mode, style=MODE_STYLES.get(mode, ""))
        firing = status.get("alerts_firing", [])
        left.append("  alerts ")
        left.append(
            f"{len(firing)} firing" if firing else "none", "bold red" if firing else "green"
        )
    # Two columns so the clock stays visible however long the left side gets.
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    grid.add_column(no_wrap=True, justify="right")
    grid.add_row(left, clock)
    return grid


def _footer(view: View) -> Any:
    from rich.text import Text

    text = Text(no_wrap=True, overflow="ellipsis", style="dim")
    text.append("q", style="bold")
    text.append(" or ")
    text.append("Ctrl-C", style="bold")
    text.append(f" quits · every {view.interval:g} s · requests leave out top's own polls")
    return text


def _panel(body: Any, title: str, style: str = "blue") -> Any:
    from rich.panel import Panel

    return Panel(body, title=title, title_align="left", border_style=style, padding=(0, 1))


def _memory_panel(memory: dict[str, Any]) -> Any:
    history = memory.get("history", [])
    span = history[-1]["timestamp"] - history[0]["timestamp"] if len(history) > 1 else 0.0
    title = f"memory & CPU · last {render.duration(span)} · {len(history)} samples"
    return _panel(MemoryCharts(history), title)


def _requests_panel(view: View) -> Any:
    from rich.console import Group
    from rich.table import Table

    requests = view.snapshot.requests
    memory = view.snapshot.memory.get("latest") or {}
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(style="bold", no_wrap=True, min_width=7)
    grid.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    if requests is None:
        grid.add_row("rate", "n/a (daemon has no /v1/metrics/requests)")
    else:
        count = requests.get("count", 0)
        error_rate = requests.get("error_rate", 0.0)
        errors = round(error_rate * count)
        grid.add_row("rate", f"{requests.get('rate_per_second', 0.0):.2f}/s")
        grid.add_row(
            "errors",
            styled(f"{error_rate * 100:.1f} % ({errors} of {count})", "red" if errors else None),
        )
    if memory:
        available, total = human_bytes(memory["available"]), human_bytes(memory["total"])
        grid.add_row("avail", f"{available} / {total}")
    endpoints = sorted(
        ((requests or {}).get("endpoints") or {}).items(), key=lambda item: -item[1]["count"]
    )
    for endpoint, entry in endpoints:
        grid.add_row(f"[not bold]{entry['rate_per_second']:.2f}/s[/]", escape(endpoint))
    title = f"requests · last {REQUEST_WINDOW_SECONDS} s"
    return _panel(Group(Sparkline(view.rates, style="green"), grid), title)


def _latency_panel(latency: dict[str, Any] | None, *, wide: bool) -> Any:
    from rich.table import Table

    if latency is None:
        return _panel("n/a (daemon has no /v1/metrics/latency)", "latency")
    table = Table(box=None, expand=True, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("operation", no_wrap=True, overflow="ellipsis", ratio=1)
    # p90 only where there is room: at 80 columns the operation names need it more.
    ranks = ("p50", "p90", "p95", "p99") if wide else ("p50", "p95", "p99")
    for column in ("n", *ranks):
        table.add_column(column, justify="right", no_wrap=True)
    operations = latency.get("operations", {})
    # Slowest first: when the panel is too short for every row, what is cut is fast.
    for name, stats in sorted(operations.items(), key=lambda item: -item[1].get("p95", 0.0)):
        table.add_row(
            escape(name.removeprefix("request:")),
            str(stats.get("count", 0)),
            *(_seconds(stats.get(rank, 0.0)) for rank in ranks),
        )
    if not operations:
        table.add_row("[dim]nothing timed yet[/dim]")
    return _panel(table, "latency (recent window)")


def _jobs_panel(jobs: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(box=None, expand=True, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("job", no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column("runs", no_wrap=True, justify="right")
    table.add_column("next", no_wrap=True)
    # The job's name carries its last result as a colour: the panel is narrow.
    results = {"ok": "green", "error": "red", "running": "cyan"}
    for job in jobs:
        result = "running" if job.get("running") else (job.get("last_result") or "")
        failures = job.get("failures") or 0
        runs = f"{job.get('runs', 0)}" + (f" ✗{failures}" if failures else "")
        table.add_row(
            styled(job.get("id", ""), results.get(result)),
            styled(runs, "red" if failures else None),
            _next_run(job),
        )
    return _panel(table, "jobs")


def _next_run(job: dict[str, Any]) -> str:
    if not job.get("schedule"):
        return "off"
    elapsed = seconds_since(job.get("next_run"))
    if elapsed is None:
        return "-"
    return "now" if elapsed >= 0 else _short(-elapsed)


def _alerts_panel(firing: list[dict[str, Any]]) -> Any:
    if not firing:
        return _panel("[green]no alerts firing[/green]", "alerts", style="green")
    table = firing_table(firing, title=None, compact=True)
    table.expand = True
    return _panel(table, f"alerts · {len(firing)} firing", style="red")


def _short(seconds: float) -> str:
    """A duration in at most five characters or so: the jobs panel is narrow."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes < 24 * 60 else f"{minutes // 1440}d"


def _seconds(value: float) -> str:
    if value < 0.01:
        return f"{value * 1000:.2f}ms"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    return f"{value:.2f}s"


# ---------------------------------------------------------------------------- charts


@dataclass(frozen=True, slots=True)
class MemoryCharts:
    """RSS over CPU, each a block-character bar chart filling the space it is given."""

    history: list[dict[str, Any]]
    default_height: int = 8

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        from rich.text import Text

        width = options.max_width
        rows = max(2, (options.height or self.default_height) - 2)  # two label lines
        rss_rows = max(1, round(rows * 0.6))
        cpu_rows = max(1, rows - rss_rows)
        rss = [float(sample["rss"]) for sample in self.history]
        cpu = [float(sample["cpu_percent"]) for sample in self.history]
        if not rss:
            yield Text("no samples yet", style="dim")
            return
        yield _label(
            f"RSS {human_bytes(rss[-1])}",
            f"  min {human_bytes(min(rss))}  max {human_bytes(max(rss))}",
        )
        for line in bar_chart(rss, width, rss_rows):
            yield Text(line, style="cyan", no_wrap=True)
        peak = max(cpu)
        yield _label(f"CPU {cpu[-1]:.1f} %", f"  peak {peak:.1f} % (of one core)")
        for line in bar_chart(cpu, width, cpu_rows, low=0.0, high=max(peak, 1.0)):
            yield Text(line, style="magenta", no_wrap=True)


@dataclass(frozen=True, slots=True)
class Sparkline:
    """One row of blocks as wide as the space it is given."""

    values: tuple[float, ...] = field(default_factory=tuple)
    style: str = ""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        from rich.text import Text

        yield Text(sparkline(self.values, options.max_width), style=self.style, no_wrap=True)


def _label(value: str, detail: str) -> Text:
    from rich.text import Text

    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(value, style="bold")
    text.append(detail, style="dim")
    return text
