"""Shared fixtures: config files in temp dirs and the real jarvisd as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from jarvisd.cli.client import ControlClient, DaemonUnreachable

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp dir: Unix socket paths must stay under ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="jv-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def merged(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`config` with each override section merged in (one level deep)."""
    out = dict(config)
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section] = {**out[section], **values}
        else:
            out[section] = values
    return out


def base_config(root: Path, **overrides: Any) -> dict[str, Any]:
    """A config that keeps everything inside `root` and the daemon quick to start."""
    config: dict[str, Any] = {
        "storage": {"database": str(root / "data" / "jarvis.duckdb")},
        "control": {"socket": str(root / "run" / "jarvisd.sock")},
        "metrics": {"listen": None},
        "logging": {"level": "info", "format": "json"},
        "gc": {"freeze_after_startup": False},
        # Lean by default: tests of indexing and search opt in to the model and the runs.
        "embedding": {"preload": False},
        "indexing": {"on_start": False, "watch": False},
        "schedule": {"index": None, "maintenance": None, "memory_sample": "10s"},
    }
    return merged(config, overrides)


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class DaemonProcess:
    """The real jarvisd, started as a subprocess on a config file."""

    def __init__(
        self,
        root: Path,
        config: dict[str, Any],
        env: dict[str, str] | None = None,
        user: int | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.config = config
        self.config_path = write_config(root / "jarvis.yaml", config)
        self.socket = Path(config["control"]["socket"])
        self.log_path = root / "daemon.log"
        self._log = self.log_path.open("wb")
        environment = dict(os.environ)
        for inherited in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JARVIS_SOCKET"):
            environment.pop(inherited, None)
        environment.update(env or {})
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "jarvisd", "--config", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=root,
            user=user,
        )
        self.client = ControlClient(self.socket, timeout=30)

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"jarvisd exited {self.process.returncode}:\n{self.output()}")
            try:
                status: dict[str, Any] = self.client.get("/v1/status")
                return status
            except DaemonUnreachable:
                time.sleep(0.05)
        raise AssertionError(f"jarvisd not ready in {timeout}s:\n{self.output()}")

    def rewrite(self, **overrides: Any) -> None:
        """Write the config file again, with these sections merged into the current one."""
        self.config = merged(self.config, overrides)
        write_config(self.config_path, self.config)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return int(self.process.returncode)

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines, optionally only those with event == name."""
        out = []
        for line in self.output().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and (name is None or record.get("event") == name):
                out.append(record)
        return out

    def wait_event(self, name: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {name!r} in {timeout}s:\n{self.output()}")


def ctl(
    daemon: DaemonProcess, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`jarvisctl --socket <daemon's> ARGS` as a real subprocess, wide enough for tables."""
    environment = {k: v for k, v in os.environ.items() if k != "JARVIS_SOCKET"}
    environment["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "jarvisd.cli", "--socket", str(daemon.socket), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )


@pytest.fixture
def start_daemon(short_tmp: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(
        config: dict[str, Any] | None = None,
        *,
        wait: bool = True,
        env: dict[str, str] | None = None,
        user: int | None = None,
        prefix: Sequence[str] = (),
        **overrides: Any,
    ) -> DaemonProcess:
        """Start jarvisd on `config`, or on base_config(tmp, **overrides); `prefix` runs it
        under a wrapper command (`unshare ... sh -c '...; exec "$@"' sh`)."""
        chosen = config or base_config(short_tmp, **overrides)
        daemon = DaemonProcess(short_tmp, chosen, env=env, user=user, prefix=prefix)
        started.append(daemon)
        if wait:
            daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
