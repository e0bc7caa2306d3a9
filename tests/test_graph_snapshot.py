"""The duckdb backend's snapshots: fresh after every index run, built once, equal to the SQL walks.

Edits, renames and deletes go through the real indexer. The edits only
retarget links (`[[c]]` -> `[[d|c]]` reads "c" either way), so every chunk's
text is unchanged, its stored vector is reused, and the model never loads.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import graph_cte
import pytest
from graph_fixtures import CONTRACT_VAULTS, build_store, write_vault

from jarvisd.config import GraphConfig, ThreadsConfig
from jarvisd.graph import DIRECTIONS, NoteNotFound
from jarvisd.graph.duckdb import DuckDBGraph
from jarvisd.graph.service import GraphService
from jarvisd.graph.snapshot import Snapshots, VaultGraph, read_vault_graph
from jarvisd.indexing.indexer import Indexer, RunReport
from jarvisd.lifecycle import deadline_in
from jarvisd.pools import Pools
from jarvisd.store import Store
from jarvisd.testing import IndexedVault, vault_config

HELP = Path(__file__).resolve().parents[2] / "shared" / "data" / "obsidian-help"


@dataclass
class Indexed:
    """The shared harness over a store written without the model, and a graph service on it."""

    vault: IndexedVault
    indexer: Indexer
    service: GraphService

    @property
    def root(self) -> Path:
        return self.vault.vault

    @property
    def store(self) -> Store:
        return self.vault.store

    def edit(self, path: str, old: str, new: str) -> None:
        self.vault.edit(path, old, new)

    async def run(self) -> RunReport:
        report = await self.indexer.run()
        assert not self.vault.embedder.loaded  # no chunk text changed: vectors were reused
        return report


@pytest.fixture
async def indexed(tmp_path: Path) -> AsyncIterator[Indexed]:
    root = write_vault(tmp_path / "v", CONTRACT_VAULTS["v"])
    database = tmp_path / "jarvis.duckdb"
    config = vault_config(root, database, name="v")
    with IndexedVault.open(config, build_store(database, {"v": root})) as vault:
        service = GraphService(config, vault.store, vault.pools, vault.metrics)
        indexer = vault.indexer()
        await service.start()
        indexer.on_change(service.on_index_changed)  # as Knowledge wires them
        indexer.subscribe(service.on_index_event)
        yield Indexed(vault, indexer, service)
        await service.stop(deadline_in(10))


async def out_of(indexed: Indexed, path: str, depth: int = 1) -> dict[str, int]:
    result = await indexed.service.neighbours("v", path, depth, "out")
    return {item.path: item.distance for item in result.neighbours}


async def sources(indexed: Indexed, path: str) -> list[str]:
    return [link.source for link in (await indexed.service.backlinks("v", path)).links]


# ------------------------------------------------------------ after index runs


async def test_an_edit_is_answered_after_the_run(indexed: Indexed) -> None:
    assert await out_of(indexed, "a.md") == {"b.md": 1, "c.md": 1}  # the snapshot is built
    indexed.edit("a.md", "[[c]]", "[[d|c]]")
    report = await indexed.run()
    assert report.state == "done" and report.files_changed == 1
    assert await out_of(indexed, "a.md") == {"b.md": 1, "d.md": 1}
    links = (await indexed.service.links("v", "a.md")).links
    assert [(link.target, link.target_path, link.alias) for link in links] == [
        ("b", "b.md", None),
        ("d", "d.md", "c"),
        ("Ghost", None, None),
    ]
    assert await sources(indexed, "c.md") == ["b.md"]
    walked = await indexed.service.path("v", "a.md", "d.md", "out")
    assert [note.path for note in walked.notes] == ["a.md", "d.md"]


async def test_a_rename_is_answered_after_the_run(indexed: Indexed) -> None:
    assert await out_of(indexed, "c.md") == {"d.md": 1}
    (indexed.root / "d.md").rename(indexed.root / "folder" / "d.md")
    report = await indexed.run()
    assert report.state == "done" and report.files_renamed == 1
    assert await out_of(indexed, "c.md") == {"folder/d.md": 1}  # [[d]] follows the file
    assert await sources(indexed, "folder/d.md") == ["c.md"]
    with pytest.raises(NoteNotFound):
        await indexed.service.backend.outgoing("v", "d.md")


async def test_a_delete_is_answered_after_the_run(indexed: Indexed) -> None:
    assert await out_of(indexed, "a.md", 2) == {"b.md": 1, "c.md": 1, "d.md": 2}
    (indexed.root / "c.md").unlink()
    report = await indexed.run()
    assert report.state == "done" and report.files_deleted == 1
    assert await out_of(indexed, "a.md", 2) == {"b.md": 1}
    links = (await indexed.service.links("v", "a.md")).links
    assert [link.target_path for link in links] == ["b.md", None, None]
    assert await sources(indexed, "d.md") == []
    with pytest.raises(NoteNotFound):
        await indexed.service.backend.outgoing("v", "c.md")


async def test_a_failed_run_still_refreshes_what_it_wrote(
    indexed: Indexed, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await out_of(indexed, "a.md") == {"b.md": 1, "c.md": 1}

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("finalize failed")

    monkeypatch.setattr(indexed.store, "finalize", fail)
    indexed.edit("a.md", "[[c]]", "[[d|c]]")
    report = await indexed.run()
    assert report.state == "failed"
    # The note was written; its new link waits for the link resolution finalize owes.
    links = (await indexed.service.links("v", "a.md")).links
    assert [(link.target, link.target_path) for link in links][1] == ("d", None)
    assert await out_of(indexed, "a.md") == {"b.md": 1}


async def test_status_describes_the_snapshots(indexed: Indexed) -> None:
    await out_of(indexed, "a.md")
    held = indexed.service.status()["snapshots"]["v"]
    assert held["notes"] == 8 and held["links"] == 10 and held["memory_bytes"] > 0


# ------------------------------------------------------------------- building


@pytest.fixture
def contract_store(tmp_path: Path) -> Iterator[Store]:
    roots = {name: write_vault(tmp_path / name, notes) for name, notes in CONTRACT_VAULTS.items()}
    store = build_store(tmp_path / "jarvis.duckdb", roots)
    yield store
    store.close()


class GatedBuilder:
    """Reads the real snapshot, but only once `gate` is set; records each build's generation."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.gate = threading.Event()
        self.started = threading.Event()
        self.generations: list[int] = []

    def __call__(self, vault: str, generation: int) -> VaultGraph:
        self.generations.append(generation)
        self.started.set()
        self.gate.wait(timeout=30)
        return read_vault_graph(self.store, vault, generation)


