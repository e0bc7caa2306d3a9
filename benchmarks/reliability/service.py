"""The load and security sections: a soak of concurrent clients, the socket's modes and
uid check, the systemd units' exposure."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import REPO, percentiles
from benchmarks.reliability.harness import (
    EXAMPLE,
    NOBODY,
    Daemon,
    base_config,
    replicate,
)
from jarvisd.cli.client import ControlClient, DaemonError, DaemonUnreachable

# ------------------------------------------------------------------------ load


def load(
    work: Path,
    clients: int,
    minutes: float,
    seed: int,
    notes: int = 300,
    source: Path | None = None,
) -> dict[str, Any]:
    vault = work / "vault"
    replicate(vault, notes, source)
    config = base_config(
        work, vault, indexing={"on_start": True, "watch": True, "debounce": "500ms"}
    )
    daemon = Daemon(work, config)
    daemon.start()
    daemon.settle()
    process = psutil.Process(daemon.pid)
    files = sorted(vault.rglob("*.md"))
    titles = [path.stem for path in files[:200]]
    stop = threading.Event()
    lock = threading.Lock()
    errors: list[str] = []
    latencies: dict[int, list[float]] = {}
    samples: list[dict[str, float]] = []
    started = time.monotonic()

    def client_loop(index: int) -> None:
        rng = random.Random(seed + index)
        client = ControlClient(daemon.socket, timeout=120)
        while not stop.is_set():
            title = rng.choice(titles)
            choice = rng.random()
            begin = time.perf_counter()
            try:
                if choice < 0.6:
                    mode = rng.choice(["hybrid", "semantic", "keyword"])
                    client.get("/v1/search", q=f"{title} notes", mode=mode)
                elif choice < 0.75:
                    client.get("/v1/graph/backlinks", title=title)
                elif choice < 0.9:
                    client.get("/v1/notes", title=title)
                else:
                    client.get("/v1/status")
            except DaemonError as error:
                if error.status >= 500 or error.status == 429:
                    with lock:
                        errors.append(f"{error.status} {error.message[:120]}")
                # 404/409 for an ambiguous or missing title are answers, not errors
            except (DaemonUnreachable, OSError) as error:
                with lock:
                    errors.append(f"unreachable {error}")
            minute = int((time.monotonic() - started) // 60)
            with lock:
                latencies.setdefault(minute, []).append(time.perf_counter() - begin)

    def editor() -> None:
        rng = random.Random(seed)
        while not stop.wait(3.0):
            note = rng.choice(files)
            with note.open("a", encoding="utf-8") as file:
                file.write(f"\nload edit {rng.random():.6f}\n")

    def sampler() -> None:
        # Every 10 s; a soak shorter than a minute (--quick) still gets six samples.
        while not stop.wait(min(10.0, minutes * 10)):
            samples.append(
                {
                    "t": time.monotonic() - started,
                    "rss": process.memory_info().rss,
                    "fds": process.num_fds(),
                    "threads": process.num_threads(),
                }
            )

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    threads += [threading.Thread(target=editor), threading.Thread(target=sampler)]
    for thread in threads:
        thread.start()
    time.sleep(minutes * 60)
    stop.set()
    for thread in threads:
        thread.join()
    daemon.stop()
    later = [sample for sample in samples if sample["t"] >= min(60.0, minutes * 30)]
    first, last = (later[0], later[-1]) if later else ({}, {})
    return {
        "notes": len(files),
        "clients": clients,
        "minutes": minutes,
        "requests": sum(len(values) for values in latencies.values()),
        "errors": len(errors),
        "error_examples": errors[:5],
        "p99_ms_per_minute": {
            str(minute): round(percentiles(values)["p99"] * 1000, 1)
            for minute, values in sorted(latencies.items())
        },
        "rss_growth_percent": round(100 * (last["rss"] / first["rss"] - 1), 1) if later else None,
        "fds": [first.get("fds"), last.get("fds")],
        "threads": [first.get("threads"), last.get("threads")],
    }


# --------------------------------------------------------------------- security


def as_uid(uid: int, socket_path: Path) -> str:
    """Fork, drop to `uid` (a real other user), ask for /v1/status; what came back."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child runs only modules imported already
        os.close(read_end)
        try:
            os.setgid(uid)
            os.setuid(uid)
            ControlClient(socket_path, timeout=30).get("/v1/status")
            result = "served"
        except DaemonError as error:
            result = f"{error.status} {error.message}"
        except BaseException as error:
            result = f"{type(error).__name__}: {error}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def security(work: Path) -> dict[str, Any]:
    vault = work / "vault"
    shutil.copytree(EXAMPLE, vault)
    daemon = Daemon(work, base_config(work, vault, indexing={"on_start": False}))
    daemon.start()
    socket_mode = oct(daemon.socket.stat().st_mode & 0o777)
    directory_mode = oct(daemon.socket.parent.stat().st_mode & 0o777)
    other_uid = "skipped: not root"
    if os.geteuid() == 0:
        # Open the path's modes for this check only, so the uid check alone decides.
        for folder in (work, daemon.socket.parent):
            folder.chmod(0o755)
        daemon.socket.chmod(0o666)
        other_uid = as_uid(NOBODY, daemon.socket)
    daemon.stop()
    exposure: dict[str, Any] = {}
    if shutil.which("systemd-analyze"):
        for unit in ("jarvisd.service", "jarvisd@.service"):
            path = REPO / "packaging" / "systemd" / unit
            out = subprocess.run(
                ["systemd-analyze", "security", "--offline=true", str(path)],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            line = next((row for row in out.splitlines() if "Overall exposure" in row), "")
            exposure[unit] = line.split("level for")[-1].strip() if line else out[-200:]
    else:
        exposure["skipped"] = "systemd-analyze is not installed (Debian: apt install systemd)"
    return {
        "socket_mode": socket_mode,
        "socket_directory_mode": directory_mode,
        "other_uid_answer": other_uid,
        "systemd_exposure": exposure,
    }
