"""What one edit costs the search snapshot, from 200 to 14,000 notes, as JSON.

    python -m benchmarks.snapshot_patch [--sizes 200,2000,10000,14000] [--edits 20]

In-process, on the real store and snapshot code: one store grows through the
sizes by copies of the Obsidian help vault (../shared/data/obsidian-help,
parsed by the indexer's parser, each copy under its own folder), with random
unit vectors for the chunks (the timing does not depend on what they say).
At each size: a whole build (time, the process's RSS after it), search
latency of the semantic and keyword scoring over the snapshot, then `--edits`
one-note edits (a rewrite of a random note: new chunk ids, vectors, postings),
each followed by the patch the service makes (`refresh_snapshot`), timed
alone and with the write (edit to searchable, without the watcher's
debounce), then search latency again over the patched snapshot (its dead
rows included). `patch_ratio` is the median patch at the largest size over
that at the smallest.

Target (issue #10 point 4): patch_ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import psutil

from benchmarks.common import SHARED_DATA, percentiles
from jarvisd.config import HnswConfig, StorageConfig
from jarvisd.indexing.markdown import parse_note
from jarvisd.indexing.parsed import ParsedNote
from jarvisd.search.keyword import keyword_scores
from jarvisd.search.patching import refresh_snapshot
from jarvisd.search.semantic import semantic_scores
from jarvisd.search.snapshot import Snapshot, build_snapshot
from jarvisd.search.terms import Stemmer, query_stems
from jarvisd.store import Store

DIMENSION = 384
QUERIES = ("link to a heading", "sync settings vault", "canvas cards", "daily notes template")
TARGET_RATIO = 1.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200,2000,10000,14000", help="note counts")
    parser.add_argument("--edits", type=int, default=20, help="one-note edits per size")
    parser.add_argument("--vault", type=Path, default=SHARED_DATA / "obsidian-help")
    return parser.parse_args(argv)


def load_notes(vault: Path) -> list[ParsedNote]:
    notes = []
    for path in sorted(vault.rglob("*.md")):
        relative = path.relative_to(vault).as_posix()
        notes.append(parse_note(relative, path.read_bytes()))
    return notes


def unit_vectors(rng: np.random.Generator, count: int) -> npt.NDArray[np.float32]:
    vectors = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    normalised: npt.NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


# Copies of the copy0/ notes made in SQL: the store's one-note writes would take an
# hour for 14,000 notes on two shared cores. Chunks keep their vectors; BM25 is then
# rebuilt by the store itself. The store is closed meanwhile.
REPLICATE = """
CREATE OR REPLACE TEMP TABLE base AS
    SELECT row_number() OVER (ORDER BY id) - 1 AS place, id, substr(path, 7) AS rel
    FROM notes WHERE path LIKE 'copy0/%';
