"""The database on a full disk, with the real daemon in a mount namespace of its own.

The daemon's data folder is a small tmpfs mounted in a private mount namespace
(`unshare -m`, so nothing leaks to the host); the test fills it through
/proc/PID/root, which shows that namespace's mounts. Found by fault injection:
maintenance on a full disk answered a generic 500 `internal`.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jarvisd.cli.client import DaemonError
from tests.conftest import DaemonProcess, base_config

pytestmark = [
    pytest.mark.serial,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None,
        reason="mounting a tmpfs in a private mount namespace needs root and unshare(1)",
    ),
]

Start = Callable[..., DaemonProcess]


def in_a_small_tmpfs(folder: Path, size: str) -> list[str]:
    """A command prefix: a private mount namespace with `folder` a tmpfs of `size`."""
    script = f'mount -t tmpfs -o size={size},mode=0700 tmpfs "{folder}" && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"]


def fill(path: Path) -> None:
    with path.open("wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC


def settled(daemon: DaemonProcess, timeout: float = 180.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state: dict[str, object] = daemon.client.get("/v1/index")
        if not state["running"] and state.get("last_run"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"indexing did not settle:\n{daemon.output()[-3000:]}")


def test_maintenance_on_a_full_disk_is_a_507_naming_it_and_works_once_space_returns(
    start_daemon: Start, short_tmp: Path
) -> None:
    vault = short_tmp / "vault"
    vault.mkdir()
    (vault / "espresso.md").write_text("# Espresso\n\nA ristretto is a short espresso.\n")
    (vault / "tea.md").write_text("# Tea\n\nGreen tea steeps at eighty degrees.\n")
    data = short_tmp / "data"
    data.mkdir()
    config = base_config(
        short_tmp,
        vaults=[{"name": "v", "path": str(vault)}],
        indexing={"on_start": True, "watch": False},
    )
    daemon = start_daemon(config, prefix=in_a_small_tmpfs(data, "48m"))
    settled(daemon)
    inside = Path(f"/proc/{daemon.process.pid}/root") / str(data).lstrip("/")
    assert (inside / "jarvis.duckdb").is_file()
    assert not (data / "jarvis.duckdb").exists()  # the tmpfs is the daemon's alone
    filler = inside / "filler"
    fill(filler)

    with pytest.raises(DaemonError) as caught:
        daemon.client.post("/v1/maintenance", {})
    assert caught.value.status == 507, caught.value
    assert caught.value.code == "storage_full"
    assert "maintenance stopped: no space left on the device holding" in str(caught.value)
    assert "Free some space and run it again" in str(caught.value)
    # The failed CHECKPOINT invalidated DuckDB's instance (a fatal error in 1.5.5); the
    # store opened the intact files again, nothing was set aside or rebuilt.
    reopened = daemon.wait_event("store.reopened")
    assert "no space left on the device" in reopened[0]["reason"]
    assert not daemon.events("store.recovered")
    # What was indexed before is intact and served.
    hits = daemon.client.get("/v1/search", q="ristretto", mode="keyword")
    assert [hit["path"] for hit in hits["results"]] == ["espresso.md"]

    filler.unlink()
    report = daemon.client.post("/v1/maintenance", {})
    assert [step["step"] for step in report["steps"]][-1] == "checkpoint"
    assert daemon.client.get("/v1/status")["state"] == "running"
