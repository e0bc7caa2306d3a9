"""The crash section: kill -9 at a random moment, restart, compare with a clean index.

Every daemon life has the HNSW vector table (`storage.hnsw`), built once on the
daemon's copy of the clean index before the runs. A table is built from every
chunk (21,996 here): the first full run (36.6 min at load 8-12) switched HNSW
on for one run in five and every HNSW run, and each of those restarts built
the table whole whatever the edits (its catch-ups of 78-217 s; the others
took 2-36 s); HNSW off in the next life dropped it again. An HNSW run changes
the table's `m` (8 <-> 12, which the daemon answers with a rebuild), waits
for the daemon's `store.vector_index_building` and kills it inside the
build; its restart builds the table again, which is what such a catch-up
costs. The builds use `ef_construction` 64: 6-8 s for 22k chunks on 2 cores,
against 31 s at the defaults (m 16, 200); a kill inside one is the same kill.

The daemon that caught up is the next one killed (when neither run puts a
Neo4j stub in its config): its model is loaded, as a fresh life's is before
its clock starts, and a fresh life cost a start and a model load, 5-7 s on 2
cores, each run. Its index is checked on a copy of its files while it idles.
After the change: 25 runs at 2,076 notes in 8.2 min at load 5.4 falling to 1.1
(604 CPU-seconds; the clean index 168 s of it), catch-up p50 6.6 s, at most
11.0 s (an HNSW run's), against 36.6 min and 217 s before.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import percentiles
from benchmarks.reliability import neo4j_stub as crash_neo4j
from benchmarks.reliability.harness import (
    Daemon,
    Reference,
    _quietly,
    base_config,
    compare,
    fingerprint,
    replicate,
    vector_table_check,
)
from jarvisd.config import StorageConfig
from jarvisd.graph.sync import read_projection
from jarvisd.store import Store
from jarvisd.store.connection import open_database

# The HNSW table's settings in every life; an HNSW run flips `m` (see the docstring).
HNSW = {"enabled": True, "min_chunks": 0, "ef_construction": 64}
M_VALUES = (8, 12)


def edit_some(vault: Path, rng: random.Random, count: int, run: int) -> list[str]:
    """Append a line to `count` notes, add a link to one, delete one, create one."""
    notes = sorted(vault.rglob("*.md"))
    chosen = rng.sample(notes, min(count, len(notes)))
    for note in chosen:
        with note.open("a", encoding="utf-8") as file:
            file.write(f"\nCrash run {run} touched this note ({rng.random():.6f}).\n")
    with chosen[0].open("a", encoding="utf-8") as file:
        file.write(f"\nSee [[{notes[rng.randrange(len(notes))].stem}]].\n")
    victim = notes[rng.randrange(len(notes))]
    if victim not in chosen:
        victim.unlink()
    (vault / f"new-{run}.md").write_text(f"# Run {run}\n\nA note made in run {run}.\n")
    return [str(path.relative_to(vault)) for path in chosen]


def crash_runs(
    work: Path,
    notes: int,
    runs: int,
    seed: int,
    source: Path | None = None,
    kinds: list[str] | None = None,
) -> dict[str, Any]:
    rng = random.Random(seed)
    vault = work / "vault"
    total = replicate(vault, notes, source)
    m = M_VALUES[0]
    config = base_config(work, vault, storage={"hnsw": {**HNSW, "m": m}})
    embedding, indexing = config["embedding"], config["indexing"]
    database = Path(config["storage"]["database"])
    daemon = Daemon(work, config)
    reference = Reference(work, config)
    started = time.perf_counter()
    reference_seconds = reference.index()
    # The daemon starts on a copy of the clean index: building its own was the same
    # clean index a second time (a model load and every note written again).
    reference.copy(database)
    hnsw_seconds = build_vector_table(database, config, reference.dimension)
    first = {
        "notes": total,
        "clean_index_seconds": round(reference_seconds, 1),
        "hnsw_build_seconds": round(hnsw_seconds, 1),
    }
    outcomes: list[dict[str, Any]] = []
    kinds = list(kinds or ["edit", "full", "maintenance", "reload", "hnsw", "neo4j"])
    if "neo4j" in kinds and not crash_neo4j.available():
        kinds.remove("neo4j")
        first["neo4j"] = "skipped: boltkit's stub is not installed (make boltkit)"
    server = crash_neo4j.StubServer(work, rng)
    # Fewer runs than kinds (--quick): as many different kinds as runs.
    picked = rng.sample(kinds, runs) if runs < len(kinds) else []
    live: dict[str, Any] | None = None  # the config of the daemon left running, if any
    try:
        for run in range(runs):
            kind = kinds[run % len(kinds)] if runs >= len(kinds) else picked[run]
            phases: dict[str, float] = {}
            clock = time.perf_counter()
            if kind == "hnsw":  # a new m: the doomed life's run rebuilds the table
                m = M_VALUES[1] if m == M_VALUES[0] else M_VALUES[0]
            storage = {**config["storage"], "hnsw": {**HNSW, "m": m}}
            # Every life loads the model as it starts (the catch-up needs it), so a life
            # kept for the next run is killed with its model loaded, as a fresh one is.
            life = {**config, "storage": storage, "embedding": {**embedding, "preload": True}}
            # The daemon that caught up last is the next one killed, unless the run needs
            # a Neo4j stub in its config or left one there: its model is loaded and its
            # index checked, and a fresh life would cost a start and a model load
            # (6-8 s on 2 idle cores) for nothing the kill tests.
            reuse = live is not None and kind != "neo4j" and "graph" not in live
            if live is not None and not reuse:
                daemon.stop()
                live = None
            edit_some(vault, rng, 12, run)
            reference_seconds = reference.index()
            clock = _phase(phases, "reference", clock)
            projections = [read_projection(reference.store, "v")] if kind == "neo4j" else []
            if projections:
                life["graph"] = crash_neo4j.graph_section(server.open(projections, stall=True))
            since = daemon.log_size()
            if not reuse:
                # Not on_start: the run starts when the kill's clock does. The model is
                # loaded first, so the kill lands in the run's work: loading took 13 s
                # here (load 15 on 2 cores), longer than most windows.
                daemon.write({**life, "indexing": {**indexing, "on_start": False}})
                daemon.start()
            if kind != "reload":
                daemon.wait_for_model()
            clock = _phase(phases, "doomed_start", clock)
            window = max(0.5, reference_seconds * (3.0 if kind == "full" else 1.5))
            delay = rng.uniform(0.05, window)
            begun = time.perf_counter()
            if kind == "hnsw":  # killed inside the build, once the daemon says it began
                if reuse:  # the new m by reload: its run indexes the edits and rebuilds
                    daemon.write(life)
                    os.kill(daemon.pid, signal.SIGHUP)
                else:
                    daemon.client.post("/v1/index")
                daemon.wait_for_event("store.vector_index_building", since)
                delay = time.perf_counter() - begun + rng.uniform(0.05, 0.9 * hnsw_seconds)
            elif kind in ("edit", "neo4j"):
                daemon.client.post("/v1/index")
            elif kind == "full":
                daemon.client.post("/v1/index", full=1)
            elif kind == "maintenance":
                daemon.client.post("/v1/index")
                delay = rng.uniform(0.05, 2.0)
                threading.Thread(
                    target=_quietly, args=(daemon.client.post, "/v1/maintenance"), daemon=True
                ).start()
            else:
                os.kill(daemon.pid, signal.SIGHUP)
                delay = rng.uniform(0.05, 0.3)
            if kind == "neo4j":  # killed once the stub holds the sync at its random point
                stalled = server.stalled(timeout=600)
                delay = time.perf_counter() - begun
            else:
                time.sleep(max(0.0, begun + delay - time.perf_counter()))
            daemon.kill()
            clock = _phase(phases, "until_killed", clock)
            if projections:
                server.close()
                life["graph"] = crash_neo4j.graph_section(server.open(projections, stall=False))
            daemon.write(life)  # catch up on start
            restart_log = daemon.log_size()
            restart = time.perf_counter()
            daemon.start()
            live = life
            daemon.settle()
            synced: dict[str, Any] = {}
            if projections:
                synced = _graph_synced(daemon)
            catch_up = time.perf_counter() - restart
            clock = _phase(phases, "catch_up", clock)
            status = daemon.client.get("/v1/status")
            if projections:
                daemon.stop()  # the stub's script ends with the connection
                live = None
                synced["rest_of_sync_played"] = server.close()
                synced["stalled"] = stalled
                if not synced["rest_of_sync_played"]:
                    synced["stub_log"] = server.log_tail()
            # The daemon is idle (settled, nothing scheduled): its files hold what it
            # committed, and a copy of them opens with the WAL replayed.
            copy = copy_database(database, work / "check.duckdb")
            difference = compare(fingerprint(copy), reference.fingerprint())
            vectors = vector_table_check(copy, m, HNSW["ef_construction"])
            graph_ok = not projections or (
                synced.get("ok") is True and synced["rest_of_sync_played"] and stalled
            )
            _phase(phases, "check", clock)
            outcomes.append(
                {
                    "run": run,
                    "kind": kind,
                    "killed_after_seconds": round(delay, 2),
                    "catch_up_seconds": round(catch_up, 1),
                    "catch_up_work": _catch_up_work(daemon, restart_log),
                    "kept_life": reuse,
                    "state": status.get("state"),
                    **difference,
                    "hnsw": vectors,
                    **({"graph": synced} if synced else {}),
                    "phases": phases,
                    "survived": status.get("state") == "running"
                    and not any(difference.values())
                    and vectors["ok"]
                    and graph_ok,
                }
            )
            print(json.dumps(outcomes[-1]), file=sys.stderr, flush=True)
    finally:
        daemon.stop()
        reference.close()
    survived = sum(1 for outcome in outcomes if outcome["survived"])
    return {
        **first,
        "runs": len(outcomes),
        "survived": survived,
        "notes_lost": sum(outcome["notes_lost"] for outcome in outcomes),
        "duplicates": sum(outcome["duplicates"] for outcome in outcomes),
        "catch_up_seconds": percentiles([outcome["catch_up_seconds"] for outcome in outcomes]),
        "failed_runs": [outcome for outcome in outcomes if not outcome["survived"]],
        "seconds": round(time.perf_counter() - started, 1),
    }


def copy_database(database: Path, target: Path) -> Path:
    """`database` and its WAL copied to `target` (while the daemon keeps them open, idle)
    and checkpointed there, so that read-only connections open it (one does not replay
    a WAL: it writes the file)."""
    for suffix in ("", ".wal"):
        source, copy = Path(f"{database}{suffix}"), Path(f"{target}{suffix}")
        copy.unlink(missing_ok=True)
        if source.exists():
            shutil.copyfile(source, copy)
    connection = open_database(target, StorageConfig())  # vss: the WAL may touch HNSW
    try:
        connection.execute("CHECKPOINT")
    finally:
        connection.close()
    return target


def build_vector_table(database: Path, config: dict[str, Any], dimension: int) -> float:
    """The HNSW table built on the daemon's copy, as its first finalize would; seconds."""
    storage = StorageConfig.model_validate(config["storage"])
    store = Store(database, storage, dimension)
    try:
        started = time.perf_counter()
        assert store.ensure_vector_index()
        return time.perf_counter() - started
    finally:
        store.close()


def _phase(phases: dict[str, float], name: str, since: float) -> float:
    now = time.perf_counter()
    phases[name] = round(now - since, 1)
    return now


def _catch_up_work(daemon: Daemon, since: int) -> dict[str, Any]:
    """What the restarted daemon did: its runs' encoded chunks and written notes, and
    the HNSW tables it built (a catch-up that is slow does more work than the edits)."""
    runs = daemon.events("index.finished", since)
    return {
        "runs": len(runs),
        "files_changed": sum(int(run.get("files_changed") or 0) for run in runs),
        "chunks_encoded": sum(int(run.get("chunks_encoded") or 0) for run in runs),
        "hnsw_builds": len(daemon.events("store.vector_index_building", since)),
    }


def _graph_synced(daemon: Daemon, timeout: float = 600.0) -> dict[str, Any]:
    """The restarted daemon's sync (it syncs after its first run): its last_sync."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = daemon.client.get("/v1/graph").get("last_sync")
        if last:
            return {"ok": last.get("ok"), "notes": last.get("notes"), "error": last.get("error")}
        time.sleep(0.2)
    return {"ok": False, "error": f"no sync in {timeout:.0f} s"}