CREATE OR REPLACE TEMP TABLE wanted AS
    SELECT r.range AS number, 'copy' || (r.range // {count}) || '/' || b.rel AS path,
           b.id AS base_id
    FROM range({first}, {last}) r JOIN base b ON b.place = r.range % {count};
INSERT INTO notes
    SELECT nextval('note_ids'), n.vault, w.path, n.title, n.content_hash, n.size, w.number,
           n.frontmatter, n.aliases, n.headings, n.warnings, n.indexed_at
    FROM wanted w JOIN notes n ON n.id = w.base_id ORDER BY w.number;
INSERT INTO chunks (note_id, ordinal, heading_path, text, embed_text_hash, token_count,
                    start_line, end_line, embedding)
    SELECT m.id, c.ordinal, c.heading_path, c.text, c.embed_text_hash, c.token_count,
           c.start_line, c.end_line, c.embedding
    FROM wanted w JOIN notes m ON m.path = w.path JOIN chunks c ON c.note_id = w.base_id
    ORDER BY m.id, c.id;
INSERT INTO tags
    SELECT m.id, t.tag FROM wanted w JOIN notes m ON m.path = w.path
    JOIN tags t ON t.note_id = w.base_id;
"""


class Vault:
    """Copies of the help vault in a store: copy0 written note by note, the rest in SQL."""

    def __init__(self, path: Path, notes: list[ParsedNote]) -> None:
        self.path, self.notes = path, notes
        self.config = StorageConfig(database=path, hnsw=HnswConfig(enabled=False))
        self.store = Store(path, self.config, dimension=DIMENSION)
        self.count = 0
        self.rng = np.random.default_rng(7)

    def note(self, number: int) -> ParsedNote:
        base = self.notes[number % len(self.notes)]
        return dataclasses.replace(base, path=f"copy{number // len(self.notes)}/{base.path}")

    def write(self, number: int, mtime_ns: int) -> None:
        note = self.note(number)
        vectors = unit_vectors(self.rng, len(note.chunks))
        self.store.write_note("v", note, vectors, 1000 + number, mtime_ns)

    def grow(self, count: int) -> None:
        while self.count < min(count, len(self.notes)):
            self.write(self.count, self.count)
            self.count += 1
        if self.count >= count:
            return
        self.store.close()
        connection = duckdb.connect(str(self.path))
        try:
            sql = REPLICATE.format(count=len(self.notes), first=self.count, last=count)
            connection.execute(sql)
        finally:
            connection.close()
        self.store = Store(self.path, self.config, dimension=DIMENSION)
        self.store.rebuild_bm25()
        self.count = count


def median_ms(action: Callable[[], object], repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


def search_latency(store: Store, snapshot: Snapshot) -> dict[str, float]:
    rng = np.random.default_rng(3)
    query = unit_vectors(rng, 1)[0]
    stemmer = Stemmer()
    stems = [query_stems(store, stemmer, text) for text in QUERIES]

    def keyword() -> None:
        for terms in stems:
            keyword_scores(snapshot, snapshot.postings.score(terms))

    return {
        "semantic_ms": median_ms(lambda: semantic_scores(snapshot, query)),
        "keyword_ms": round(median_ms(keyword) / len(stems), 3),
    }


def one_size(vault: Vault, size: int, edits: int, generation: int) -> dict[str, Any]:
    started = time.perf_counter()
    vault.grow(size)
    grown = time.perf_counter() - started
    store = vault.store
    store.take_changes()
    started = time.perf_counter()
    snapshot = build_snapshot(store, generation, with_vectors=True)
    build = time.perf_counter() - started
    figures: dict[str, Any] = {
        "notes": size,
        "chunks": snapshot.live_chunk_count,
        "postings": snapshot.postings.csr_postings,
        "build_s": round(build, 3),
        "store_grown_s": round(grown, 1),
        "rss_mb_after_build": round(psutil.Process().memory_info().rss / 2**20, 1),
        "snapshot_mb": round(snapshot.memory_bytes() / 2**20, 1),
        "search_before": search_latency(store, snapshot),
    }
    picker = random.Random(size)
    patches, edit_to_searchable = [], []
    for step in range(edits):
        generation += 1
        started = time.perf_counter()
        vault.write(picker.randrange(size), 10**12 + step)
        written = time.perf_counter()
        snapshot = refresh_snapshot(store, snapshot, generation, with_vectors=True)
        done = time.perf_counter()
        assert snapshot.patched_notes == 1, "a one-note edit was not patched"
        patches.append(done - written)
        edit_to_searchable.append(done - started)
    figures["patch_ms"] = {
        key: round(value * 1000, 2) for key, value in percentiles(patches).items() if key != "n"
    }
    figures["edit_to_searchable_ms"] = {
        key: round(value * 1000, 2)
        for key, value in percentiles(edit_to_searchable).items()
        if key != "n"
    }
    figures["patch_median_ms"] = round(statistics.median(patches) * 1000, 2)
    figures["dead_chunks_after"] = snapshot.dead_chunks
    figures["search_after"] = search_latency(store, snapshot)
    figures["rss_mb_after_patches"] = round(psutil.Process().memory_info().rss / 2**20, 1)
    return figures


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    sizes = [int(size) for size in args.sizes.split(",")]
    notes = load_notes(args.vault)
    vault = Vault(workdir / "jarvis.duckdb", notes)
    try:
        results = [
            one_size(vault, size, args.edits, 1000 * index) for index, size in enumerate(sizes)
        ]
    finally:
        vault.store.close()
    smallest, largest = results[0]["patch_median_ms"], results[-1]["patch_median_ms"]
    ratio = round(largest / smallest, 3) if smallest else None
    return {
        "benchmark": "snapshot_patch",
        "source_notes": len(notes),
        "edits_per_size": args.edits,
        "sizes": results,
        "patch_ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio is not None and ratio <= TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jarvis-snapshot-patch-", dir="/tmp") as folder:
        print(json.dumps(run(args, Path(folder)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