def test_waiting_queries_share_one_build(contract_store: Store) -> None:
    builder = GatedBuilder(contract_store)
    snapshots = Snapshots(builder)
    with ThreadPoolExecutor(4) as threads:
        waiting = [threads.submit(snapshots.get, "v") for _ in range(4)]
        builder.started.wait(timeout=30)
        assert not any(item.done() for item in waiting)  # nobody gets a half-built one
        builder.gate.set()
        answers = [item.result() for item in waiting]
    assert builder.generations == [0]
    assert all(answer is answers[0] for answer in answers)
    assert answers[0].numbers.keys() == CONTRACT_VAULTS["v"].keys()


def test_a_change_during_a_build_is_built_again(contract_store: Store) -> None:
    builder = GatedBuilder(contract_store)
    snapshots = Snapshots(builder)
    with ThreadPoolExecutor(1) as threads:
        first = threads.submit(snapshots.get, "v")
        builder.started.wait(timeout=30)
        snapshots.invalidate()  # the store changed after the build began reading
        builder.gate.set()
        assert first.result().generation == 0
    assert snapshots.get("v").generation == 1
    assert snapshots.get("v") is snapshots.get("v")
    assert builder.generations == [0, 1]


# ------------------------------------------------------- same answers as SQL


@pytest.fixture(scope="module")
def help_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    if not HELP.is_dir():
        pytest.skip(f"no vault at {HELP}")
    store = build_store(tmp_path_factory.mktemp("help") / "jarvis.duckdb", {"help": HELP})
    yield store
    store.close()


@pytest.mark.slow
async def test_answers_equal_the_sql_walks_on_obsidian_help(help_store: Store) -> None:
    pools = Pools(ThreadsConfig())
    graph = DuckDBGraph(GraphConfig(max_depth=3), help_store, pools)
    cursor = help_store.reader()
    paths = sorted(path for path, _ in help_store.note_paths_and_aliases("help"))
    try:
        for path in paths:
            assert await graph.outgoing("help", path) == graph_cte.outgoing(cursor, "help", path)
            assert await graph.backlinks("help", path) == graph_cte.backlinks(cursor, "help", path)
        for number, path in enumerate(paths[::3]):
            for direction in DIRECTIONS:
                for depth, limit in ((1, 500), (2, 500), (3, 500), (3, 7)):
                    expected = graph_cte.neighbours(cursor, "help", path, depth, direction, limit)
                    assert await graph.neighbours("help", path, depth, direction, limit) == expected
                target = paths[(number * 37) % len(paths)]
                expected_path = graph_cte.shortest_path(cursor, "help", path, target, direction)
                assert await graph.shortest_path("help", path, target, direction) == expected_path
    finally:
        await graph.close()
        pools.shutdown()
