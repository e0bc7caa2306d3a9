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
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jarvisd.cli.client import DaemonError
from tests.conftest import DaemonProcess, base_config, ctl

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
    """Write zeros until the device is full (unbuffered: a buffered close raised ENOSPC)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(descriptor, b"\0" * 65536)
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(descriptor)


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


def notes_in(folder: Path, count: int, word: str) -> None:
    for number in range(count):
        (folder / f"{word}-{number:03d}.md").write_text(
            f"# {word.title()} {number}\n\nThis note is about {word} number {number}.\n" * 20
        )


def test_a_full_disk_during_indexing_loses_no_indexed_note_and_indexing_resumes(
    start_daemon: Start, short_tmp: Path
) -> None:
    vault = short_tmp / "vault"
    vault.mkdir()
    notes_in(vault, 20, "espresso")
    data = short_tmp / "data"
    data.mkdir()
    config = base_config(
        short_tmp,
        vaults=[{"name": "v", "path": str(vault)}],
        embedding={"quantize": "int8"},
        indexing={"on_start": True, "watch": False},
    )
    daemon = start_daemon(config, prefix=in_a_small_tmpfs(data, "48m"))
    settled(daemon)
    inside = Path(f"/proc/{daemon.process.pid}/root") / str(data).lstrip("/")
    filler = inside / "filler"
    fill(filler)

    notes_in(vault, 60, "teapot")  # new notes to write while the disk is full
    before = daemon.client.get("/v1/index")["last_run"]["id"]
    daemon.client.post("/v1/index", {})
    state = settled(daemon)
    while state["last_run"]["id"] == before:
        state = settled(daemon)
    run = state["last_run"]
    assert run["state"] == "failed", run
    assert "no space left" in str(run["error"]).lower(), run
    status = ctl(daemon, "status")
    assert daemon.process.poll() is None  # no crash, no restart loop
    assert status.returncode in (0, 1), status
    # Every note indexed before the disk filled is still there and served.
    hits = daemon.client.get("/v1/search", q="espresso number 7", mode="keyword", limit=50)
    assert "espresso-007.md" in [hit["path"] for hit in hits["results"]]
    assert daemon.client.get("/v1/index")["index"]["notes"] >= 20

    filler.unlink()  # space returns: the next run indexes what the full disk stopped
    daemon.client.post("/v1/index", {})
    state = settled(daemon)
    while state["last_run"]["state"] != "done":
        daemon.client.post("/v1/index", {})
        state = settled(daemon)
    assert daemon.client.get("/v1/index")["index"]["notes"] == 80
    hits = daemon.client.get("/v1/search", q="teapot number 59", mode="keyword", limit=80)
    assert "teapot-059.md" in [hit["path"] for hit in hits["results"]]


def test_rebuild_index_sets_the_database_aside_with_the_time_and_rebuilds_it(
    start_daemon: Start, short_tmp: Path
) -> None:
    vault = short_tmp / "vault"
    vault.mkdir()
    (vault / "espresso.md").write_text("# Espresso\n\nA ristretto is a short espresso.\n")
    config = base_config(
        short_tmp,
        vaults=[{"name": "v", "path": str(vault)}],
        embedding={"quantize": "int8"},
        indexing={"on_start": False, "watch": False},
    )
    daemon = start_daemon(config)
    daemon.client.post("/v1/index", {})
    settled(daemon)
    assert daemon.stop() == 0
    data = short_tmp / "data"
    old = (data / "jarvis.duckdb").read_bytes()

    # on_start is false: the rebuild runs because it was asked for, not as a catch-up.
    again = start_daemon(config, prefix=["sh", "-c", 'exec "$@" --rebuild-index', "sh"])
    settled(again)
    kept = sorted(data.glob("jarvis.duckdb.broken-*"))
    assert kept, sorted(path.name for path in data.iterdir())
    assert kept[0].read_bytes() == old  # kept as it was, named with the UTC time
    assert again.events("store.set_aside")[0]["reason"].startswith("rebuild requested")
    hits = again.client.get("/v1/search", q="ristretto", mode="keyword")["results"]
    assert [hit["path"] for hit in hits] == ["espresso.md"]
    shown = ctl(again, "status")
    assert "recovered at" in shown.stdout, shown


def test_the_wal_removed_while_the_daemon_is_down_is_caught_up_from_the_vault(
    start_daemon: Start, short_tmp: Path
) -> None:
    vault = short_tmp / "vault"
    vault.mkdir()
    (vault / "espresso.md").write_text("# Espresso\n\nA ristretto is a short espresso.\n")
    config = base_config(
        short_tmp,
        vaults=[{"name": "v", "path": str(vault)}],
        embedding={"quantize": "int8"},
        indexing={"on_start": True, "watch": False},
    )
    daemon = start_daemon(config)
    settled(daemon)
    (vault / "tea.md").write_text("# Tea\n\nA gaiwan holds green tea.\n")
    daemon.client.post("/v1/index", {})
    while daemon.client.get("/v1/index")["index"]["notes"] < 2:
        time.sleep(0.1)
    daemon.signal(signal.SIGKILL)
    daemon.process.wait()
    wal = short_tmp / "data" / "jarvis.duckdb.wal"
    had_wal = wal.exists()
    wal.unlink(missing_ok=True)

    again = start_daemon(config)
    settled(again)
    # What the WAL held is lost from the file, not from the index: the catch-up run
    # compares the vault with what the database holds and writes the difference.
    hits = again.client.get("/v1/search", q="gaiwan", mode="keyword")["results"]
    assert [hit["path"] for hit in hits] == ["tea.md"], (had_wal, again.output()[-2000:])
    assert again.client.get("/v1/index")["index"]["notes"] == 2


def test_a_database_folder_turned_read_only_is_named_and_indexing_resumes_once_writable(
    start_daemon: Start, short_tmp: Path
) -> None:
    """Root ignores file modes, so the tmpfs is remounted read-only inside the namespace."""
    if shutil.which("nsenter") is None:
        pytest.skip("nsenter(1) is needed to remount the daemon's tmpfs read-only")
    vault = short_tmp / "vault"
    vault.mkdir()
    notes_in(vault, 5, "espresso")
    data = short_tmp / "data"
    data.mkdir()
    config = base_config(
        short_tmp,
        vaults=[{"name": "v", "path": str(vault)}],
        embedding={"quantize": "int8"},
        indexing={"on_start": True, "watch": False},
    )
    daemon = start_daemon(config, prefix=in_a_small_tmpfs(data, "48m"))
    settled(daemon)

    def inside_namespace(script: str) -> None:
        command = ["nsenter", "-t", str(daemon.process.pid), "-m", "sh", "-c", script]
        subprocess.run(command, check=True, capture_output=True)

    # `remount,ro` of the tmpfs itself is refused (EBUSY) while DuckDB holds the file
    # open for writing; a read-only bind mount over the folder is not, and refuses
    # every new file (the WAL, a checkpoint's) with EROFS, as a failing drive would.
    inside_namespace(f'mount --bind "{data}" "{data}" && mount -o remount,bind,ro "{data}"')
    notes_in(vault, 5, "teapot")
    with pytest.raises(DaemonError) as caught:
        daemon.client.post("/v1/maintenance", {})
    assert caught.value.status == 503, caught.value
    assert caught.value.code == "storage_read_only"
    assert "is read-only" in str(caught.value) and "remount it read-write" in str(caught.value)
    before = daemon.client.get("/v1/index")["last_run"]["id"]
    daemon.client.post("/v1/index", {})
    state = settled(daemon)
    while state["last_run"]["id"] == before:
        state = settled(daemon)
    assert state["last_run"]["state"] == "failed"
    assert "read-only" in str(state["last_run"]["error"]).lower(), state["last_run"]
    shown = ctl(daemon, "status")
    assert "run error" in shown.stdout and "read-only" in shown.stdout.lower(), shown.stdout
    assert daemon.process.poll() is None
    # The failed checkpoint (it could not remove the WAL) made DuckDB 1.5.5 invalidate
    # the database: queries fail until a restart, and status says so and what to do.
    with pytest.raises(DaemonError):
        daemon.client.get("/v1/search", q="espresso number 3", mode="keyword", limit=20)
    shown = ctl(daemon, "status")
    assert "UNHEALTHY" in shown.stdout and "restart jarvisd" in shown.stdout, shown.stdout
    assert len(daemon.events("store.invalidated")) == 1
    assert not list(data.glob("*.broken-*"))  # not damage: nothing set aside

    inside_namespace(f'umount "{data}"')  # writable again
    assert daemon.stop() == 0
    # The tmpfs lived in the daemon's namespace, so the restart starts on the host's
    # empty folder: this checks that the restart the message asks for serves again.
    again = start_daemon(config)
    settled(again)
    assert again.client.get("/v1/index")["index"]["notes"] == 10


def test_a_start_on_a_read_only_database_folder_exits_73_saying_so(
    start_daemon: Start, short_tmp: Path
) -> None:
    data = short_tmp / "data"
    data.mkdir()
    script = (
        f'mount -t tmpfs -o size=8m tmpfs "{data}" && mount --bind "{data}" "{data}" '
        f'&& mount -o remount,bind,ro "{data}" && exec "$@"'
    )
    prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"]
    daemon = start_daemon(base_config(short_tmp), wait=False, prefix=prefix)
    # 73 is in the units' RestartPreventExitStatus: systemd does not start it again.
    assert daemon.process.wait(120) == 73, daemon.output()[-2000:]
    assert "read-only file system" in daemon.output().lower(), daemon.output()[-2000:]
    assert len(daemon.events("daemon.cannot_start")) == 1
