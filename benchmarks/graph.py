"""Graph query latency on the DuckDB backend; prints JSON.

    python -m benchmarks.graph                         # obsidian-help from shared/data
    python -m benchmarks.graph --synthetic 10000       # a generated 10,000-note vault
    python -m benchmarks.graph --synthetic 10000 --database /tmp/g.duckdb   # keep, reuse

The vault is parsed by the real parser and written through the real store
(random unit vectors: graph queries never read them; no model is loaded),
then outgoing links, backlinks, neighbourhoods at depth 1 to 3 in each
direction, shortest paths, unresolved links and orphans are timed through
the GraphService, the layer the control socket calls. Latency is per query,
in milliseconds, warm: `first_query_ms` is the one cold query before them
(it pays for reading the graph), and `backend` is what the backend says of
itself (for duckdb: the adjacency snapshots, their size and build time).
`build_seconds` is the store's own build (parse and write; 0 when reused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fixtures_store import DIMENSION, storage_config  # noqa: E402
from graph_fixtures import build_store, identity  # noqa: E402

from jarvisd.config import Config  # noqa: E402
from jarvisd.graph import Neighbourhood  # noqa: E402
from jarvisd.graph.service import GraphService  # noqa: E402
from jarvisd.lifecycle import deadline_in  # noqa: E402
from jarvisd.logs import configure  # noqa: E402
from jarvisd.observe.latency import describe  # noqa: E402
from jarvisd.observe.metrics import Metrics  # noqa: E402
from jarvisd.pools import Pools  # noqa: E402
from jarvisd.store import Store  # noqa: E402

S = TypeVar("S")
VAULT = "bench"


def synthetic_vault(root: Path, count: int, seed: int = 7) -> Path:
    """`count` notes in 50 folders; ~10 links each, a third to a few hub notes, 3 % dangling."""
    rng = random.Random(seed)
    for number in range(count):
        links = []
        for _ in range(rng.randint(2, 18)):
            if rng.random() < 0.03:
                links.append(f"[[missing {rng.randint(0, 50)}]]")
            elif rng.random() < 0.33:
                links.append(f"[[note {int(rng.random() ** 3 * count)}]]")
            else:
                links.append(f"[[note {rng.randrange(count)}]]")
        folder = root / f"folder {number % 50}"
        folder.mkdir(parents=True, exist_ok=True)
        text = f"# Note {number}\n\nSome text about topic {number % 97}.\n\n" + "\n".join(links)
        (folder / f"note {number}.md").write_text(text + "\n", encoding="utf-8")
    return root


async def timed(work: Callable[[S], Awaitable[object]], samples: Sequence[S]) -> dict[str, float]:
    seconds = []
    for sample in samples:
        started = time.perf_counter()
        await work(sample)
        seconds.append((time.perf_counter() - started) * 1000)
    return {key: round(value, 3) for key, value in describe(seconds).items()}


def open_store(database: Path, vault: Path) -> tuple[Store, float]:
    """The store at `database`, built from `vault` unless it already exists; build seconds."""
    if database.exists():
        return Store(database, storage_config(database), DIMENSION, identity()), 0.0
    started = time.perf_counter()
    store = build_store(database, {VAULT: vault})
    return store, time.perf_counter() - started


async def measure(vault: Path, database: Path, queries: int) -> dict[str, Any]:
    store, built = open_store(database, vault)
    config = Config.model_validate({"vaults": [{"name": VAULT, "path": str(vault)}]})
    pools = Pools(config.threads)
    service = GraphService(config, store, pools, Metrics())
    stats = store.stats()
    try:
        await service.start()
        paths = [path for path, _ in store.note_paths_and_aliases(VAULT)]
        rng = random.Random(1)
        sample = [rng.choice(paths) for _ in range(queries)]
        pairs = [(rng.choice(paths), rng.choice(paths)) for _ in range(max(5, queries // 2))]
        report: dict[str, Any] = {
            "notes": stats["notes"],
            "links": stats["links"],
            "build_seconds": round(built, 2),
            "queries": queries,
        }
        started = time.perf_counter()
        await service.links(None, sample[0])  # cold: the backend reads the vault's graph
        report["first_query_ms"] = round((time.perf_counter() - started) * 1000, 3)
        report.update(await measure_queries(service, sample, pairs))
        report["backend"] = service.status()
        return report
    finally:
        await service.stop(deadline_in(10))
        pools.shutdown()
        store.close()


async def measure_queries(
    service: GraphService, sample: list[str], pairs: list[tuple[str, str]]
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "links_ms": await timed(lambda note: service.links(None, note), sample),
        "backlinks_ms": await timed(lambda note: service.backlinks(None, note), sample),
    }
    for depth in (1, 2, 3):
        for direction in ("out", "in", "both"):
            report[f"neighbours_depth{depth}_{direction}_ms"] = await timed(
                around(service, depth, direction), sample
            )
    report["path_both_ms"] = await timed(lambda pair: service.path(None, *pair), pairs)
    report["path_out_ms"] = await timed(lambda pair: service.path(None, *pair, "out"), pairs)
    report["unresolved_ms"] = await timed(lambda _: service.unresolved(None), range(5))
    report["orphans_ms"] = await timed(lambda _: service.orphans(None), range(5))
    return report


def around(
    service: GraphService, depth: int, direction: str
) -> Callable[[str], Awaitable[Neighbourhood]]:
    return lambda note: service.neighbours(None, note, depth, direction)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vault", type=Path, default=REPO.parent / "shared/data/obsidian-help")
    parser.add_argument("--synthetic", type=int, default=0, help="generate a vault of N notes")
    parser.add_argument("--queries", type=int, default=200, help="queries per measurement")
    parser.add_argument(
        "--database", type=Path, help="keep the store here and reuse it when it exists"
    )
    args = parser.parse_args(argv)
    configure(level="warning")  # stdout is for the JSON report alone
    with tempfile.TemporaryDirectory(prefix="jarvis-graph-bench-") as temporary:
        workdir = Path(temporary)
        if args.synthetic:
            vault = synthetic_vault(workdir / "vault", args.synthetic)
        elif args.vault.is_dir():
            vault = args.vault
        else:
            print(json.dumps({"skipped": f"no vault at {args.vault}"}))
            return 0
        database = args.database or workdir / "graph.duckdb"
        report = asyncio.run(measure(vault, database, args.queries))
    print(json.dumps({"vault": str(args.vault) if not args.synthetic else "synthetic", **report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
