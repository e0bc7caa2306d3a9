"""`python -m benchmarks.progress [--vault PATH]`: how true the index run's ETA is.

Indexes PATH (default: ../shared/data/obsidian-help) into a fresh DuckDB file
from a cold start (the model not loaded, as on a first `make run`), reading the
run's progress every 0.5 s as `jarvisctl index --wait` does. For every reading
taken while encoding, the ETA is compared with the time the encoding really
took from then on, and so is the files-based estimate it replaced (files left
over files per second since the run began), computed from the same readings:
both errors come from one run. Prints JSON: median and p90 of |ETA - actual|
over actual, per estimate, the seconds spent loading the model, and samples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import SHARED_DATA
from jarvisd import logs
from jarvisd.config import Config
from jarvisd.indexing.indexer import Indexer, IndexEvent, Progress
from jarvisd.model.embedder import Embedder
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools
from jarvisd.store import Store

READING_SECONDS = 0.5


async def readings(vault: Path, database: Path) -> tuple[list[dict[str, Any]], float]:
    """Progress readings (each with its monotonic time) and when encoding ended."""
    config = Config.model_validate(
        {
            "vaults": [{"name": "bench", "path": str(vault)}],
            "storage": {"database": str(database)},
            "indexing": {"watch": False},
        }
    )
    embedder = Embedder(config.embedding)
    pools = Pools(config.threads)
    store = Store(config.database_path, config.storage, embedder.probe_dimension())
    indexer = Indexer(config, store, embedder, pools, Metrics())
    taken: list[dict[str, Any]] = []
    ended: list[float] = []  # when encoding ended: the first `finalizing` event

    def listen(event: IndexEvent) -> None:
        if isinstance(event, Progress) and event.phase == "finalizing" and not ended:
            ended.append(time.monotonic())

    indexer.subscribe(listen)
    try:
        run = asyncio.ensure_future(indexer.run())
        while not run.done():
            current = indexer.current
            if current is not None:
                taken.append({**current.progress().as_dict(), "at": time.monotonic()})
            await asyncio.wait({run}, timeout=READING_SECONDS)
        report = run.result()
    finally:
        store.close()
        pools.shutdown()
        embedder.unload()
    if report.state != "done" or not ended:
        raise SystemExit(f"the run failed: {report.error}")
    return taken, ended[0]


def files_based_eta(reading: dict[str, Any]) -> float | None:
    """The ETA before this change: files left over files per second since the start."""
    done, total, elapsed = reading["files_done"], reading["files_total"], reading["elapsed_seconds"]
    rate = done / elapsed if elapsed > 0 else 0.0
    return (total - done) / rate if rate > 0 and total > done else None


def errors(taken: list[dict[str, Any]], ended: float) -> dict[str, Any]:
    chunk_errors: list[float] = []
    file_errors: list[float] = []
    samples = []
    for reading in taken:
        actual = ended - reading["at"]
        if reading["phase"] != "encoding" or actual < 1.0:
            continue
        eta, old = reading["eta_seconds"], files_based_eta(reading)
        if eta is not None:
            chunk_errors.append(abs(eta - actual) / actual)
        if old is not None:
            file_errors.append(abs(old - actual) / actual)
        samples.append({"actual": round(actual, 1), "eta": eta, "files_based": _round(old)})
    return {
        "chunk_eta_relative_error": _summary(chunk_errors),
        "files_eta_relative_error": _summary(file_errors),
        "samples": samples[:: max(1, len(samples) // 12)],
    }


def _summary(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "median": round(statistics.median(ordered), 3),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vault", type=Path, default=SHARED_DATA / "obsidian-help")
    args = parser.parse_args()
    logs.configure("warning", "json")  # stdout is the report; the log goes to stderr
    if not args.vault.is_dir():
        raise SystemExit(f"{args.vault} is absent: pass --vault PATH")
    with tempfile.TemporaryDirectory(prefix="jv-progress-") as work:
        taken, ended = asyncio.run(readings(args.vault, Path(work) / "jarvis.duckdb"))
    loading = [item["at"] for item in taken if item["phase"] == "loading model"]
    started = taken[0]["at"]
    print(
        json.dumps(
            {
                "vault": str(args.vault),
                "readings": len(taken),
                "encoding_seconds": round(ended - started, 1),
                "loading_model_seconds": round(max(loading) - min(loading), 1) if loading else 0,
                **errors(taken, ended),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
