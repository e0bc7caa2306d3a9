"""jarvisctl alerts | memory | gc | top against the real daemon, and the chart drawing."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProcess, ctl

from jarvisd.cli.charts import BLOCKS, bar_chart, downsample, metric_value, sparkline
from jarvisd.cli.observe import EXPORT_FIELDS
from jarvisd.cli.top import Snapshot, View, frame
from jarvisd.observe.memory import SAMPLE_FIELDS

Start = Callable[..., DaemonProcess]
serial = pytest.mark.serial

QUIET: dict[str, Any] = {
    "schedule": {"memory_sample": "200ms", "index": None},
    "indexing": {"on_start": False, "watch": False},
}
RSS_RULE = {"name": "rss_any", "metric": "rss_bytes", "threshold": 1, "for": "0s"}


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stderr)
    return result.stdout


# -------------------------------------------------------------------- charts, no daemon


def test_bar_chart_rows_columns_and_scale() -> None:
    # Newest on the right; the lowest value still shows; the highest fills the chart.
    assert bar_chart([1.0, 2.0, 3.0, 4.0], width=8, height=2) == ["      ▃█", "    ▁▆██"]


def test_bar_chart_flat_empty_and_fixed_scale() -> None:
    assert bar_chart([5.0, 5.0, 5.0], width=3, height=1) == ["▁▁▁"]
    assert bar_chart([], width=4, height=2) == ["    ", "    "]
    assert bar_chart([1.0], width=0, height=2) == ["", ""]
    half = bar_chart([50.0], width=1, height=1, low=0.0, high=100.0)[0]
    assert half in BLOCKS[4:6]
    assert bar_chart([500.0], width=1, height=1, low=0.0, high=100.0) == ["█"]


def test_downsample_keeps_peaks_and_sparkline_fits() -> None:
    assert downsample([0, 0, 9, 0, 0, 0], 3) == [0, 9, 0]
    assert downsample([1, 2], 5) == [1, 2]
    line = sparkline([float(i % 7) for i in range(500)], 40)
    assert len(line) == 40 and set(line) <= set(BLOCKS)


def test_export_fields_follow_the_daemon_sample() -> None:
    assert list(EXPORT_FIELDS) == ["time", *SAMPLE_FIELDS]


def test_metric_values_read_in_their_units() -> None:
    assert metric_value("rss_bytes", 58_400_000) == "58.4 MB"
    assert metric_value("memory_percent", 81.25) == "81.2 %"
    assert metric_value("error_rate", 0.05) == "5.0 %"
    assert metric_value("search_latency_p95_seconds", 2.5) == "2.5 s"
    assert metric_value("job_failures", 3) == "3"
    assert metric_value("rss_bytes", None) == "-"


def synthetic_view(samples: int, firing: int) -> View:
    """A frame's input built by hand: shapes as the daemon sends them."""
    history = [
        {
            "timestamp": 1000.0 + i,
            "rss": 50_000_000 + i * 1000,
            "cpu_percent": float(i % 9),
            "available": 8_000_000_000,
            "total": 16_000_000_000,
        }
        for i in range(samples)
    ]
    alerts = [
        {
            "rule": f"rule_{i}",
            "metric": "rss_bytes",
            "value": 5e7,
            "threshold": 1.0,
            "op": ">",
            "severity": "critical",
            "since": "2026-01-01T00:00:00+00:00",
        }
        for i in range(firing)
    ]
    snapshot = Snapshot(
        status={
            "version": "0.1.0",
            "pid": 1,
            "uptime_seconds": 5.0,
            "state": "running",
            "memory_mode": "LITE",
            "alerts_firing": [a["rule"] for a in alerts],
            "jobs": [
                {
                    "id": "memory_sample",
                    "schedule": "10s",
                    "runs": 3,
                    "failures": 1,
                    "last_result": "error",
                    "next_run": None,
                }
            ],
        },
        memory={"mode": "LITE", "history": history, "latest": history[-1] if history else None},
        alerts={"firing": alerts, "recent": []},
        latency={
            "operations": {
                f"request:/v1/op{i}": {
                    "count": 3,
                    "p50": 0.001,
                    "p90": 0.002,
                    "p95": 0.003,
                    "p99": 0.5,
                }
                for i in range(30)
            }
        },
        requests={"rate_per_second": 1.5, "error_rate": 0.1, "count": 90, "endpoints": {}},
        at=1000.0,
    )
    return View(snapshot, interval=2.0, rates=(1.0, 2.0, 1.5))


