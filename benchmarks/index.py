"""`python -m benchmarks.index --vault PATH`: indexing throughput against the model's ceiling.

Indexes PATH into a fresh DuckDB file with the real pipeline (Indexer, Store,
Embedder, thread pools), the model warmed first as the daemon does after
READY. Then encodes the very same chunk texts with a bare `encode` call in the
same process: `pipeline_efficiency` = pipeline chunks/s / raw encode chunks/s.
Also times a second, no-change run and reports peak RSS. Prints JSON.

Targets on 2 cores (obsidian-help): efficiency >= 0.85, no-change run < 0.5 s,
peak RSS < 1 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from jarvisd.config import Config
from jarvisd.indexing.indexer import Indexer
from jarvisd.indexing.markdown import NoteError, parse_note
from jarvisd.indexing.vault import read_note_bytes, scan_vault
from jarvisd.model.embedder import Embedder
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools
from jarvisd.store import Store


def build_config(vault: Path, database: Path, chunk_tokens: int, quantize: str) -> Config:
    overlap = min(32, chunk_tokens // 4)
    return Config.model_validate(
        {
            "vaults": [{"name": "bench", "path": str(vault)}],
            "storage": {"database": str(database)},
            "indexing": {"chunk_tokens": chunk_tokens, "chunk_overlap": overlap, "watch": False},
            "embedding": {"quantize": quantize},
        }
    )


def chunk_texts(config: Config) -> list[str]:
    """The distinct embed texts the pipeline encodes for this vault and config."""
    vault = config.vaults[0]
    scan = scan_vault(vault.root, vault.exclude, config.indexing.max_file_bytes)
    texts: dict[str, None] = {}
    for info in scan.files:
        try:
            note = parse_note(
                info.path,
                read_note_bytes(vault.root, info.path),
                chunk_tokens=config.indexing.chunk_tokens,
                chunk_overlap=config.indexing.chunk_overlap,
            )
        except (NoteError, OSError):
            continue
        texts.update(dict.fromkeys(chunk.embed_text for chunk in note.chunks))
    return list(texts)


class PeakRss:
    """Samples this process's RSS every 50 ms; the peak since the last reset."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def reset(self) -> int:
        peak, self.peak = self.peak, self._process.memory_info().rss
        return max(peak, self.peak)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


async def raw_encode(pools: Pools, embedder: Embedder, texts: list[str]) -> float:
    """Seconds for the bare model on `texts`, batched the way the pipeline batches them."""
    started = time.perf_counter()
    await pools.run("index", embedder.encode, texts)
    return time.perf_counter() - started


async def measure(config: Config) -> dict[str, Any]:
    rss = PeakRss()
    pools = Pools(config.threads)
    embedder = Embedder(config.embedding)
    started = time.perf_counter()
    await pools.run("index", embedder.load)
    load_seconds = time.perf_counter() - started
    store = Store(
        config.database_path,
        config.storage,
        embedder.probe_dimension(),
        model=config.embedding.model,
    )
    indexer = Indexer(config, store, embedder, pools, Metrics())
    texts = chunk_texts(config)
    # Raw encode before and after the pipeline: the machine is shared, so the
    # ceiling is the mean of two measurements taken around it.
    raw_before = await raw_encode(pools, embedder, texts)
    rss.reset()
    first = await indexer.run(trigger="benchmark")
    peak_indexing = rss.reset()
    second = await indexer.run(trigger="benchmark")
    raw_after = await raw_encode(pools, embedder, texts)
    raw_seconds = (raw_before + raw_after) / 2
    stats = store.stats()
    store.close()
    pools.shutdown()
    pipeline_rate = first.chunks_encoded / first.duration_seconds
    raw_rate = len(texts) / raw_seconds
    return {
        "files": first.files_seen,
        "files_indexed": first.files_indexed,
        "files_skipped": first.files_skipped,
        "chunks": first.chunks,
        "chunks_encoded": first.chunks_encoded,
        "seconds": round(first.duration_seconds, 3),
        "files_per_minute": round(first.files_indexed / first.duration_seconds * 60, 1),
        "chunks_per_second": round(first.chunks / first.duration_seconds, 2),
        "encoded_chunks_per_second": round(pipeline_rate, 2),
        "raw_encode_chunks": len(texts),
        "raw_encode_seconds": round(raw_seconds, 3),
        "raw_encode_seconds_before_after": [round(raw_before, 3), round(raw_after, 3)],
        "raw_encode_chunks_per_second": round(raw_rate, 2),
        "pipeline_efficiency": round(pipeline_rate / raw_rate, 3),
        "no_change_run_seconds": round(second.duration_seconds, 4),
        "no_change_files_unchanged": second.files_unchanged,
        "model_load_seconds": round(load_seconds, 2),
        "notes": stats["notes"],
        "links": stats["links"],
        "unresolved_links": stats["unresolved_links"],
        "database_bytes": stats.get("database_bytes"),
        "peak_rss_bytes_while_indexing": peak_indexing,
        "peak_rss_bytes": rss.stop(),
    }


def main() -> None:
    from jarvisd import logs
    from jarvisd.model.allocator import limit_arenas

    limit_arenas()  # as the daemon does at start
    logs.configure("warning", "json")  # stdout is the report; the log goes to stderr
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vault", type=Path, required=True)
    parser.add_argument("--chunk-tokens", type=int, default=200)
    parser.add_argument("--quantize", choices=["none", "int8"], default="none")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="jbi-"))
    try:
        config = build_config(
            args.vault.resolve(), workdir / "bench.duckdb", args.chunk_tokens, args.quantize
        )
        result = asyncio.run(measure(config))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.update(
        {
            "vault": str(args.vault),
            "chunk_tokens": args.chunk_tokens,
            "quantize": args.quantize,
            "targets": {
                "pipeline_efficiency": 0.85,
                "no_change_run_seconds": 0.5,
                "peak_rss_bytes_while_indexing": 1_000_000_000,
            },
        }
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
