"""Crash safety (issue #9): what a checkpoint after an edit's finalize would cost, what
replaying its WAL costs, and how long a damaged database takes to heal.

(Measured first on the DuckDB fts rebuild, which was then replaced by BM25 postings
kept per note, issue #10: an edit's finalize now writes only what changed.)

Prints one JSON object:

- `fts`: per size, medians over `--repeat` runs of an edit's finalize, a CHECKPOINT
  right after it, the WAL it leaves, and opening the store after a kill (the WAL
  replayed) against opening it after the checkpoint;
- `recovery`: the example vault indexed by the real daemon, its database replaced
  by garbage, then the seconds from starting jarvisd to READY (the open that keeps
  the file aside and starts fresh) and to the end of the rebuild run (model load
  included), with the files kept.

    .venv/bin/python -m benchmarks.crash_safety --notes 200 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, SHARED_DATA, running_daemon

SCIFACT = SHARED_DATA / "scifact" / "corpus.jsonl"
EXAMPLE = REPO / "jarvisd" / "example_vault"

# Runs in a child process, so a kill (os._exit) leaves exactly what a crash leaves.
_WRITER = """
import json, os, sys, time
sys.path.insert(0, {tests!r})
from fixtures_store import make_note, storage_config, unit_vectors
from jarvisd.store import Store
texts = json.load(open({texts!r}))
store = Store({database!r}, storage_config(enabled=False), model="m")
for index, text in enumerate(texts):
    store.write_note("v", make_note(f"n/{{index}}.md", [text]), unit_vectors(1, index), 1, 1)
store.finalize(["v"])
store.checkpoint()
store.write_note("v", make_note("extra.md", ["one more note"]), unit_vectors(1, 0), 1, 1)
started = time.perf_counter()
store.finalize(["v"])
rebuild = time.perf_counter() - started
wal = os.path.getsize({database!r} + ".wal")
if {checkpoint!r}:
    started = time.perf_counter()
    store.checkpoint()
    checkpoint = time.perf_counter() - started
else:
    checkpoint = None
print(json.dumps({{"rebuild": rebuild, "checkpoint": checkpoint, "wal_bytes": wal}}), flush=True)
os._exit(9)
"""


def texts(count: int) -> list[str]:
    out: list[str] = []
    if SCIFACT.is_file():
        with SCIFACT.open(encoding="utf-8") as corpus:
            for line in corpus:
                record = json.loads(line)
                out.append(f"{record.get('title', '')}\n{record.get('text', '')}"[:2000])
                if len(out) == count:
                    return out
    words = ("grind", "burr", "crema", "levain", "crumb", "proof", "shot", "ratio", "roast")
    while len(out) < count:
        out.append(" ".join(words[(len(out) * 7 + step) % len(words)] for step in range(150)))
    return out


def open_seconds(database: Path) -> float:
    script = (
        f"import sys, time; sys.path.insert(0, {str(REPO / 'tests')!r})\n"
        "from fixtures_store import storage_config\nfrom jarvisd.store import Store\n"
        f"started = time.perf_counter(); store = Store({str(database)!r}, "
        "storage_config(enabled=False), model='m')\n"
        "print(time.perf_counter() - started); assert store.recovery is None; store.close()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=600
    )
    return float(result.stdout.strip().splitlines()[-1])


def fts_costs(count: int, repeat: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {
        "rebuild_seconds": [],
        "checkpoint_seconds": [],
        "wal_bytes": [],
        "open_replaying_wal_seconds": [],
        "open_after_checkpoint_seconds": [],
    }
    corpus = texts(count)
    for _ in range(repeat):
        for checkpoint in (False, True):
            root = Path(tempfile.mkdtemp(prefix="jcs-", dir="/tmp"))
            try:
                source = root / "texts.json"
                source.write_text(json.dumps(corpus), encoding="utf-8")
                database = root / "jarvis.duckdb"
                script = _WRITER.format(
                    tests=str(REPO / "tests"),
                    texts=str(source),
                    database=str(database),
                    checkpoint=checkpoint,
                )
                result = subprocess.run(
                    [sys.executable, "-c", script], capture_output=True, text=True, timeout=1800
                )
                if result.returncode != 9:
                    raise RuntimeError(result.stderr)
                numbers = json.loads(result.stdout.strip().splitlines()[-1])
                opened = open_seconds(database)
                if checkpoint:
                    samples["checkpoint_seconds"].append(numbers["checkpoint"])
                    samples["open_after_checkpoint_seconds"].append(opened)
                else:
                    samples["rebuild_seconds"].append(numbers["rebuild"])
                    samples["wal_bytes"].append(numbers["wal_bytes"])
                    samples["open_replaying_wal_seconds"].append(opened)
            finally:
                shutil.rmtree(root, ignore_errors=True)
    medians = {name: round(statistics.median(values), 4) for name, values in samples.items()}
    return {"notes": count + 1, "source": "scifact" if SCIFACT.is_file() else "synthetic",
            **medians}  # fmt: skip


def recovery_costs() -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="jcr-", dir="/tmp"))
    try:
        vault = root / "vault"
        shutil.copytree(EXAMPLE, vault)
        config: dict[str, Any] = {
            "vaults": [{"name": "v", "path": str(vault)}],
            "indexing": {"on_start": True, "watch": False},
            "schedule": {"index": None, "maintenance": None},
            "logging": {"format": "json", "level": "info"},
        }
        with running_daemon(config, root=root) as (client, _, _):
            wait_run(client)
        database = root / "db" / "j.duckdb"
        database.write_bytes(os.urandom(database.stat().st_size))
        for wal in database.parent.glob("*.wal"):
            wal.unlink()
        config["indexing"]["on_start"] = False  # the rebuild must start by itself
        started = time.perf_counter()
        with running_daemon(config, root=root) as (client, _, _):
            ready = time.perf_counter() - started
            run = wait_run(client)
            rebuilt = time.perf_counter() - started
            status = client.get("/v1/status")
        return {
            "vault": "example",
            "notes": status["index"]["notes"],
            "seconds_to_ready": round(ready, 3),
            "seconds_to_rebuilt": round(rebuilt, 3),
            "rebuild_run_seconds": run["duration_seconds"],
            "rebuild_trigger": run["trigger"],
            "kept": [Path(path).name for path in status["store"]["recovery"]["kept"]],
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def wait_run(client: Any, timeout: float = 900) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get("/v1/index")
        last = state.get("last_run")
        if last and not state["running"] and last.get("state") == "done":
            return dict(last)
        time.sleep(0.1)
    raise RuntimeError("the index run did not finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-recovery", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {"fts": [fts_costs(count, args.repeat) for count in args.notes]}
    if not args.skip_recovery:
        report["recovery"] = recovery_costs()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