@pytest.mark.parametrize(("width", "height"), [(80, 24), (132, 43), (50, 14)])
@pytest.mark.parametrize(("samples", "firing"), [(0, 0), (1, 1), (2000, 9)])
def test_frame_fills_the_terminal_exactly(
    width: int, height: int, samples: int, firing: int
) -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, height=height, color_system=None)
    console.print(frame(synthetic_view(samples, firing), width, height))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == height
    assert all(len(line) <= width for line in lines)
    if samples and height >= 24:
        text = "\n".join(lines)
        assert "RSS" in text and "CPU" in text and "memory_sample" in text


def test_the_footer_says_how_to_quit() -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=80, height=24, color_system=None)
    console.print(frame(synthetic_view(10, 0), 80, 24))
    last = console.file.getvalue().splitlines()[-1]  # type: ignore[attr-defined]
    assert last.startswith("q or Ctrl-C quits · every 2 s")


# -------------------------------------------------------------------------- no daemon


def test_memory_export_refuses_other_suffixes_without_a_daemon(tmp_path: Path) -> None:
    target = tmp_path / "history.txt"
    result = ctl(tmp_path / "absent.sock", "memory", "--export", str(target))
    assert result.returncode == 2
    assert ".json or .csv" in result.stderr and "history.txt" in result.stderr
    assert not target.exists()


def test_top_interval_must_be_positive(tmp_path: Path) -> None:
    for bad in ("0", "-1", "soon"):
        result = ctl(tmp_path / "absent.sock", "top", "--interval", bad)
        assert result.returncode == 2 and "--interval" in result.stderr


# ------------------------------------------------------------------------ the daemon


@serial
def test_alerts_table_and_json(start_daemon: Start) -> None:
    daemon = start_daemon(alerts={"rules": [RSS_RULE]}, **QUIET)
    daemon.wait_event("alert.fired")
    table = ok(ctl(daemon, "alerts"))
    assert "firing (1)" in table and "rss_any" in table and "rss_bytes" in table
    assert "recent events" in table and "fired" in table
    report = json.loads(ok(ctl(daemon, "alerts", "--json")))
    (alert,) = report["firing"]
    assert {"rule", "metric", "value", "threshold", "severity", "since"} <= alert.keys()
    assert alert["rule"] == "rss_any" and alert["value"] > 1
    assert report["recent"][0]["kind"] == "fired"


@serial
def test_alerts_when_nothing_fires(start_daemon: Start) -> None:
    daemon = start_daemon(alerts={"rules": []}, **QUIET)
    table = ok(ctl(daemon, "alerts"))
    assert "no alerts firing" in table and "0 rules configured" in table
    report = json.loads(ok(ctl(daemon, "alerts", "--json")))
    assert report["firing"] == [] and report["rules"] == []


@serial
def test_memory_readable_and_json(start_daemon: Start) -> None:
    daemon = start_daemon(**QUIET)
    daemon.wait_event("job.finished")  # at least two samples: the start-up one and this
    mode = daemon.client.get("/v1/status")["memory_mode"]
    readable = ok(ctl(daemon, "memory"))
    assert mode in readable and "rss" in readable and "available" in readable
    assert "rss history" in readable
    report = json.loads(ok(ctl(daemon, "memory", "--json")))
    assert report["mode"] == mode
    assert set(report["history"][0]) == set(EXPORT_FIELDS)
    assert report["latest"]["rss"] > 0 and report["trend"]["samples"] >= 2


