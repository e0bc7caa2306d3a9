"""Search latency through the real daemon on a 10,000-note vault, as JSON.

    python -m benchmarks.search [--workdir DIR] [--seed-db FILE] [--duration 60]

The vault: every SciFact document as a note (5,183) plus copies of the
obsidian-help vault in folders `help-00/`, `help-01/`, ... until there are
`--notes` notes (copied text reuses stored vectors by hash, so the copies
cost one encoding). `--seed-db` starts from a database that already holds
those vectors, e.g. the one `python -m benchmarks.beir --workdir W` leaves in
W/db/jarvis.duckdb (same vault name and note paths), which saves the ~15
minutes of encoding SciFact on two cores; `--workdir` keeps everything for
the next run.

Measured over the control socket, client-side (connect, request, JSON reply),
with threads of `jarvisd.cli.client.ControlClient`:

- per mode (semantic, keyword, hybrid; graph neighbours at depth 2 when the
  daemon has `/v1/graph`) at 1, 8 and 32 concurrent clients, every query
  distinct and both caches off (a reload sets search.cache.size and
  embedding.query_cache_size to 0), so each search encodes its query;
- cached repeats at 1 client (caches back on, each query asked once before);
- 32 clients for `--duration` seconds, modes mixed, caches on: errors must be 0;
- 1 client during a full re-index (`POST /v1/index?full=1`), against the same
  measurement idle.

`control.rate_limit` is 0 (no limit) here: the benchmark is its own flood.
`--hnsw` turns `storage.hnsw.enabled` on (otherwise off, whatever the chunk
count), so the same figures come from DuckDB's HNSW index instead of the
in-memory matrix; `python -m benchmarks.hnsw` measures that path's recall.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from benchmarks.beir import beir_vault
from benchmarks.common import SHARED_DATA, percentiles, running_daemon, work_directory
from jarvisd.cli.client import ControlClient, DaemonError

VAULT_NAME = "scifact"  # the name benchmarks.beir uses, so its database can seed this one
MODES = ("semantic", "keyword", "hybrid")
CLIENTS = (1, 8, 32)
TARGETS_P95_MS = {"semantic": 30, "keyword": 20, "hybrid": 50, "cached": 2}
Request = Callable[[ControlClient, str], Any]


# ---------------------------------------------------------------------------- the vault


def build_vault(vault: Path, data: Path, notes: int) -> dict[str, int]:
    documents = len(beir_vault(data / "scifact", vault, None))
    help_vault = data / "obsidian-help"
    help_notes = sorted(help_vault.rglob("*.md"))
    copies = 0
    while documents + copies * len(help_notes) < notes:
        target = vault / f"help-{copies:02d}"
        if not target.exists():
            shutil.copytree(help_vault, target)
        copies += 1
    return {
        "scifact_notes": documents,
        "help_copies": copies,
        "notes": documents + copies * len(help_notes),
    }


def queries(data: Path) -> list[str]:
    """Distinct queries: SciFact's claims, then obsidian-help titles and descriptions."""
    found: list[str] = []
    with (data / "scifact" / "queries.jsonl").open(encoding="utf-8") as handle:
        found.extend(json.loads(line)["text"] for line in handle)
    for path in sorted((data / "obsidian-help").rglob("*.md")):
        found.append(path.stem)
        text = path.read_text(encoding="utf-8")
        if text.startswith("---\n"):
            front = yaml.safe_load(text[4 : text.find("\n---", 4)]) or {}
            if isinstance(front, dict) and isinstance(front.get("description"), str):
                found.append(front["description"])
    return list(dict.fromkeys(query[:1000] for query in found))


# ------------------------------------------------------------------------------ drivers


def search(mode: str) -> Request:
    return lambda client, query: client.get("/v1/search", q=query, mode=mode, limit=10)


def drive(
    socket: Path,
    request: Request,
    work: Iterator[str],
    clients: int,
    count: int | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """`clients` threads taking queries from `work` until `count` requests or `seconds` pass."""
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    issued = itertools.count()
    deadline = time.monotonic() + seconds if seconds else None

    def worker() -> None:
        client = ControlClient(socket, timeout=120)
        while True:
            if count is not None and next(issued) >= count:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            with lock:
                query = next(work)
            started = time.perf_counter()
            try:
                request(client, query)
            except Exception as error:  # counted and reported, never a dead client
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "error_samples": errors[:3],
        "queries_per_second": round(len(latencies) / wall, 1),
        "ms": {key: _ms(value) for key, value in percentiles(latencies).items()},
    }


def _ms(value: float) -> float:
    return value if isinstance(value, int) else round(value * 1000, 2)


def cycle(items: list[str]) -> Iterator[str]:
    return itertools.cycle(items)


# ------------------------------------------------------------------------------ phases


def set_caches(client: ControlClient, config_path: Path, on: bool) -> None:
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config.setdefault("search", {})["cache"] = {"size": 256 if on else 0}
    config.setdefault("embedding", {})["query_cache_size"] = 500 if on else 0
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    outcome = client.post("/v1/reload")
    if not outcome.get("ok"):
        raise RuntimeError(f"reload failed: {outcome}")


