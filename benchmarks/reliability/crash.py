"""The crash section: kill -9 at a random moment, restart, compare with a clean index."""

from __future__ import annotations

import json
import os
import random
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
)
from jarvisd.graph.sync import read_projection


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
    hnsw_every = 5  # every fifth run builds the HNSW copy at finalize
    config = base_config(work, vault)
    daemon = Daemon(work, config)
    reference = Reference(work, config)
    started = time.perf_counter()
    reference_seconds = reference.index()
    # The daemon starts on a copy of the clean index: building its own was the same
    # clean index a second time (a model load and every note written again).
    reference.copy(Path(config["storage"]["database"]))
    first = {"notes": total, "clean_index_seconds": round(reference_seconds, 1)}
    outcomes: list[dict[str, Any]] = []
    kinds = list(kinds or ["edit", "full", "maintenance", "reload", "hnsw", "neo4j"])
    if "neo4j" in kinds and not crash_neo4j.available():
        kinds.remove("neo4j")
        first["neo4j"] = "skipped: boltkit's stub is not installed (make boltkit)"
    server = crash_neo4j.StubServer(work, rng)
    # Fewer runs than kinds (--quick): as many different kinds as runs.
    picked = rng.sample(kinds, runs) if runs < len(kinds) else []
    try:
        for run in range(runs):
            kind = kinds[run % len(kinds)] if runs >= len(kinds) else picked[run]
            hnsw = kind == "hnsw" or run % hnsw_every == hnsw_every - 1
            storage = {**config["storage"], "hnsw": {"enabled": hnsw, "min_chunks": 0}}
            life = {**config, "storage": storage}
            edit_some(vault, rng, 12, run)
            reference_seconds = reference.index()
            projections = [read_projection(reference.store, "v")] if kind == "neo4j" else []
            if projections:
                life["graph"] = crash_neo4j.graph_section(server.open(projections, stall=True))
            doomed = {**life, "indexing": {"on_start": False}}
            if kind != "reload":
                # The clock starts once the model is loaded, so the kill lands in the run's
                # work: loading took 13 s here (load 15 on 2 cores), longer than most
                # windows, so the kills landed in it, before anything was written.
                doomed["embedding"] = {**life["embedding"], "preload": True}
            daemon.write(doomed)
            daemon.start()
            if kind != "reload":
                daemon.wait_for_model()
            window = max(0.5, reference_seconds * (3.0 if kind == "full" else 1.5))
            delay = rng.uniform(0.05, window)
            begun = time.perf_counter()
            if kind in ("edit", "hnsw", "neo4j"):
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
                time.sleep(delay)
            daemon.kill()
            if projections:
                server.close()
                life["graph"] = crash_neo4j.graph_section(server.open(projections, stall=False))
            daemon.write(life)  # catch up on start
            restart = time.perf_counter()
            daemon.start()
            daemon.settle()
            synced: dict[str, Any] = {}
            if projections:
                synced = _graph_synced(daemon)
            catch_up = time.perf_counter() - restart
            status = daemon.client.get("/v1/status")
            daemon.stop()
            if projections:
                synced["rest_of_sync_played"] = server.close()
                synced["stalled"] = stalled
                if not synced["rest_of_sync_played"]:
                    synced["stub_log"] = server.log_tail()
            database = Path(config["storage"]["database"])
            got, want = fingerprint(database), reference.fingerprint()
            difference = compare(got, want)
            graph_ok = not projections or (
                synced.get("ok") is True and synced["rest_of_sync_played"] and stalled
            )
            outcomes.append(
                {
                    "run": run,
                    "kind": kind,
                    "killed_after_seconds": round(delay, 2),
                    "catch_up_seconds": round(catch_up, 1),
                    "state": status.get("state"),
                    **difference,
                    **({"graph": synced} if synced else {}),
                    "survived": status.get("state") == "running"
                    and not any(difference.values())
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


def _graph_synced(daemon: Daemon, timeout: float = 600.0) -> dict[str, Any]:
    """The restarted daemon's sync (it syncs after its first run): its last_sync."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = daemon.client.get("/v1/graph").get("last_sync")
        if last:
            return {"ok": last.get("ok"), "notes": last.get("notes"), "error": last.get("error")}
        time.sleep(0.2)
    return {"ok": False, "error": f"no sync in {timeout:.0f} s"}
