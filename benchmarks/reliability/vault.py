"""The chaos, upgrades and storage sections: the watcher under vault chaos, a database
of the previous release, a full disk while indexing."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

from benchmarks.common import REPO
from benchmarks.reliability.harness import (
    EXAMPLE,
    Daemon,
    Reference,
    _events,
    base_config,
    compare,
    fingerprint,
    replicate,
)

# ---------------------------------------------------------------- vault chaos


def _watcher_quiet(daemon: Daemon, since: int, timeout: float = 900.0) -> int:
    """The id of the last run once a run after `since` ended and 1.5 s passed with none."""
    deadline = time.monotonic() + timeout
    still: float | None = None
    seen = since
    while time.monotonic() < deadline:
        state = daemon.client.get("/v1/index")
        run_id = int((state.get("last_run") or {}).get("id") or 0)
        if state["running"] or run_id == since:
            still = None
        elif run_id != seen or still is None:
            seen, still = run_id, time.monotonic()
        elif time.monotonic() - still > 1.5:
            return run_id
        time.sleep(0.1)
    raise RuntimeError(f"the watcher did not catch up:\n{daemon.log()[-3000:]}")


def rewrite_while_read(folder: Path, seconds: float, rng: random.Random) -> None:
    """For `seconds`, notes rewritten in place in two writes with a pause between (a
    reader may see half), one swapped for a FIFO and back, one grown past 5 MB and
    cut back to its size: files that change while the watcher's runs read them."""
    notes = sorted(folder.glob("*.md"))
    swapped, grown = notes[0], notes[1]
    size = grown.stat().st_size
    deadline = time.monotonic() + seconds
    round_ = 0
    while time.monotonic() < deadline:
        round_ += 1
        note = rng.choice(notes[2:])
        text = f"# Rewritten {round_}\n\n" + f"Round {round_} of {note.name}. " * 40
        with note.open("w", encoding="utf-8") as file:
            file.write(text[: len(text) // 2])
            file.flush()
            time.sleep(0.002)
            file.write(text[len(text) // 2 :])
        swapped.unlink()
        if round_ % 2:
            os.mkfifo(swapped)
        else:
            swapped.write_text(f"# Swapped {round_}\n\nBack as a note.\n", encoding="utf-8")
        with grown.open("r+b") as file:
            file.truncate(6_000_000 if round_ % 2 else size)
        time.sleep(0.01)
    if round_ % 2:  # end with every note a note
        swapped.unlink()
        swapped.write_text("# Swapped\n\nA note at the end.\n", encoding="utf-8")
        with grown.open("r+b") as file:
            file.truncate(size)


def chaos(work: Path, notes: int, edits: int, folder: int, seed: int) -> dict[str, Any]:
    """What tests/test_vault_chaos_daemon.py does, at larger sizes, timed per scenario."""
    rng = random.Random(seed)
    vault = work / "vault"
    total = replicate(vault, notes, EXAMPLE)
    moved = vault / "moved"
    moved.mkdir()
    for number in range(folder):
        (moved / f"m{number:04d}.md").write_text(f"# Moved {number}\n\nLinks [[Espresso]].\n")
    config = base_config(work, vault, indexing={"watch": True, "debounce": "200ms"})
    daemon = Daemon(work, config)
    daemon.start()
    since = _watcher_quiet(daemon, 0)
    timings: dict[str, float] = {}

    def step(name: str, action: Any) -> None:
        nonlocal since
        started = time.perf_counter()
        action()
        since = _watcher_quiet(daemon, since)
        timings[name] = round(time.perf_counter() - started, 2)

    targets = sorted(moved.glob("*.md"))

    def burst() -> None:
        for edit in range(edits):
            rng.choice(targets).write_text(f"# Edited\n\nEdit {edit}.\n")

    step("burst_of_edits", burst)
    step("folder_deleted", lambda: os.rename(moved, work / "aside"))
    step("folder_restored", lambda: os.rename(work / "aside", moved))
    step("folder_renamed", lambda: os.rename(moved, vault / "renamed"))
    step("changed_while_read", lambda: rewrite_while_read(vault / "renamed", 3.0, rng))

    def bad_files() -> None:
        os.mkfifo(vault / "fifo.md")
        os.symlink("self.md", vault / "self.md")
        with (vault / "huge.md").open("wb") as file:
            file.truncate(50_000_000)
        (vault / "binary.md").write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
        (vault / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
        (vault / "yaml.md").write_text("---\ntitle: [unclosed\n---\nBody\n")
        (vault / "nested.md").write_text("".join("  " * d + "- x\n" for d in range(400)))

    step("bad_files", bad_files)

    def gone_and_back() -> None:
        os.rename(vault, work / "gone")
        time.sleep(2.0)
        subprocess.run(["cp", "-a", str(work / "gone"), str(vault)], check=True)
        shutil.rmtree(work / "gone")

    step("vault_gone_and_back", gone_and_back)
    skipped = {str(e.get("path")): str(e.get("reason")) for e in _events(daemon, "index.skipped")}
    alive = daemon.process is not None and daemon.process.poll() is None
    daemon.stop()
    reference = Reference(work, config)
    try:
        reference.index()
        difference = compare(
            fingerprint(Path(config["storage"]["database"])), reference.fingerprint()
        )
    finally:
        reference.close()
    return {
        "notes": total + folder,
        "edits": edits,
        "folder_notes": folder,
        "seconds_until_caught_up": timings,
        "crashed": not alive,
        "skips_without_reason": sum(1 for reason in skipped.values() if not reason),
        "skipped": skipped,
        **difference,
        "index_matches_disk": not any(difference.values()),
    }


# ------------------------------------------------------------------ upgrades


PREVIOUS_RELEASE = "e413a49"


def upgrades(work: Path) -> dict[str, Any]:
    """Index the example vault with the previous release's code, open it with this one."""
    from tests.test_upgrades_daemon import INDEX_WITH_OLD_CODE

    old = work / "old"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", PREVIOUS_RELEASE, "jarvisd"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    database = work / "data" / "jarvis.duckdb"
    database.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": str(old)}
    subprocess.run(
        [sys.executable, "-c", INDEX_WITH_OLD_CODE, str(EXAMPLE), str(database), str(old)],
        capture_output=True,
        env=env,
        cwd=work,  # not the checkout: `-c` puts the current folder first on sys.path
        check=True,
    )
    config = base_config(work, EXAMPLE, indexing={"on_start": False})
    daemon = Daemon(work, config)
    started = time.perf_counter()
    daemon.start()
    ready = time.perf_counter() - started
    hits = daemon.client.get("/v1/search", q="sourdough starter", mode="keyword")["results"]
    daemon.stop()
    with duckdb.connect(str(database)) as db:
        db.execute("UPDATE schema_version SET version = version + 5")
        db.execute("CHECKPOINT")
    before = database.read_bytes()
    refused = subprocess.run(
        [sys.executable, "-m", "jarvisd", "--config", str(daemon.config_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return {
        "previous_release": PREVIOUS_RELEASE,
        "old_database_ready_seconds": round(ready, 2),
        "old_notes_found": "Baking/Sourdough.md" in [hit["path"] for hit in hits],
        "newer_schema_exit_code": refused.returncode,
        "newer_schema_message": refused.stderr.strip().splitlines()[-1][:300],
        "newer_schema_file_untouched": database.read_bytes() == before,
    }


# ------------------------------------------------------------------ storage


def storage(work: Path, notes: int) -> dict[str, Any]:
    """A full disk while indexing (a tmpfs in a private mount namespace), then space back."""
    from tests.test_storage_faults_daemon import fill, in_a_small_tmpfs

    vault = work / "vault"
    vault.mkdir()
    first = replicate(vault / "first", notes, EXAMPLE)
    data = work / "data"
    data.mkdir()
    config = base_config(work, vault)
    daemon = Daemon(work, config, prefix=tuple(in_a_small_tmpfs(data, "64m")))
    daemon.start()
    try:
        daemon.settle()
        inside = Path(f"/proc/{daemon.pid}/root") / str(data).lstrip("/")
        fill(inside / "filler")
        second = replicate(vault / "second", notes, EXAMPLE)
        daemon.client.post("/v1/index")
        time.sleep(0.5)
        failed = daemon.settle()["last_run"]
        kept = daemon.client.get("/v1/index")["index"]["notes"]
        (inside / "filler").unlink()
        started = time.perf_counter()
        daemon.client.post("/v1/index")
        time.sleep(0.5)
        resumed = daemon.settle()["last_run"]
        resume_seconds = time.perf_counter() - started
        after = daemon.client.get("/v1/index")["index"]["notes"]
        alive = daemon.process is not None and daemon.process.poll() is None
    finally:
        daemon.stop()
    return {
        "notes_before_full": first,
        "run_on_full_disk": failed["state"],
        "error": str(failed["error"])[:300],
        "indexed_notes_lost": first - min(first, kept),
        "run_after_space_returned": resumed["state"],
        "resume_seconds": round(resume_seconds, 1),
        "notes_after": after,
        "notes_expected": first + second,
        "crashed": not alive,
    }