def per_mode(socket: Path, pool: Iterator[str], graph_notes: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    requests: dict[str, Request] = {mode: search(mode) for mode in MODES}
    work: dict[str, Iterator[str]] = dict.fromkeys(MODES, pool)
    if graph_notes:
        requests["graph_depth2"] = lambda client, note: client.request(
            "GET", "/v1/graph/neighbours", query={"path": note, "depth": 2, "vault": VAULT_NAME}
        )
        work["graph_depth2"] = cycle(graph_notes)
    for name, request in requests.items():
        out[name] = {}
        for clients in CLIENTS:
            count = max(150, 40 * clients)
            out[name][str(clients)] = drive(socket, request, work[name], clients, count=count)
    return out


def cached_repeats(socket: Path, client: ControlClient, items: list[str]) -> dict[str, Any]:
    for query in items:
        client.get("/v1/search", q=query, mode="hybrid", limit=10)
    repeat = drive(socket, search("hybrid"), cycle(items), 1, count=300)
    server = [client.get("/v1/search", q=q, mode="hybrid", limit=10)["took_ms"] for q in items]
    repeat["server_took_ms_p95"] = percentiles(server).get("p95")
    return repeat


def during_reindex(
    socket: Path, client: ControlClient, pool: Iterator[str], seconds: float
) -> dict[str, Any]:
    """1 client, modes in turn, caches off: idle first, then while a full re-index runs."""

    def mixed(client: ControlClient, query: str) -> Any:
        mode = MODES[len(query) % len(MODES)]  # stable, and spread over the modes
        return client.get("/v1/search", q=query, mode=mode, limit=10)

    idle = drive(socket, mixed, pool, 1, seconds=min(30.0, seconds))
    client.post("/v1/index", full=1)
    time.sleep(1.0)  # let the run get past its scan and into encoding
    busy = drive(socket, mixed, pool, 1, seconds=seconds)
    state = client.get("/v1/index")
    ratio = busy["ms"]["p95"] / idle["ms"]["p95"] if idle["ms"] else None
    return {
        "idle": idle,
        "reindexing": busy,
        "p95_ratio": round(ratio, 2) if ratio else None,
        "target_ratio": 3.0,
        "index_running_at_end": state.get("running"),
        "index_progress_at_end": state.get("current"),
    }


# --------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--workdir", type=Path, help="keep the vault and database here (reused)")
    parser.add_argument("--seed-db", type=Path, help="start from this database (vectors reused)")
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of 32 clients")
    parser.add_argument("--reindex-seconds", type=float, default=60.0)
    parser.add_argument(
        "--hnsw",
        action="store_true",
        help="storage.hnsw.enabled: true (semantic search through DuckDB's HNSW index)",
    )
    return parser.parse_args(argv)


def daemon_config(workdir: Path, hnsw: bool = False) -> dict[str, Any]:
    return {
        "vaults": [{"name": VAULT_NAME, "path": str(workdir / "vault")}],
        "storage": {
            "database": str(workdir / "db" / "jarvis.duckdb"),
            "hnsw": {"enabled": hnsw},
        },
        "control": {"socket": str(workdir / "run" / "j.sock"), "rate_limit": 0},
        "indexing": {"on_start": False, "watch": False},
        "schedule": {"index": None, "maintenance": None},
        "search": {"max_limit": 100},
        "metrics": {"listen": None},
        "logging": {"format": "json", "level": "warning"},
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"vault": build_vault(workdir / "vault", args.data, args.notes)}
    database = workdir / "db" / "jarvis.duckdb"
    if args.seed_db and not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.seed_db, database)
    pool_items = queries(args.data)
    report["distinct_queries"] = len(pool_items)
    with running_daemon(daemon_config(workdir, args.hnsw), root=workdir) as (
        client,
        _process,
        _root,
    ):
        config_path = workdir / "jarvis.yaml"
        started = time.perf_counter()
        events = list(client.stream("POST", "/v1/index", query={"wait": 1}))
        report["index"] = {
            **_index_summary(events[-1]["run"]),
            "seconds": round(time.perf_counter() - started, 1),
        }
        report["index"]["stats"] = client.get("/v1/index")["index"]
        socket = client.socket_path
        pool = cycle(pool_items)
        drive(socket, search("hybrid"), pool, 1, count=20)  # warm: model, snapshot, stems
        graph_notes = _graph_notes(client)
        report["graph"] = "measured" if graph_notes else "skipped: no /v1/graph routes"
        set_caches(client, config_path, on=False)
        report["per_mode"] = per_mode(socket, pool, graph_notes)
        set_caches(client, config_path, on=True)
        report["cached_repeat"] = cached_repeats(socket, client, pool_items[:50])
        report["sustained_32_clients"] = drive(
            socket, _mixed_modes(), cycle(pool_items[:400]), 32, seconds=args.duration
        )
        set_caches(client, config_path, on=False)
        report["during_full_reindex"] = during_reindex(socket, client, pool, args.reindex_seconds)
        report["search_stats"] = client.get("/v1/search/stats")
    report["targets_p95_ms_at_1_client"] = TARGETS_P95_MS
    report["control_rate_limit"] = "0 (off for the benchmark)"
    return report


def _mixed_modes() -> Request:
    modes = itertools.cycle(MODES)
    lock = threading.Lock()

    def request(client: ControlClient, query: str) -> Any:
        with lock:
            mode = next(modes)
        return client.get("/v1/search", q=query, mode=mode, limit=10)

    return request


def _graph_notes(client: ControlClient) -> list[str] | None:
    try:
        client.get("/v1/graph")
    except DaemonError:
        return None
    return [
        f"help-00/{name}" for name in ("Home", "Getting started/Link notes", "Plugins/Core plugins")
    ]


def _index_summary(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("state", "files_seen", "files_changed", "chunks", "chunks_encoded", "chunks_reused")
    return {key: run.get(key) for key in keys}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.data / "scifact").is_dir() or not (args.data / "obsidian-help").is_dir():
        print(json.dumps({"skipped": f"needs scifact and obsidian-help under {args.data}"}))
        return 0
    with work_directory(args.workdir, "jarvis-search-bench-") as workdir:
        report = run(args, workdir)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
