"""`python -m benchmarks.reliability [--quick]`: crashes, bad configs, bad requests, floods, load.

Every figure is measured on the real daemon (a subprocess, real signals, the
real socket) and printed as one JSON object:

- crash: runs where the daemon is killed with SIGKILL at a random moment (during
  an edit's index run, a full re-index, maintenance, a reload, an HNSW build, a
  Neo4j sync against boltkit's stub, where the restart must send the rest of it),
  restarted, and left to catch up; after each its database must equal a clean
  index of the same files, built in this process by the same Indexer on a
  database that is never killed: the same notes, content hashes, chunks (by the
  hash of each chunk's text, in order), vectors, links with their resolution,
  and tags, with no duplicates. The vault is obsidian-help replicated into
  folders (`--notes`), so copies reuse vectors and the runs cost parsing and
  writing, not encoding.
- config: broken files of many kinds sent by SIGHUP; each must be refused naming
  the key or the file, the old config must keep serving, and a valid file
  applies after them.
- requests: random malformed requests over the socket (bad JSON, huge and
  negative numbers, path traversal, unicode edge cases); the figure is the count
  of 5xx answers and crashes (target 0 and 0), and RSS after against before.
- connections: stalled half-requests and a burst of connections past the limit.
- load: concurrent clients mixing search modes, graph, note reads and status
  while notes are edited under the watcher; errors, p99 per minute, RSS growth
  from the second minute on, open descriptors and threads.
- security: the socket refused to another uid, its modes, the systemd units'
  exposure score (when systemd-analyze is installed).
- chaos: the watcher under a burst of edits, a folder deleted, restored and
  renamed, bad files and the vault folder gone and back; seconds until caught
  up per scenario, and the index against a clean one at the end.
- storage: a full disk while indexing (a tmpfs in a private mount namespace):
  indexed notes lost (target 0) and the run after space returns.
- upgrades: a database indexed by the previous release's code opens and serves;
  one stamped with a newer schema is refused (exit code, message) untouched.

--quick runs a few of each (CI, under 3 minutes); the full run is sized for
under 25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import duckdb
import psutil
import yaml

from benchmarks import crash_neo4j
from benchmarks.common import REPO, SHARED_DATA, percentiles
from jarvisd.cli.client import ControlClient, DaemonError, DaemonUnreachable
from jarvisd.config import Config
from jarvisd.graph.sync import read_projection
from jarvisd.indexing.indexer import Indexer
from jarvisd.model.embedder import Embedder
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools
from jarvisd.store import Store

HELP = SHARED_DATA / "obsidian-help"
EXAMPLE = REPO / "jarvisd" / "example_vault"
NOBODY = 65534


# ----------------------------------------------------------------- the daemon


class Daemon:
    """jarvisd as a subprocess on a config file in `root`; start, kill, stop, read its log."""

    def __init__(self, root: Path, config: dict[str, Any], prefix: tuple[str, ...] = ()) -> None:
        self.root = root
        self.prefix = prefix  # a wrapper command (a tmpfs in a private mount namespace)
        self.config = config
        self.config_path = root / "jarvis.yaml"
        self.socket = Path(config["control"]["socket"])
        self.client = ControlClient(self.socket, timeout=600)
        self.process: subprocess.Popen[bytes] | None = None
        self.write(config)

    def write(self, config: dict[str, Any]) -> None:
        self.config = config
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def start(self, ready_timeout: float = 300.0) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JARVIS_SOCKET")}
        log = (self.root / "daemon.log").open("ab")
        self.process = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "jarvisd", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"jarvisd exited {self.process.returncode}:\n{self.log()[-3000:]}"
                )
            try:
                self.client.get("/v1/status")
                return
            except DaemonUnreachable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return 0 if self.process is None else int(self.process.returncode)
        self.process.send_signal(signal.SIGTERM)
        try:
            return int(self.process.wait(60))
        except subprocess.TimeoutExpired:
            self.process.kill()
            return int(self.process.wait())

    def log(self) -> str:
        path = self.root / "daemon.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def settle(self, timeout: float = 900.0) -> dict[str, Any]:
        """Wait until no index run is running or queued and one has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state: dict[str, Any] = self.client.get("/v1/index")
            if not state["running"] and state.get("last_run") and not state.get("queued"):
                return state
            time.sleep(0.2)
        raise RuntimeError(f"indexing did not settle:\n{self.log()[-3000:]}")