@serial
def test_memory_export_json_and_csv(start_daemon: Start, tmp_path: Path) -> None:
    daemon = start_daemon(**QUIET)
    daemon.wait_event("job.finished")

    as_json = tmp_path / "history.json"
    said = ok(ctl(daemon, "memory", "--export", str(as_json)))
    written = json.loads(as_json.read_text(encoding="utf-8"))
    assert f"wrote {len(written)} samples to {as_json}" in said
    assert len(written) >= 2
    assert all(set(sample) == set(EXPORT_FIELDS) for sample in written)

    as_csv = tmp_path / "history.CSV"
    said = json.loads(ok(ctl(daemon, "memory", "--export", str(as_csv), "--json")))
    assert said["file"] == str(as_csv) and said["format"] == "csv"
    with as_csv.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == list(EXPORT_FIELDS)
    assert len(rows) == said["samples"] >= 2
    assert int(rows[-1]["rss"]) > 0 and rows[-1]["mode"] in {"FULL", "LITE", "MINIMAL"}
    assert float(rows[-1]["timestamp"]) >= float(rows[0]["timestamp"])

    missing = ctl(daemon, "memory", "--export", str(tmp_path / "no" / "dir.json"))
    assert missing.returncode == 1 and "cannot write" in missing.stderr


@serial
def test_gc_readable_and_json(start_daemon: Start) -> None:
    daemon = start_daemon(**QUIET)
    readable = ok(ctl(daemon, "gc"))
    assert re.search(r"collected \d+ objects", readable) and "RSS" in readable
    assert "freed" in readable
    result = json.loads(ok(ctl(daemon, "gc", "--json")))
    assert result["collected"] >= 0 and result["freed_bytes"] >= 0
    assert result["rss_before_bytes"] > 0


@serial
def test_top_once_fits_80_by_24(start_daemon: Start) -> None:
    daemon = start_daemon(alerts={"rules": [RSS_RULE]}, **QUIET)
    daemon.wait_event("alert.fired")
    daemon.wait_event("job.finished", count=3)
    out = ok(ctl(daemon, "top", "--once", env={"COLUMNS": "80", "LINES": "24"}))
    lines = out.splitlines()
    assert len(lines) == 24
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    for expected in ("RSS", "CPU", "memory_sample", "latency", "requests", "rss_any", "firing"):
        assert expected in out, expected
    assert daemon.client.get("/v1/status")["memory_mode"] in lines[0]
    assert set(out) & set(BLOCKS[1:]), "no chart drawn"


@serial
def test_top_once_json(start_daemon: Start) -> None:
    daemon = start_daemon(**QUIET)
    snapshot = json.loads(ok(ctl(daemon, "top", "--once", "--json")))
    assert {"at", "status", "memory", "alerts", "latency", "requests"} <= snapshot.keys()
    assert snapshot["status"]["pid"] == daemon.process.pid
    assert snapshot["memory"]["history"]
    assert "request:/v1/status" in snapshot["latency"]["operations"]
    assert snapshot["requests"]["window_seconds"] == 60


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@serial
@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_top_json_stream_stops_on_ctrl_c_with_exit_0(start_daemon: Start, inherited: str) -> None:
    """Also when started with SIGINT ignored, as a shell starts a background job's
    children (a `make test &` failed here that way)."""
    daemon = start_daemon(**QUIET)
    command = [
        sys.executable,
        "-m",
        "jarvisd.cli",
        "--socket",
        str(daemon.socket),
        "top",
        "--json",
        "--interval",
        "0.2",
    ]
    setup = _ignore_sigint if inherited == "ignored" else None
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, preexec_fn=setup) as top:
        assert top.stdout is not None
        first, second = json.loads(top.stdout.readline()), json.loads(top.stdout.readline())
        assert first["status"]["pid"] == second["status"]["pid"] == daemon.process.pid
        top.send_signal(signal.SIGINT)
        assert top.wait(30) == 0


