"""Memory modes acting on the real daemon: MINIMAL unloads the model and defers indexing."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProcess, base_config

pytestmark = pytest.mark.serial
EXAMPLE = Path(__file__).resolve().parents[1] / "jarvisd" / "example_vault"
FORCE_MINIMAL = {"modes": {"full_min_available": "10TB", "lite_min_available": "9TB"}}
NORMAL = {"modes": {"full_min_available": "1KB", "lite_min_available": "1KB"}}


def until(daemon: DaemonProcess, test: Callable[[dict[str, Any]], bool],
          timeout: float = 120) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = daemon.client.get("/v1/status")
        if test(status):
            return status
        time.sleep(0.1)
    interesting = [
        e
        for e in daemon.events()
        if e["event"].startswith(("config", "memory", "embedding", "index"))
    ]
    raise AssertionError(f"never got there: {status}\n{interesting[-30:]}")


def rss(daemon: DaemonProcess) -> int:
    return int(daemon.client.post("/v1/metrics/sample")["rss"])


def test_minimal_unloads_the_model_and_defers_indexing(
    start_daemon: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    vault = short_tmp / "vault"
    shutil.copytree(EXAMPLE, vault)
    daemon = start_daemon(base_config(
        short_tmp, vaults=[{"name": "v", "path": str(vault)}], embedding={"preload": True},
        indexing={"on_start": True, "watch": False}, memory=NORMAL,
        schedule={"memory_sample": "200ms", "index": None, "maintenance": None},
    ))  # fmt: skip
    until(daemon, lambda s: s["embedding"]["loaded"] and (s.get("last_index_run") or {})
          .get("state") == "done" and s["memory_mode"] == "FULL")  # fmt: skip
    loaded_rss = rss(daemon)

    daemon.rewrite(memory=FORCE_MINIMAL)
    daemon.signal(signal.SIGHUP)
    status = until(daemon, lambda s: s["memory_mode"] == "MINIMAL" and not s["embedding"]["loaded"])
    assert "MINIMAL" in status["embedding"]["state"]
    changed = daemon.wait_event("memory.mode_changed")[-1]
    assert changed["reason"]
    daemon.wait_event("embedding.unloaded")
    time.sleep(0.5)
    assert rss(daemon) < loaded_rss, "unloading the model must give memory back"

    # Indexing is deferred, not run (it would only load the model right back).
    note = vault / "Home.md"
    note.write_text(note.read_text(encoding="utf-8") + "\nMore.\n", encoding="utf-8")
    daemon.client.post("/v1/index")
    deadline = time.monotonic() + 30
    while not daemon.events("index.deferred") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert daemon.events("index.deferred")
    assert not daemon.client.get("/v1/status")["embedding"]["loaded"]

    # Back to FULL: a catch-up run indexes the deferred change (loading the model).
    daemon.rewrite(memory=NORMAL)
    daemon.signal(signal.SIGHUP)
    status = until(daemon, lambda s: s["memory_mode"] == "FULL"
                   and (s.get("last_index_run") or {}).get("files_changed") == 1)  # fmt: skip
    assert status["last_index_run"]["trigger"] == "memory"
