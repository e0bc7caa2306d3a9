"""A config can never hang or wedge the running daemon (issue #9), with real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess
from test_config import billion_laughs

pytestmark = pytest.mark.serial
Start = Callable[..., DaemonProcess]


def file_events(path: Path, name: str) -> list[dict[str, object]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("event") == name:
            out.append(record)
    return out


def test_an_alias_bomb_by_sighup_fails_fast_and_sigterm_still_stops(
    start_daemon: Start,
) -> None:
    daemon = start_daemon(search={"default_limit": 9})
    daemon.config_path.write_text(billion_laughs(), encoding="utf-8")
    daemon.signal(signal.SIGHUP)
    [failed] = daemon.wait_event("config.reload_failed")
    assert "YAML aliases expand the document past" in str(failed["reason"])
    status = daemon.client.get("/v1/status")
    assert status["state"] == "running" and status["last_reload"]["ok"] is False
    assert daemon.client.get("/v1/config")["config"]["search"]["default_limit"] == 9
    # A stop right behind a reload is not queued behind it.
    daemon.signal(signal.SIGHUP)
    daemon.signal(signal.SIGTERM)
    assert daemon.process.wait(30) == 0
    assert daemon.events("daemon.stopped")


def test_a_fifo_in_place_of_the_config_is_refused_without_blocking(
    start_daemon: Start,
) -> None:
    daemon = start_daemon(search={"default_limit": 9})
    daemon.config_path.unlink()
    os.mkfifo(daemon.config_path)
    daemon.signal(signal.SIGHUP)  # nobody ever writes into the FIFO
    [failed] = daemon.wait_event("config.reload_failed")
    assert "a FIFO: the config must be a regular file" in str(failed["reason"])
    assert daemon.client.get("/v1/status")["state"] == "running"
    daemon.config_path.unlink()
    daemon.rewrite(search={"default_limit": 4})
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("config.reloaded")
    assert daemon.client.get("/v1/config")["config"]["search"]["default_limit"] == 4


def test_a_directory_as_log_file_is_refused_and_reloads_stay_alive(
    start_daemon: Start, short_tmp: Path
) -> None:
    log_file = short_tmp / "logs" / "jarvisd.log"
    daemon = start_daemon(logging={"level": "info", "format": "json", "file": str(log_file)})
    folder = short_tmp / "a-folder"
    folder.mkdir()
    daemon.rewrite(logging={"level": "info", "format": "json", "file": str(folder)},
                   search={"default_limit": 3})  # fmt: skip
    check = subprocess.run(
        [sys.executable, "-m", "jarvisd", "--check-config", str(daemon.config_path)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert check.returncode == 78 and "logging.file (line" in check.stderr
    assert "is a directory" in check.stderr
    daemon.signal(signal.SIGHUP)
    [failed] = daemon.wait_event("config.reload_failed")
    assert "is a directory" in str(failed["reason"])
    status = daemon.client.get("/v1/status")
    assert status["last_reload"]["ok"] is False
    config = daemon.client.get("/v1/config")["config"]
    assert config["search"]["default_limit"] == 10  # nothing of the file applied
    assert config["logging"]["file"] == str(log_file)
    # File logging goes on, and the next SIGHUP (reopen, then reload) works.
    daemon.rewrite(logging={"level": "info", "format": "json", "file": str(log_file)},
                   search={"default_limit": 3})  # fmt: skip
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("config.reloaded")
    assert daemon.client.get("/v1/config")["config"]["search"]["default_limit"] == 3
    deadline = time.monotonic() + 30
    while not file_events(log_file, "config.reloaded") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert file_events(log_file, "config.reload_failed")
    assert file_events(log_file, "config.reloaded")
