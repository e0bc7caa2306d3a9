"""The reliability benchmark's harness: jarvisd as a subprocess, index fingerprints,
a clean reference index, and the daemon's log events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import yaml

from benchmarks.common import REPO, SHARED_DATA
from jarvisd.cli.client import ControlClient, DaemonError, DaemonUnreachable
from jarvisd.config import Config
from jarvisd.indexing.indexer import Indexer
from jarvisd.model.embedder import Embedder
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools
from jarvisd.store import Store
from jarvisd.store.connection import EXTENSIONS, extension_path
from jarvisd.store.schema import VECTOR_TABLE_NAME

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

    def log_size(self) -> int:
        path = self.root / "daemon.log"
        return path.stat().st_size if path.exists() else 0

    def events(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        """The log's JSON events called `name`, from byte `since` on."""
        path = self.root / "daemon.log"
        if not path.exists():
            return []
        with path.open("rb") as file:
            file.seek(since)
            text = file.read().decode("utf-8", errors="replace")
        return _named(text, name)

    def wait_for_event(self, name: str, since: int = 0, timeout: float = 600.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name, since)
            if found:
                return found[0]
            time.sleep(0.02)
        raise RuntimeError(f"no {name} in {timeout:.0f} s:\n{self.log()[-3000:]}")

    def wait_for_model(self, timeout: float = 300.0) -> None:
        """Until the embedding model is loaded (with `embedding.preload`, after READY)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.client.get("/v1/status").get("embedding", {}).get("loaded"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the model did not load:\n{self.log()[-3000:]}")

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
        # Each daemon life loads the model when it first encodes, not on every start: a
        # preload cost about 6 CPU-seconds per life (13 s at load 15 on 2 cores) and made
        # a stop wait for it, in sections that never encode (security, config, connections).
        "embedding": {"quantize": "int8", "preload": False},
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
        return fingerprint_of(db)


def fingerprint_of(db: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """`fingerprint` through an open connection."""
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


def vector_table_check(database: Path, m: int, ef_construction: int) -> dict[str, Any]:
    """The HNSW table the meta names: there, built with `m` and `ef_construction`, and
    holding every chunk up to its highest id with that chunk's vector (the table is
    never written after its build; chunk ids are never reused)."""
    with duckdb.connect(
        str(database),
        read_only=True,
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    ) as db:
        for name, package in EXTENSIONS:  # an HNSW-indexed table needs vss loaded
            db.execute(f"LOAD '{extension_path(name, package)}'")
        meta = dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'hnsw.%'").fetchall())
        table = meta.get("hnsw.table")
        if table is None or not VECTOR_TABLE_NAME.fullmatch(table):
            return {"ok": False, "table": table, "error": "no vector table"}
        parameters = f"metric=cosine,m={m},ef_construction={ef_construction}"
        row = db.execute(f"""
            SELECT count(*) FILTER (WHERE t.id IS NULL),
                   count(*) FILTER (WHERE t.id IS NOT NULL AND t.embedding != c.embedding)
            FROM chunks c LEFT JOIN {table} t ON t.id = c.id
            WHERE c.id <= {int(meta["hnsw.max_chunk_id"])}
        """).fetchone()
        indexes = db.execute(
            "SELECT count(*) FROM duckdb_indexes() WHERE table_name = ?", [table]
        ).fetchone()
    assert row is not None and indexes is not None
    missing, differing = int(row[0]), int(row[1])
    check = {
        "table": table,
        "parameters_ok": meta.get("hnsw.parameters") == parameters,
        "indexed": int(indexes[0]) == 1,
        "vectors_missing": missing,
        "vectors_differing": differing,
    }
    return {"ok": check["parameters_ok"] and check["indexed"] and not missing + differing, **check}


class Reference:
    """A clean index of the same vault, built in this process and never killed."""

    def __init__(self, root: Path, daemon_config: dict[str, Any]) -> None:
        values = {key: daemon_config[key] for key in ("vaults", "embedding", "indexing")}
        values["storage"] = {"database": str(root / "reference.duckdb")}
        self.config = Config.model_validate(values)
        self.pools, self.metrics = Pools(self.config.threads), Metrics()
        self.embedder = Embedder(self.config.embedding)
        self.dimension = self.embedder.probe_dimension()
        self.store = Store(self.config.database_path, self.config.storage, self.dimension)

    def index(self) -> float:
        started = time.perf_counter()
        indexer = Indexer(self.config, self.store, self.embedder, self.pools, self.metrics)
        report = asyncio.run(indexer.run())
        assert report.state == "done", report.error
        return time.perf_counter() - started

    def fingerprint(self) -> dict[str, Any]:
        # Through the store's own read cursor: the file is open in this process.
        return fingerprint_of(self.store.reader())

    def copy(self, target: Path) -> Path:
        """The clean index as one checkpointed file at `target`."""
        self.store.checkpoint()
        self.store.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.config.database_path, target)
        self.store = Store(
            self.config.database_path, self.config.storage, self.embedder.probe_dimension()
        )
        return target

    def close(self) -> None:
        self.store.close()
        self.pools.shutdown()


def _quietly(call: Any, *args: Any) -> None:
    # The daemon is killed under it: that is the point.
    with contextlib.suppress(DaemonError, DaemonUnreachable, OSError):
        call(*args)


def _events(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    return _named(daemon.log(), name)


def _named(text: str, name: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("event") == name:
            out.append(record)
    return out