@serial
def test_top_live_on_a_terminal_exits_0_on_ctrl_c(start_daemon: Start) -> None:
    daemon = start_daemon(**QUIET)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    environment["TERM"] = "xterm-256color"
    command = [
        sys.executable,
        "-m",
        "jarvisd.cli",
        "--socket",
        str(daemon.socket),
        "top",
        "--interval",
        "0.2",
    ]
    top = subprocess.Popen(
        command, stdin=terminal, stdout=terminal, stderr=terminal, env=environment
    )
    os.close(terminal)
    screen = b""
    try:
        # Two frames drawn: the second poll's refresh went through.
        while screen.count(b"latency") < 2:
            chunk = os.read(controller, 65536)
            assert chunk, screen.decode(errors="replace")
            screen += chunk
        top.send_signal(signal.SIGINT)
        assert top.wait(30) == 0
        screen += _drain(controller)
    finally:
        if top.poll() is None:
            top.kill()
        os.close(controller)
    assert b"\x1b[?1049h" in screen and b"\x1b[?1049l" in screen  # alternate screen, restored
    assert b"Traceback" not in screen


@serial
def test_top_live_on_a_terminal_quits_on_q(start_daemon: Start) -> None:
    daemon = start_daemon(**QUIET)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    environment["TERM"] = "xterm-256color"
    command = [sys.executable, "-m", "jarvisd.cli", "--socket", str(daemon.socket), "top"]
    # The terminal is top's controlling terminal, as in a shell: its own session.
    top = subprocess.Popen(
        [*command, "--interval", "5"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=environment,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(terminal)
    screen = b""
    try:
        while b"quits" not in screen:  # the first frame, footer included
            chunk = os.read(controller, 65536)
            assert chunk, screen.decode(errors="replace")
            screen += chunk
        started = time.monotonic()
        os.write(controller, b"q")  # no Enter
        assert top.wait(30) == 0
        assert time.monotonic() - started < 5, "q waited for the next refresh"
        screen += _drain(controller)
    finally:
        if top.poll() is None:
            top.kill()
        os.close(controller)
    assert b"\x1b[?1049l" in screen and b"Traceback" not in screen


@serial
def test_tops_own_polling_is_not_in_its_request_panel(start_daemon: Start) -> None:
    daemon = start_daemon(**QUIET)
    before = daemon.client.get("/v1/metrics/requests", window=60)
    for _ in range(2):
        ok(ctl(daemon, "top", "--once", "--json"))
    snapshot = json.loads(ok(ctl(daemon, "top", "--once", "--json")))
    requests = snapshot["requests"]
    # Only the request above (and none of top's) was added to what others sent.
    assert requests["count"] == before["count"] + 1
    assert requests["monitor"]["count"] >= 2 * 5  # status, memory, alerts, latency, requests


def _drain(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO once the child has closed its side
            return out
        if not chunk:
            return out
        out += chunk


@serial
def test_observe_commands_import_nothing_heavy(start_daemon: Start) -> None:
    daemon = start_daemon(**QUIET)
    probe = (
        "import sys; from jarvisd.cli import main; s = sys.argv[1]; "
        "codes = [main(['--socket', s, *c.split()]) for c in ('alerts --json', 'memory', "
        "'gc --json', 'top --once', 'top --once --json')]; heavy = sorted(m for m in ('torch', "
        "'duckdb', 'sentence_transformers', 'numpy', 'pydantic', 'aiohttp', 'psutil') "
        "if m in sys.modules); print('HEAVY', heavy, codes, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(daemon.socket)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY [] [0, 0, 0, 0, 0]" in result.stderr
