"""Search through the real daemon: socket route, jarvisctl, reload, freshness, MINIMAL memory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProcess, ctl

from jarvisd.cli.client import DaemonError

pytestmark = [pytest.mark.serial, pytest.mark.slow]
Start = Callable[..., DaemonProcess]
EXAMPLE = Path(__file__).resolve().parents[1] / "jarvisd" / "example_vault"


def vault_copy(root: Path) -> Path:
    vault = root / "vault"
    shutil.copytree(EXAMPLE, vault)
    return vault


def index_now(daemon: DaemonProcess) -> dict[str, Any]:
    events = list(daemon.client.stream("POST", "/v1/index", query={"wait": 1}))
    run: dict[str, Any] = events[-1]["run"]
    assert run["state"] == "done", run
    return run


def test_search_over_the_socket_and_jarvisctl(start_daemon: Start, short_tmp: Path) -> None:
    vault = vault_copy(short_tmp)
    daemon = start_daemon(
        vaults=[{"name": "notes", "path": str(vault)}],
        embedding={"preload": True},
        indexing={"on_start": True, "watch": False},
        search={"max_query_chars": 50},
    )
    # Straight after start-up the model may still be loading: the search waits, never fails.
    early = daemon.client.get("/v1/search", q="espresso")
    assert early["mode"] == "hybrid" and isinstance(early["results"], list)
    index_now(daemon)
    check_modes_and_bounds(daemon)
    check_jarvisctl(daemon)
    check_reload_and_freshness(daemon, vault)


def check_modes_and_bounds(daemon: DaemonProcess) -> None:
    for mode in ("keyword", "semantic", "hybrid"):
        reply = daemon.client.get("/v1/search", q="espresso grind size", mode=mode, limit=3)
        assert reply["mode"] == mode and len(reply["results"]) == 3 and reply["total"] >= 3
        assert {"query", "took_ms", "total", "degraded", "cached"} <= set(reply)
        assert reply["results"][0]["path"].startswith("Coffee/")
    with pytest.raises(DaemonError) as refused:
        daemon.client.get("/v1/search", q="x" * 51)
    assert refused.value.status == 400 and "search.max_query_chars" in refused.value.message
    stats = daemon.client.get("/v1/search/stats")
    assert stats["caches"]["results"]["hits"] + stats["caches"]["results"]["misses"] > 0
    latency = daemon.client.get("/v1/metrics/latency")["operations"]
    assert "search:hybrid" in latency and "search:keyword" in latency


def check_jarvisctl(daemon: DaemonProcess) -> None:
    table = ctl(daemon, "search", "espresso", "grind", "--limit", "2")
    assert table.returncode == 0, table.stderr
    assert "Espresso at home" in table.stdout and "Coffee/" in table.stdout
    footer = table.stdout.splitlines()[-1]  # 1-2 of N (hybrid, meaning 0.55, 12.3 ms)
    assert " of " in footer and "(hybrid, meaning 0.55, " in footer, footer
    as_json = json.loads(ctl(daemon, "search", "espresso", "--json", "--mode", "keyword").stdout)
    assert as_json["mode"] == "keyword" and as_json["results"][0]["highlights"]
    too_long = ctl(daemon, "search", "y" * 60)
    assert too_long.returncode == 1 and "search.max_query_chars" in too_long.stderr
    assert ctl(daemon, "search", "x", "--mode", "fuzzy").returncode == 2


def check_reload_and_freshness(daemon: DaemonProcess, vault: Path) -> None:
    daemon.rewrite(
        search={"max_query_chars": 50, "cache": {"size": 7}},
        embedding={"preload": True, "query_cache_size": 3},
    )
    assert daemon.client.post("/v1/reload")["ok"]
    caches = daemon.client.get("/v1/search/stats")["caches"]
    assert caches["results"]["capacity"] == 7 and caches["query_embeddings"]["capacity"] == 3

    # An edit, indexed, is what the next search sees (the cached answer is gone).
    assert daemon.client.get("/v1/search", q="birch plywood", mode="keyword")["results"]
    shelf = vault / "Projects" / "Workshop shelf.md"
    shelf.write_text(shelf.read_text().replace("birch plywood", "oak boards"), encoding="utf-8")
    index_now(daemon)
    new = daemon.client.get("/v1/search", q="oak boards", mode="hybrid")
    assert not new["cached"] and "oak boards" in new["results"][0]["snippet"]
    old = daemon.client.get("/v1/search", q="birch plywood", mode="keyword")
    assert not old["cached"]
    assert "Projects/Workshop shelf.md" not in [r["path"] for r in old["results"]]


def test_minimal_memory_degrades_to_keyword_search(start_daemon: Start, short_tmp: Path) -> None:
    vault = vault_copy(short_tmp)
    schedule = {"index": None, "maintenance": None, "memory_sample": "200ms"}
    daemon = start_daemon(vaults=[{"name": "notes", "path": str(vault)}], schedule=schedule)
    index_now(daemon)
    assert not daemon.client.get("/v1/search", q="sourdough starter", mode="semantic")["degraded"]
    # Now memory runs out: thresholds no machine meets put the next sample in MINIMAL.
    daemon.rewrite(memory={"modes": {"full_min_available": "10TB", "lite_min_available": "9TB"}})
    assert daemon.client.post("/v1/reload")["ok"]
    deadline = time.monotonic() + 30
    while daemon.client.get("/v1/status")["memory_mode"] != "MINIMAL":
        assert time.monotonic() < deadline, daemon.output()
        time.sleep(0.1)
    for mode in ("semantic", "hybrid"):
        reply = daemon.client.get("/v1/search", q="sourdough starter", mode=mode)
        assert reply["degraded"] is True and "MINIMAL" in reply["degraded_reason"]
        assert reply["results"] and all(r["modes"] == ["keyword"] for r in reply["results"])
    keyword = daemon.client.get("/v1/search", q="sourdough starter", mode="keyword")
    assert keyword["degraded"] is False and keyword["results"]


def test_semantic_search_moves_to_hnsw_and_back_on_sighup(
    start_daemon: Start, short_tmp: Path
) -> None:
    """storage.hnsw.enabled flips on reload: the index is built or dropped, searches follow."""
    vault = vault_copy(short_tmp)
    daemon = start_daemon(vaults=[{"name": "notes", "path": str(vault)}])
    index_now(daemon)
    query = {"q": "my levain went pink", "mode": "semantic", "threshold": "0"}
    exact = daemon.client.get("/v1/search", **query)
    assert wait_for_source(daemon, "matrix")
    for enabled, source in ((True, "hnsw"), (False, "matrix")):
        daemon.rewrite(storage={"hnsw": {"enabled": enabled}}, search={"cache": {"size": 0}})
        daemon.signal(signal.SIGHUP)
        assert wait_for_source(daemon, source), daemon.output()
        assert daemon.client.get("/v1/index")["index"]["vector_index"] == int(enabled)
        reply = daemon.client.get("/v1/search", **query)
        assert [r["path"] for r in reply["results"]] == [r["path"] for r in exact["results"]]
        assert not reply["degraded"]
        if enabled:
            check_edits_reach_the_hnsw_copy(daemon, vault)


def check_edits_reach_the_hnsw_copy(daemon: DaemonProcess, vault: Path) -> None:
    """A new note is found before any rebuild; maintenance folds it into a new copy."""
    (vault / "Slugs.md").write_text("# Slugs\n\nBeer traps keep slugs off the lettuce.\n")
    index_now(daemon)
    reply = daemon.client.get("/v1/search", q="keeping slugs away", mode="semantic")
    assert reply["results"][0]["path"] == "Slugs.md"
    snapshot = daemon.client.get("/v1/search/stats")["snapshot"]  # the one that answered
    assert snapshot["vector_table"] == "chunk_vectors_1", snapshot
    assert snapshot["chunks_after_vector_table"] >= 1
    assert "vector_index" in [
        step["step"] for step in daemon.client.post("/v1/maintenance")["steps"]
    ]
    deadline = time.monotonic() + 30
    while daemon.client.get("/v1/search/stats")["snapshot"]["vector_table"] != "chunk_vectors_2":
        assert time.monotonic() < deadline, daemon.output()
        time.sleep(0.1)
    stats = daemon.client.get("/v1/search/stats")["snapshot"]
    assert stats["chunks_after_vector_table"] == 0
    reply = daemon.client.get("/v1/search", q="keeping slugs away", mode="semantic")
    assert reply["results"][0]["path"] == "Slugs.md"


def wait_for_source(daemon: DaemonProcess, source: str, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        snapshot = daemon.client.get("/v1/search/stats")["snapshot"]
        if snapshot is not None and snapshot["semantic_source"] == source:
            return True
        time.sleep(0.1)
    return False


def test_a_touch_moves_a_note_in_date_filters_without_restart(
    start_daemon: Start, short_tmp: Path
) -> None:
    """`touch -d 2023-06-01` (or `git checkout`, a sync restoring times): the watcher's run
    records it as a touch, and the patched snapshot's `modified` follows (issue #12 point 1)."""
    vault = vault_copy(short_tmp)
    daemon = start_daemon(
        vaults=[{"name": "notes", "path": str(vault)}],
        indexing={"on_start": True, "watch": True, "debounce": "200ms"},
        search={"cache": {"size": 0}},
    )
    index_now(daemon)
    shelf = "Projects/Workshop shelf.md"

    def paths(*flags: str) -> list[str]:
        done = ctl(daemon, "search", "birch", "plywood", "--mode", "keyword", "--json", *flags)
        assert done.returncode == 0, done.stderr
        return [result["path"] for result in json.loads(done.stdout)["results"]]

    assert shelf in paths("--since", "2024-01-01") and shelf not in paths("--before", "2024-01-01")
    pid = daemon.process.pid
    june = datetime(2023, 6, 1, tzinfo=UTC).timestamp()
    os.utime(vault / shelf, (june, june))  # what `touch -d 2023-06-01` does
    deadline = time.monotonic() + 60
    while shelf not in paths("--before", "2024-01-01"):
        assert time.monotonic() < deadline, daemon.output()
        time.sleep(0.2)
    assert shelf not in paths("--since", "2024-01-01")
    assert daemon.process.pid == pid
    runs = daemon.client.get("/v1/index")
    assert runs["last_run"]["files_touched"] >= 1, runs
    snapshot = daemon.client.get("/v1/search/stats")["snapshot"]
    assert snapshot["patched_notes"] >= 1, snapshot  # patched, not rebuilt whole
