"""Indexing through the real daemon: jarvisctl index, the watcher, kill -9, maintenance."""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import SHARED_DATA, DaemonProcess, base_config, ctl

from jarvisd.cli.client import DaemonUnreachable

pytestmark = pytest.mark.serial
Start = Callable[..., DaemonProcess]
EXAMPLE = Path(__file__).resolve().parents[1] / "jarvisd" / "example_vault"
OBSIDIAN_HELP = SHARED_DATA / "obsidian-help"


def wait_idle(daemon: DaemonProcess, runs: int = 1, timeout: float = 600) -> dict[str, Any]:
    """The index state once at least `runs` runs finished and none is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state: dict[str, Any] = daemon.client.get("/v1/index")
        last = state.get("last_run") or {}
        if not state["running"] and last.get("id", 0) >= runs:
            return state
        time.sleep(0.1)
    raise AssertionError(f"indexing did not settle:\n{daemon.output()[-3000:]}")


def vault_config(root: Path, vault: Path, **overrides: Any) -> dict[str, Any]:
    return base_config(
        root,
        vaults=[{"name": "v", "path": str(vault)}],
        embedding={"preload": True},
        **overrides,
    )


@pytest.mark.heavy
@pytest.mark.skipif(not OBSIDIAN_HELP.is_dir(), reason=f"{OBSIDIAN_HELP} is absent")
# 173 real notes indexed from scratch: ~60 s on a quiet 2-core machine, past 300 s on a
# loaded one (seen at load 14); a generous limit keeps a busy CI from failing on time.
@pytest.mark.timeout(900)
def test_obsidian_help_vault_through_jarvisctl(start_daemon: Start, short_tmp: Path) -> None:
    daemon = start_daemon(vault_config(short_tmp, OBSIDIAN_HELP))
    result = ctl(daemon, "index", "--wait", "--json", timeout=900)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["type"] == "done"
    progress = [event for event in events if event["type"] == "progress"]
    # Phases in their order (the model may still be loading from the preload).
    order = ["scanning", "loading model", "encoding", "finalizing"]
    seen = [order.index(event["phase"]) for event in progress]
    assert seen == sorted(seen) and "encoding" in {event["phase"] for event in progress}
    assert all(
        event["chunks_per_second"] is None and event["eta_seconds"] is None
        for event in progress
        if event["phase"] == "loading model"
    )
    assert any(event["eta_seconds"] is not None for event in progress)
    run = events[-1]["run"]
    assert run["state"] == "done" and run["files_seen"] == 173
    status = json.loads(ctl(daemon, "status", "--json").stdout)
    index = status["index"]
    assert index["notes"] == 173
    assert {"notes", "chunks", "links", "unresolved_links"} <= index.keys()
    resolved = index["note_links"] - index["unresolved_links"]
    assert resolved >= 1400, index
    assert status["last_index_run"]["files_seen"] == 173
    readable = ctl(daemon, "index", "--wait", timeout=900)
    assert readable.returncode == 0 and "unchanged" in readable.stdout
    scrape = daemon.client.get("/v1/status")
    assert scrape["last_index_run"]["files_unchanged"] == 173


def test_watcher_reflects_edits_deletes_and_renames(start_daemon: Start, short_tmp: Path) -> None:
    vault = short_tmp / "vault"
    shutil.copytree(EXAMPLE, vault)
    daemon = start_daemon(
        vault_config(
            short_tmp, vault, indexing={"on_start": True, "watch": True, "debounce": "200ms"}
        )
    )
    first = wait_idle(daemon)
    notes = first["index"]["notes"]
    note = next(vault.rglob("*.md"))
    note.write_text(note.read_text(encoding="utf-8") + "\n\nA new line about cardamom.\n",
                    encoding="utf-8")  # fmt: skip
    edited = wait_for_run(daemon, lambda run: run["files_changed"] == 1)
    assert edited["trigger"] in {"watch", "coalesced"}
    note.unlink()
    wait_for_run(daemon, lambda run: run["files_deleted"] == 1)
    assert daemon.client.get("/v1/index")["index"]["notes"] == notes - 1
    other = next(vault.rglob("*.md"))
    other.rename(other.with_name("Moved here.md"))
    wait_for_run(daemon, lambda run: run["files_renamed"] == 1 and run["chunks_encoded"] == 0)


def wait_for_run(daemon: DaemonProcess, test: Callable[[dict[str, Any]], bool],
                 timeout: float = 60) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = daemon.client.get("/v1/index")
        last = state.get("last_run")
        if last and not state["running"] and test(last):
            return dict(last)
        time.sleep(0.1)
    raise AssertionError(f"no such run: {daemon.client.get('/v1/index')}")


def make_crash_vault(root: Path) -> Path:
    vault = root / "vault"
    shutil.copytree(EXAMPLE, vault)
    rng = random.Random(7)
    words = ("grind", "burr", "crema", "levain", "crumb", "proof", "shot", "ratio", "roast",
             "bloom", "kettle", "flour", "oven", "crust", "starter", "tamp")  # fmt: skip
    for number in range(40):
        body = "\n\n".join(
            f"## Section {s}\n\n" + " ".join(rng.choice(words) for _ in range(120))
            for s in range(3)
        )
        links = f"See [[Note {number - 1}]] and [[Espresso]]." if number else ""
        (vault / "Generated").mkdir(exist_ok=True)
        (vault / "Generated" / f"Note {number}.md").write_text(
            f"# Note {number}\n\n{links}\n\n{body}\n", encoding="utf-8"
        )
    return vault


def snapshot(database: Path) -> dict[str, Any]:
    with duckdb.connect(str(database), read_only=True) as connection:
        notes = connection.execute(
            "SELECT n.path, n.content_hash, count(c.id) FROM notes n "
            "LEFT JOIN chunks c ON c.note_id = n.id GROUP BY ALL ORDER BY n.path"
        ).fetchall()
        links = connection.execute(
            "SELECT n.path, l.key, t.path FROM links l JOIN notes n ON n.id = l.note_id "
            "LEFT JOIN notes t ON t.id = l.target_note_id ORDER BY ALL"
        ).fetchall()
        chunks = connection.execute(
            "SELECT n.path, c.ordinal, c.text FROM chunks c JOIN notes n ON n.id = c.note_id "
            "ORDER BY ALL"
        ).fetchall()
        # BM25 by note path and chunk position (ids differ between two histories).
        postings = connection.execute(
            "SELECT n.path, c.ordinal, t.term, p.tf FROM bm25_postings p "
            "JOIN bm25_terms t USING (term_id) JOIN chunks c ON c.id = p.chunk_id "
            "JOIN notes n ON n.id = c.note_id ORDER BY ALL"
        ).fetchall()
        frequencies = connection.execute(
            "SELECT term, df FROM bm25_terms WHERE df <> 0 ORDER BY ALL"
        ).fetchall()
        lengths = connection.execute(
            "SELECT n.path, c.ordinal, d.length FROM bm25_docs d "
            "JOIN chunks c ON c.id = d.chunk_id JOIN notes n ON n.id = c.note_id ORDER BY ALL"
        ).fetchall()
        stats = connection.execute("SELECT documents, total_length FROM bm25_stats").fetchall()
    bm25 = {"postings": postings, "df": frequencies, "lengths": lengths, "stats": stats}
    return {"notes": notes, "links": links, "chunks": chunks, "bm25": bm25}


@pytest.mark.heavy
def test_kill_9_mid_index_then_restart_equals_a_clean_index(
    start_daemon: Start, short_tmp: Path
) -> None:
    vault = make_crash_vault(short_tmp)
    config = vault_config(short_tmp, vault, indexing={"on_start": True, "watch": False})
    rng = random.Random()
    for _attempt in range(3):
        daemon = start_daemon(config)
        time.sleep(rng.uniform(0.2, 5.0))
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(30)
    survivor = start_daemon(config)
    wait_idle(survivor)
    assert survivor.stop() == 0
    clean_root = short_tmp / "clean"
    clean_root.mkdir()
    clean = start_daemon(vault_config(clean_root, vault,
                                      indexing={"on_start": True, "watch": False}))  # fmt: skip
    wait_idle(clean)
    assert clean.stop() == 0
    recovered = snapshot(Path(config["storage"]["database"]))
    reference = snapshot(clean_root / "data" / "jarvis.duckdb")
    assert recovered["notes"] == reference["notes"]
    assert recovered["links"] == reference["links"]
    assert recovered["chunks"] == reference["chunks"]
    assert recovered["bm25"] == reference["bm25"]  # in each note's transaction: never behind
    assert recovered["bm25"]["postings"]


def test_maintenance_waits_for_an_indexing_run(start_daemon: Start, short_tmp: Path) -> None:
    vault = short_tmp / "vault"
    shutil.copytree(EXAMPLE, vault)
    daemon = start_daemon(vault_config(short_tmp, vault))
    daemon.client.post("/v1/index", full=1)
    result = ctl(daemon, "maintenance", "--json")
    assert result.returncode == 0, result.stderr
    steps = [step["step"] for step in json.loads(result.stdout)["steps"]]
    assert steps[0] == "analyze" and steps[-1] == "checkpoint", steps
    # maintenance ran after the run: the run had finished when maintenance answered
    state = daemon.client.get("/v1/index")
    assert not state["running"] and state["last_run"]["state"] == "done"
    started = [e["timestamp"] for e in daemon.events("maintenance.finished")]
    finished = [e["timestamp"] for e in daemon.events("index.finished")]
    assert started and finished and min(finished) <= started[-1]
    with pytest.raises(DaemonUnreachable):
        daemon.stop()
        daemon.client.get("/v1/status")
