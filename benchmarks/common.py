"""Helpers shared by the benchmarks: a real daemon on a temp config, percentiles."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from jarvisd.cli.client import ControlClient, DaemonUnreachable

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[index]

    return {
        "n": len(ordered),
        "p50": rank(50),
        "p95": rank(95),
        "p99": rank(99),
        "min": ordered[0],
        "max": ordered[-1],
    }


@contextmanager
def work_directory(kept: Path | None, prefix: str) -> Iterator[Path]:
    """`kept` (created, left in place for the next run), or a temp dir removed after."""
    path = kept or Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    finally:
        if kept is None:
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_daemon(
    config: dict[str, Any], ready_timeout: float = 600.0, root: Path | None = None
) -> Iterator[tuple[ControlClient, subprocess.Popen[bytes], Path]]:
    """jarvisd on `config` (socket and database placed in a temp dir unless given)."""
    workdir = root or Path(tempfile.mkdtemp(prefix="jb-", dir="/tmp"))
    config = dict(config)
    config.setdefault("control", {}).setdefault("socket", str(workdir / "run" / "j.sock"))
    config.setdefault("storage", {}).setdefault("database", str(workdir / "db" / "j.duckdb"))
    config.setdefault("metrics", {"listen": None})
    config.setdefault("logging", {"format": "json", "level": "warning"})
    path = workdir / "jarvis.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    log = (workdir / "daemon.log").open("wb")
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JARVIS_SOCKET")}
    process = subprocess.Popen(
        [sys.executable, "-m", "jarvisd", "--config", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    client = ControlClient(Path(config["control"]["socket"]), timeout=600)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError((workdir / "daemon.log").read_text())
            try:
                client.get("/v1/status")
                break
            except DaemonUnreachable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield client, process, workdir
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        if root is None:
            shutil.rmtree(workdir, ignore_errors=True)