def base_config(root: Path, vault: Path, **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "vaults": [{"name": "v", "path": str(vault)}],
        "storage": {"database": str(root / "data" / "jarvis.duckdb")},
        "control": {"socket": str(root / "run" / "jarvisd.sock"), "rate_limit": 0},
        "metrics": {"listen": None},
        "logging": {"level": "info", "format": "json"},
        "embedding": {"quantize": "int8"},
        "indexing": {"on_start": True, "watch": False},
        "schedule": {"index": None, "maintenance": None},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


def replicate(vault: Path, notes: int, source: Path | None = None) -> int:
    """`source` (obsidian-help; the example vault without it) copied into folders until
    `notes` notes. Copies reuse vectors by hash: only one copy is encoded."""
    source = source or (HELP if HELP.is_dir() else EXAMPLE)
    per_copy = sum(1 for _ in source.rglob("*.md"))
    copies = max(1, -(-notes // per_copy))
    for copy in range(copies):
        shutil.copytree(source, vault / f"copy{copy:03d}", ignore=shutil.ignore_patterns(".*"))
    return copies * per_copy


# -------------------------------------------------------------- fingerprints


def fingerprint(database: Path) -> dict[str, Any]:
    """What an index holds, comparable across databases (ids differ; content may not)."""
    with duckdb.connect(str(database), read_only=True) as db:
        notes = db.execute("""
            SELECT n.vault, n.path, n.content_hash,
                   (SELECT list(c.embed_text_hash ORDER BY c.ordinal) FROM chunks c
                    WHERE c.note_id = n.id),
                   (SELECT list(t.tag ORDER BY t.tag) FROM tags t WHERE t.note_id = n.id),
                   (SELECT list(l.target || '->' || coalesce(target.path, '?') ORDER BY l.ordinal)
                    FROM links l LEFT JOIN notes target ON target.id = l.target_note_id
                    WHERE l.note_id = n.id)
            FROM notes n ORDER BY n.vault, n.path
        """).fetchall()
        counts = db.execute("""
            SELECT (SELECT count(*) FROM notes),
                   (SELECT count(*) FROM (SELECT DISTINCT vault, path FROM notes)),
                   (SELECT count(*) FROM chunks),
                   (SELECT count(*) FROM (SELECT DISTINCT note_id, ordinal FROM chunks)),
                   (SELECT count(*) FROM chunks WHERE embedding IS NOT NULL),
                   (SELECT count(*) FROM chunks WHERE note_id NOT IN (SELECT id FROM notes)),
                   (SELECT count(*) FROM links), (SELECT count(*) FROM tags)
        """).fetchone()
    assert counts is not None
    names = ("note_rows", "distinct_notes", "chunks", "distinct_chunks", "vectors", "orphan_chunks")
    summary = dict(zip((*names, "links", "tags"), (int(value) for value in counts), strict=True))
    return {"by_note": {tuple(row[:2]): tuple(map(repr, row[2:])) for row in notes}, **summary}


def compare(got: dict[str, Any], want: dict[str, Any]) -> dict[str, int]:
    got_notes, want_notes = got["by_note"], want["by_note"]
    return {
        "notes_lost": len(want_notes.keys() - got_notes.keys()),
        "notes_extra": len(got_notes.keys() - want_notes.keys()),
        "notes_differing": sum(
            1 for key in want_notes.keys() & got_notes.keys() if got_notes[key] != want_notes[key]
        ),
        "duplicates": got["note_rows"]
        - got["distinct_notes"]
        + got["chunks"]
        - got["distinct_chunks"],
        "vectors_missing": got["chunks"] - got["vectors"],
        "orphan_chunks": got["orphan_chunks"],
    }


class Reference:
    """A clean index of the same vault, built in this process and never killed."""

    def __init__(self, root: Path, daemon_config: dict[str, Any]) -> None:
        values = {key: daemon_config[key] for key in ("vaults", "embedding", "indexing")}
        values["storage"] = {"database": str(root / "reference.duckdb")}
        self.config = Config.model_validate(values)
        self.pools, self.metrics = Pools(self.config.threads), Metrics()
        self.embedder = Embedder(self.config.embedding)
        self.store = Store(
            self.config.database_path, self.config.storage, self.embedder.probe_dimension()
        )

    def index(self) -> float:
        started = time.perf_counter()
        indexer = Indexer(self.config, self.store, self.embedder, self.pools, self.metrics)
        report = asyncio.run(indexer.run())
        assert report.state == "done", report.error
        return time.perf_counter() - started

    def fingerprint(self) -> dict[str, Any]:
        self.store.checkpoint()
        # The store keeps its file open; a copy is read instead.
        copy = self.config.database_path.with_suffix(".copy.duckdb")
        self.store.close()
        shutil.copyfile(self.config.database_path, copy)
        self.store = Store(
            self.config.database_path, self.config.storage, self.embedder.probe_dimension()
        )
        try:
            return fingerprint(copy)
        finally:
            copy.unlink()

    def close(self) -> None:
        self.store.close()
        self.pools.shutdown()


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
    daemon.start()
    daemon.settle()
    daemon.stop()
    first = {"notes": total, "clean_index_seconds": round(reference_seconds, 1)}
    outcomes: list[dict[str, Any]] = []
    kinds = list(kinds or ["edit", "full", "maintenance", "reload", "hnsw", "neo4j"])
    if "neo4j" in kinds and not crash_neo4j.available():
        kinds.remove("neo4j")
        first["neo4j"] = "skipped: boltkit's stub is not installed (make boltkit)"
    server = crash_neo4j.StubServer(work, rng)
    try:
        for run in range(runs):
            kind = kinds[run % len(kinds)] if runs >= len(kinds) else rng.choice(kinds)
            hnsw = kind == "hnsw" or run % hnsw_every == hnsw_every - 1
            storage = {**config["storage"], "hnsw": {"enabled": hnsw, "min_chunks": 0}}
            life = {**config, "storage": storage}
            edit_some(vault, rng, 12, run)
            reference_seconds = reference.index()
            projections = [read_projection(reference.store, "v")] if kind == "neo4j" else []
            if projections:
                life["graph"] = crash_neo4j.graph_section(server.open(projections, stall=True))
            daemon.write({**life, "indexing": {"on_start": False}})
            daemon.start()
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


def _quietly(call: Any, *args: Any) -> None:
    # The daemon is killed under it: that is the point.
    with contextlib.suppress(DaemonError, DaemonUnreachable, OSError):
        call(*args)


# --------------------------------------------------------------- config faults


def broken_configs(
    valid: dict[str, Any], count: int, rng: random.Random
) -> Iterator[tuple[str, Any]]:
    """(kind, text or action) pairs: each must be refused by a reload."""
    dumped = yaml.safe_dump(valid, sort_keys=False)
    syntax = [
        "vaults: [unclosed\n",
        "search: {default_limit: 5\n",
        "\tsearch:\n  default_limit: 5\n",
        "search:\n  default_limit: 5\n default_limit: 6\n",
        "key: 'unterminated\n",
        "- a list\n- at the top\n",
        "just a string\n",
        "a: &x [*x]\n",
        "a: &a [*a, *a, *a]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\n",
        "\x00\x01\x02",
        "search: !!python/object/apply:os.system ['true']\n",
    ]
    wrong_types = [
        ("search", {"default_limit": "many"}),
        ("search", {"max_limit": [1, 2]}),
        ("storage", {"threads": "two"}),
        ("indexing", {"debounce": "soon"}),
        ("memory", {"sample_interval": -5}),
        ("alerts", {"rules": [{"name": "x", "metric": "nope", "threshold": 1}]}),
        ("alerts", {"rules": [{"name": "x", "metric": "rss_bytes", "threshold": "lots"}]}),
        ("control", {"max_request_bytes": "huge"}),
        ("embedding", {"quantize": "int4"}),
        ("graph", {"backend": "sqlite"}),
        ("logging", {"level": "loud"}),
        ("schedule", {"maintenance": "every tuesday"}),
    ]
    unknown = ["serch", "vault", "indexing.debounse", "search.hybird", "metrics.port"]
    ranges = [
        ("search", {"default_limit": 0}),
        ("search", {"max_limit": 10**9}),
        ("indexing", {"chunk_tokens": 0}),
        ("indexing", {"chunk_overlap": 10**6}),
        ("storage", {"threads": -1}),
        ("control", {"rate_limit": -1}),
        ("graph", {"max_depth": 99}),
    ]
    kinds: list[tuple[str, Any]] = [("syntax", text) for text in syntax]
    for section, values in wrong_types:
        kinds.append(("wrong_type", {**valid, section: {**valid.get(section, {}), **values}}))
    for key in unknown:
        section, _, leaf = key.partition(".")
        if leaf:
            kinds.append(("unknown_key", {**valid, section: {**valid.get(section, {}), leaf: 1}}))
        else:
            kinds.append(("unknown_key", {**valid, section: 1}))
    for section, values in ranges:
        kinds.append(("out_of_range", {**valid, section: {**valid.get(section, {}), **values}}))
    kinds += [("unreadable", "chmod"), ("deleted", "delete"), ("directory", "directory")]
    kinds += [("truncated", dumped[: len(dumped) // 2] + "\n  - [")]
    for index in range(count):
        yield kinds[index % len(kinds)] if index < len(kinds) else rng.choice(kinds)


def config_faults(work: Path, count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    vault = work / "vault"
    shutil.copytree(EXAMPLE, vault)
    valid = base_config(work, vault, indexing={"on_start": False})
    daemon = Daemon(work, valid)
    daemon.start()
    refused = 0
    wrong: list[dict[str, Any]] = []
    kinds: dict[str, int] = {}
    reasons: dict[str, str] = {}
    try:
        for kind, content in broken_configs(valid, count, rng):
            kinds[kind] = kinds.get(kind, 0) + 1
            before = len(_events(daemon, "config.reload_failed"))
            path = daemon.config_path
            if content == "chmod":
                daemon.write(valid)
                path.chmod(0)
            elif content == "delete":
                path.unlink(missing_ok=True)
            elif content == "directory":
                path.unlink(missing_ok=True)
                path.mkdir()
            elif isinstance(content, str):
                path.write_text(content, encoding="utf-8", errors="surrogateescape")
            else:
                daemon.write(content)
            os.kill(daemon.pid, signal.SIGHUP)
            deadline = time.monotonic() + 30
            while len(_events(daemon, "config.reload_failed")) <= before:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            failures = _events(daemon, "config.reload_failed")
            status = daemon.client.get("/v1/status")
            serving = status.get("state") == "running"
            reload_failed = (status.get("last_reload") or {}).get("ok") is False
            limit = daemon.client.get("/v1/config")["config"]["search"]["default_limit"]
            ok = len(failures) > before and serving and reload_failed and limit == 10
            if ok:
                refused += 1
                reasons.setdefault(kind, str(failures[-1].get("reason", ""))[:300])
            else:
                wrong.append(
                    {
                        "kind": kind,
                        "serving": serving,
                        "logged": len(failures) > before,
                        "last_reload_ok_false": reload_failed,
                    }
                )
            if path.is_dir():
                path.rmdir()
            if path.exists():
                path.chmod(0o600)
        daemon.write(
            base_config(work, vault, indexing={"on_start": False}, search={"default_limit": 7})
        )
        applied = daemon.client.post("/v1/reload", {})
        took = daemon.client.get("/v1/config")["config"]["search"]["default_limit"] == 7
    finally:
        daemon.stop()
    return {
        "sent": count,
        "refused": refused,
        "kinds": kinds,
        "valid_file_applied_after": bool(applied.get("ok", True)) and took,
        "not_refused": wrong[:10],
        "a_reason_per_kind": reasons,
    }


def _events(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    out = []
    for line in daemon.log().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("event") == name:
            out.append(record)
    return out


# ----------------------------------------------------------------- bad requests

ROUTES = [
    "/v1/search",
    "/v1/notes",
    "/v1/notes/list",
    "/v1/graph/links",
    "/v1/graph/backlinks",
    "/v1/graph/neighbours",
    "/v1/graph/path",
    "/v1/graph/unresolved",
    "/v1/graph/orphans",
    "/v1/metrics/requests",
    "/v1/status",
    "/v1/index",
]
KEYS = [
    "q",
    "mode",
    "limit",
    "offset",
    "threshold",
    "tag",
    "folder",
    "vault",
    "since",
    "before",
    "path",
    "title",
    "depth",
    "direction",
    "source",
    "target",
    "cursor",
    "window",
]
NASTY = [
    "",
    "-1",
    "0",
    "99999999999999999999",
    "1e309",
    "nan",
    "-inf",
    "../../etc/passwd",
    "/etc/passwd",
    "..\\..\\x",
    "\x00",
    "\ud800",
    "\u202e\u202dabc",
    "\U0001f600" * 300,
    "' OR 1=1 --",
    "MATCH (n) DETACH DELETE n",
    "%s%s%n",
    "a" * 5000,
    "2024-13-45",
    "99999999999d",
    "semantic",
    "hybrid",
    "keyword",
    "Espresso",
    "out",
    "both",
]


def raw_request(path: Path, data: bytes, timeout: float = 120) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        with suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        reply = b""
        while b"\r\n" not in reply and (chunk := sock.recv(65536)):
            reply += chunk
    return int(reply.split(b" ", 2)[1]) if reply else 0


def random_request(rng: random.Random) -> bytes:
    params = {rng.choice(KEYS): rng.choice(NASTY) for _ in range(rng.randrange(0, 6))}
    query = urlencode(params, quote_via=quote, errors="surrogatepass")
    route = (
        rng.choice(ROUTES)
        if rng.random() < 0.9
        else "/v1/" + quote(rng.choice(NASTY), errors="surrogatepass")
    )
    target = f"{route}?{query}" if query else route
    method = rng.choice(["GET"] * 6 + ["POST", "PUT", "DELETE"])
    body = b""
    if method != "GET" or rng.random() < 0.1:
        route = rng.choice(["/v1/ask", "/v1/reload", route])
        target = route
        body = rng.choice(
            [
                b"{",
                b"[]",
                b'{"question": null}',
                json.dumps({"question": rng.choice(NASTY)}).encode(),
                os.urandom(rng.randrange(1, 400)),
                b'{"question": "' + b"x" * 5000 + b'"}',
            ]
        )
    head = f"{method} {target} HTTP/1.1\r\nHost: j\r\nConnection: close\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    if rng.random() < 0.03:
        head += "Content-Length: 99999999999\r\n"
    return (head + "\r\n").encode("utf-8", "surrogatepass") + body


def bad_requests(work: Path, count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    vault = work / "vault"
    shutil.copytree(EXAMPLE, vault)
    daemon = Daemon(work, base_config(work, vault))
    daemon.start()
    daemon.settle()
    process = psutil.Process(daemon.pid)
    statuses: dict[int, int] = {}
    try:
        for _ in range(50):  # warm: every route once, the model loaded
            raw_request(daemon.socket, b"GET /v1/search?q=espresso HTTP/1.1\r\nHost: j\r\n\r\n")
        baseline = process.memory_info().rss
        started = time.perf_counter()
        for _ in range(count):
            status = raw_request(daemon.socket, random_request(rng))
            statuses[status] = statuses.get(status, 0) + 1
        seconds = time.perf_counter() - started
        rss_after = process.memory_info().rss
        alive = daemon.client.get("/v1/status").get("state") == "running"
        failed = len(_events(daemon, "request.failed"))
    finally:
        code = daemon.stop()
    return {
        "tried": count,
        "status_counts": {str(key): value for key, value in sorted(statuses.items())},
        "5xx": sum(value for key, value in statuses.items() if key >= 500),
        "no_reply": statuses.get(0, 0),
        "crashes": 0 if alive and code == 0 else 1,
        "request_failed_logged": failed,
        "rss_before_mb": round(baseline / 2**20, 1),
        "rss_after_mb": round(rss_after / 2**20, 1),
        "requests_per_second": round(count / seconds, 1),
    }


# ------------------------------------------------------------------ connections


def connections(work: Path, stalled: int, burst: int) -> dict[str, Any]:
    vault = work / "vault"
    shutil.copytree(EXAMPLE, vault)
    config = base_config(
        work, vault, indexing={"on_start": False}, control={"request_timeout": "2s"}
    )
    daemon = Daemon(work, config)
    daemon.start()
    process = psutil.Process(daemon.pid)
    try:
        fds_before = process.num_fds()
        held = []
        for _ in range(stalled):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(daemon.socket))
            sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: j\r\n")
            held.append(sock)
        time.sleep(0.5)  # let the daemon accept them
        fds_peak = process.num_fds()
        # The timeout is 2 s; on a loaded machine the loop gets to it later: wait for it.
        freed_at = time.monotonic()
        while process.num_fds() > fds_before + 2 and time.monotonic() - freed_at < 120:
            time.sleep(0.1)
        freed_seconds = time.monotonic() - freed_at + 0.5
        fds_after = process.num_fds()
        for sock in held:
            sock.close()
        refused = 0
        opened = []
        for _ in range(burst):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(str(daemon.socket))
                opened.append(sock)
            except BlockingIOError:
                refused += 1
                sock.close()
        answers: dict[int, int] = {}
        # Every request is sent before any reply is read: sent one by one after the
        # replies before it, the last ones met the 2 s request timeout (closed unanswered).
        for sock in opened:
            sock.setblocking(True)
            sock.settimeout(120)
            with suppress(OSError):
                sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: j\r\nConnection: close\r\n\r\n")
        for sock in opened:
            try:
                reply = sock.recv(64)
                status = int(reply.split(b" ", 2)[1]) if reply else 0
            except OSError:
                status = 0
            finally:
                sock.close()
            answers[status] = answers.get(status, 0) + 1
    finally:
        daemon.stop()
    return {
        "stalled": stalled,
        "fds_before": fds_before,
        "fds_with_stalled": fds_peak,
        "fds_after_timeout": fds_after,
        "seconds_until_freed": round(freed_seconds, 1),
        "burst": burst,
        "refused_at_connect": refused,
        "answers": {str(key): value for key, value in sorted(answers.items())},
    }


# ------------------------------------------------------------------------ load


def load(
    work: Path, clients: int, minutes: float, seed: int, source: Path | None = None
) -> dict[str, Any]:
    vault = work / "vault"
    replicate(vault, 300, source)
    config = base_config(
        work, vault, indexing={"on_start": True, "watch": True, "debounce": "500ms"}
    )
    daemon = Daemon(work, config)
    daemon.start()
    daemon.settle()
    process = psutil.Process(daemon.pid)
    notes = sorted(vault.rglob("*.md"))
    titles = [path.stem for path in notes[:200]]
    stop = threading.Event()
    lock = threading.Lock()
    errors: list[str] = []
    latencies: dict[int, list[float]] = {}
    samples: list[dict[str, float]] = []
    started = time.monotonic()

    def client_loop(index: int) -> None:
        rng = random.Random(seed + index)
        client = ControlClient(daemon.socket, timeout=120)
        while not stop.is_set():
            title = rng.choice(titles)
            choice = rng.random()
            begin = time.perf_counter()
            try:
                if choice < 0.6:
                    mode = rng.choice(["hybrid", "semantic", "keyword"])
                    client.get("/v1/search", q=f"{title} notes", mode=mode)
                elif choice < 0.75:
                    client.get("/v1/graph/backlinks", title=title)
                elif choice < 0.9:
                    client.get("/v1/notes", title=title)
                else:
                    client.get("/v1/status")
            except DaemonError as error:
                if error.status >= 500 or error.status == 429:
                    with lock:
                        errors.append(f"{error.status} {error.message[:120]}")
                # 404/409 for an ambiguous or missing title are answers, not errors
            except (DaemonUnreachable, OSError) as error:
                with lock:
                    errors.append(f"unreachable {error}")
            minute = int((time.monotonic() - started) // 60)
            with lock:
                latencies.setdefault(minute, []).append(time.perf_counter() - begin)

    def editor() -> None:
        rng = random.Random(seed)
        while not stop.wait(3.0):
            note = rng.choice(notes)
            with note.open("a", encoding="utf-8") as file:
                file.write(f"\nload edit {rng.random():.6f}\n")

    def sampler() -> None:
        while not stop.wait(10.0):
            samples.append(
                {
                    "t": time.monotonic() - started,
                    "rss": process.memory_info().rss,
                    "fds": process.num_fds(),
                    "threads": process.num_threads(),
                }
            )

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    threads += [threading.Thread(target=editor), threading.Thread(target=sampler)]
    for thread in threads:
        thread.start()
    time.sleep(minutes * 60)
    stop.set()
    for thread in threads:
        thread.join()
    daemon.stop()
    later = [sample for sample in samples if sample["t"] >= min(60.0, minutes * 30)]
    first, last = (later[0], later[-1]) if later else ({}, {})
    return {
        "clients": clients,
        "minutes": minutes,
        "requests": sum(len(values) for values in latencies.values()),
        "errors": len(errors),
        "error_examples": errors[:5],
        "p99_ms_per_minute": {
            str(minute): round(percentiles(values)["p99"] * 1000, 1)
            for minute, values in sorted(latencies.items())
        },
        "rss_growth_percent": round(100 * (last["rss"] / first["rss"] - 1), 1) if later else None,
        "fds": [first.get("fds"), last.get("fds")],
        "threads": [first.get("threads"), last.get("threads")],
    }


# --------------------------------------------------------------------- security


def as_uid(uid: int, socket_path: Path) -> str:
    """Fork, drop to `uid` (a real other user), ask for /v1/status; what came back."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child runs only modules imported already
        os.close(read_end)
        try:
            os.setgid(uid)
            os.setuid(uid)
            ControlClient(socket_path, timeout=30).get("/v1/status")
            result = "served"
        except DaemonError as error:
            result = f"{error.status} {error.message}"
        except BaseException as error:
            result = f"{type(error).__name__}: {error}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def security(work: Path) -> dict[str, Any]:
    vault = work / "vault"
    shutil.copytree(EXAMPLE, vault)
    daemon = Daemon(work, base_config(work, vault, indexing={"on_start": False}))
    daemon.start()
    socket_mode = oct(daemon.socket.stat().st_mode & 0o777)
    directory_mode = oct(daemon.socket.parent.stat().st_mode & 0o777)
    other_uid = "skipped: not root"
    if os.geteuid() == 0:
        # Open the path's modes for this check only, so the uid check alone decides.
        for folder in (work, daemon.socket.parent):
            folder.chmod(0o755)
        daemon.socket.chmod(0o666)
        other_uid = as_uid(NOBODY, daemon.socket)
    daemon.stop()
    exposure: dict[str, Any] = {}
    if shutil.which("systemd-analyze"):
        for unit in ("jarvisd.service", "jarvisd@.service"):
            path = REPO / "packaging" / "systemd" / unit
            out = subprocess.run(
                ["systemd-analyze", "security", "--offline=true", str(path)],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            line = next((row for row in out.splitlines() if "Overall exposure" in row), "")
            exposure[unit] = line.split("level for")[-1].strip() if line else out[-200:]
    else:
        exposure["skipped"] = "systemd-analyze is not installed (Debian: apt install systemd)"
    return {
        "socket_mode": socket_mode,
        "socket_directory_mode": directory_mode,
        "other_uid_answer": other_uid,
        "systemd_exposure": exposure,
    }


# ------------------------------------------------------------------------ main


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


@contextmanager
def scratch(name: str, keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"jr-{name}-", dir="/tmp"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few of each, for CI")
    parser.add_argument("--only", nargs="*", help="sections to run (default: all)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    args = parser.parse_args()
    quick = args.quick
    # Quick runs replicate the 15-note example vault: one copy to encode, not 173 notes.
    source = EXAMPLE if quick else None
    sizes: dict[str, dict[str, Any]] = {
        "crash": {"notes": 150 if quick else 2000, "runs": 3 if quick else 25, "source": source},
        "config": {"count": 40 if quick else 100},
        "requests": {"count": 300 if quick else 3000},
        "connections": {"stalled": 50 if quick else 200, "burst": 300 if quick else 1000},
        "load": {"clients": 8 if quick else 32, "minutes": 0.5 if quick else 10, "source": source},
        "chaos": {
            "notes": 45 if quick else 300,
            "edits": 200 if quick else 1000,
            "folder": 40 if quick else 200,
        },
        "storage": {"notes": 30 if quick else 150},
    }
    sections = {
        "crash": lambda w: crash_runs(w, seed=args.seed, **sizes["crash"]),
        "config": lambda w: config_faults(w, seed=args.seed, **sizes["config"]),
        "requests": lambda w: bad_requests(w, seed=args.seed, **sizes["requests"]),
        "connections": lambda w: connections(w, **sizes["connections"]),
        "load": lambda w: load(w, seed=args.seed, **sizes["load"]),
        "security": security,
        "chaos": lambda w: chaos(w, seed=args.seed, **sizes["chaos"]),
        "storage": lambda w: storage(w, **sizes["storage"]),
        "upgrades": upgrades,
    }
    wanted = args.only or list(sections)
    report: dict[str, Any] = {"quick": quick, "seed": args.seed}
    started = time.perf_counter()
    for name in wanted:
        section_started = time.perf_counter()
        with scratch(name, args.keep) as work:
            try:
                report[name] = sections[name](work)
            except Exception as error:  # a section that breaks is a finding, not the end
                report[name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
        report[name]["section_seconds"] = round(time.perf_counter() - section_started, 1)
        print(json.dumps({name: report[name]}), file=sys.stderr, flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
