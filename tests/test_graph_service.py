"""The graph component: limits from the live config, latency, and when a projection syncs.

GraphSync is driven by a recording stand-in for its ProjectionWriter (our own
Protocol): the real writer needs a Neo4j server, which these machines lack.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from graph_fixtures import CONTRACT_VAULTS, build_store, write_vault

from jarvisd.api.errors import from_domain
from jarvisd.config import Config, diff_configs
from jarvisd.graph import (
    GraphUnavailable,
    InvalidGraphQuery,
    PerVault,
    Projection,
    SyncReport,
)
from jarvisd.graph.service import GraphService
from jarvisd.graph.sync import GraphSync
from jarvisd.indexing.progress import RunReport
from jarvisd.lifecycle import deadline_in
from jarvisd.notes.service import NoteNotFoundError
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools
from jarvisd.store import Store


def config_for(root: Path, **graph: object) -> Config:
    return Config.model_validate({"vaults": [{"name": "v", "path": str(root)}], "graph": graph})


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[GraphService]:
    root = write_vault(tmp_path / "v", CONTRACT_VAULTS["v"])
    store = build_store(tmp_path / "jarvis.duckdb", {"v": root})
    config = config_for(root)
    pools = Pools(config.threads)
    made = GraphService(config, store, pools, Metrics())
    await made.start()
    yield made
    await made.stop(deadline_in(10))
    pools.shutdown()
    store.close()


async def test_max_depth_follows_a_reload(service: GraphService, tmp_path: Path) -> None:
    with pytest.raises(InvalidGraphQuery, match="between 1 and 3"):
        await service.neighbours(None, "a.md", 4, "out")
    deeper = config_for(tmp_path / "v", max_depth=5)
    service.reconfigure(deeper, diff_configs(config_for(tmp_path / "v"), deeper)[1])
    result = await service.neighbours(None, "a.md", 5, "out")
    assert {item.path for item in result.neighbours} == {"b.md", "c.md", "d.md"}


async def test_direction_and_limit_are_checked(service: GraphService) -> None:
    with pytest.raises(InvalidGraphQuery, match="direction must be one of out, in, both"):
        await service.neighbours(None, "a.md", 1, "sideways")
    with pytest.raises(InvalidGraphQuery, match="limit must be between 1 and 10000"):
        await service.neighbours(None, "a.md", 1, "out", limit=0)


async def test_each_query_is_timed(service: GraphService) -> None:
    await service.neighbours(None, "Alpha", 2, "both")
    await service.orphans(None)
    operations = service._metrics.latency.operations()
    assert {"graph:neighbours", "graph:orphans"} <= set(operations)


# ------------------------------------------------------------------ several vaults

OTHER = {"a.md": "# Another A\n[[z]]\n", "z.md": "---\ntitle: Zed\n---\n# Z\n"}


@pytest.fixture
async def two_vaults(tmp_path: Path) -> AsyncIterator[GraphService]:
    first = write_vault(tmp_path / "v", CONTRACT_VAULTS["v"])
    second = write_vault(tmp_path / "u", OTHER)
    store = build_store(tmp_path / "two.duckdb", {"v": first, "u": second})
    config = Config.model_validate(
        {"vaults": [{"name": "v", "path": str(first)}, {"name": "u", "path": str(second)}]}
    )
    pools = Pools(config.threads)
    made = GraphService(config, store, pools, Metrics())
    await made.start()
    yield made
    await made.stop(deadline_in(10))
    pools.shutdown()
    store.close()


async def test_a_note_only_in_the_second_vault_is_found(two_vaults: GraphService) -> None:
    result = await two_vaults.neighbours(None, "Zed", 1, "both")
    assert (result.vault, result.note.path) == ("u", "z.md")
    assert [item.path for item in result.neighbours] == ["a.md"]


async def test_a_note_in_several_vaults_answers_with_the_candidates(
    two_vaults: GraphService,
) -> None:
    links = await two_vaults.links(None, "a.md")
    assert links.vault == "v"  # a path in both: the vault configured first
    reply = links.as_dict()
    assert reply["match"]["ambiguous"] is True
    assert [(item["vault"], item["path"]) for item in reply["match"]["vaults"]] == [
        ("v", "a.md"),
        ("u", "a.md"),
    ]
    named = await two_vaults.links("u", "a.md")
    assert (named.vault, named.match) == ("u", None)
    assert [link.target for link in named.links] == ["z"]


async def test_a_path_is_walked_in_the_vault_holding_both_ends(two_vaults: GraphService) -> None:
    walk = await two_vaults.path(None, "a", "Zed")
    assert walk.vault == "u" and [note.path for note in walk.notes] == ["a.md", "z.md"]
    with pytest.raises(NoteNotFoundError, match=r"no vault holds both 'b' \(in v\) and 'Zed'"):
        await two_vaults.path(None, "b", "Zed")


async def test_reports_of_no_vault_in_particular_cover_every_vault(
    two_vaults: GraphService,
) -> None:
    orphans = await two_vaults.orphans(None)
    assert isinstance(orphans, PerVault)
    assert [report["vault"] for report in orphans.as_dict()["vaults"]] == ["v", "u"]
    unresolved = (await two_vaults.unresolved(None)).as_dict()
    assert [report["vault"] for report in unresolved["vaults"]] == ["v", "u"]
    assert (await two_vaults.orphans("u")).as_dict()["vault"] == "u"


async def test_an_unknown_vault_is_not_found_by_every_query(two_vaults: GraphService) -> None:
    queries = [
        two_vaults.links("nosuch", "a.md"),
        two_vaults.backlinks("nosuch", "a.md"),
        two_vaults.neighbours("nosuch", "a.md", 1, "both"),
        two_vaults.path("nosuch", "a", "b"),
        two_vaults.unresolved("nosuch"),
        two_vaults.orphans("nosuch"),
    ]
    for query in queries:
        with pytest.raises(NoteNotFoundError, match="no vault named 'nosuch'") as caught:
            await query
        assert from_domain(caught.value).status == 404


class RecordingWriter:
    """Stands in for a Neo4j server: records each sync; fails while `down` is set."""

    backend = "recording"

    def __init__(self) -> None:
        self.syncs: list[list[str]] = []
        self.down = False
        self.gate: asyncio.Event | None = None

    async def sync(self, projections: Sequence[Projection]) -> SyncReport:
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise GraphUnavailable("the test server is down")
        self.syncs.append([note.path for item in projections for note in item.notes])
        return SyncReport(self.backend, notes=len(self.syncs[-1]))


def finished(state: str = "done") -> RunReport:
    """The indexer's last event of a run: its report."""
    return RunReport(id=1, trigger="test", full=False, state=state)


async def settle(sync: GraphSync) -> None:
    while sync._task is not None and not sync._task.done():
        await asyncio.sleep(0)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    root = write_vault(tmp_path / "v", CONTRACT_VAULTS["v"])
    return build_store(tmp_path / "jarvis.duckdb", {"v": root})


async def test_the_first_run_syncs_then_only_runs_that_changed(store: Store) -> None:
    writer = RecordingWriter()
    pools = Pools(Config().threads)
    sync = GraphSync(writer, store, pools, lambda: ["v"])
    sync.on_index_event(finished())
    await settle(sync)
    assert len(writer.syncs) == 1 and "a.md" in writer.syncs[0]
    sync.on_index_event(finished())  # nothing changed since
    await settle(sync)
    assert len(writer.syncs) == 1
    sync.mark_changed()
    sync.on_index_event(finished("failed"))  # a failed run is not a reason to sync
    await settle(sync)
    assert len(writer.syncs) == 1
    sync.on_index_event(finished())
    await settle(sync)
    assert len(writer.syncs) == 2
    pools.shutdown()
    store.close()


async def test_a_failed_sync_is_retried_after_the_next_run(store: Store) -> None:
    writer = RecordingWriter()
    writer.down = True
    pools = Pools(Config().threads)
    sync = GraphSync(writer, store, pools, lambda: ["v"])
    sync.on_index_event(finished())
    await settle(sync)
    assert writer.syncs == [] and sync.last is not None and sync.last["ok"] is False
    assert "the test server is down" in sync.last["error"]
    writer.down = False
    sync.on_index_event(finished())
    await settle(sync)
    assert len(writer.syncs) == 1 and sync.last is not None and sync.last["ok"] is True
    pools.shutdown()
    store.close()


async def test_a_change_during_a_sync_is_synced_when_it_ends(store: Store) -> None:
    writer = RecordingWriter()
    writer.gate = asyncio.Event()
    pools = Pools(Config().threads)
    sync = GraphSync(writer, store, pools, lambda: ["v"])
    sync.on_index_event(finished())
    await asyncio.sleep(0)
    sync.mark_changed()  # another run finished while the first sync waits
    sync.on_index_event(finished())
    writer.gate.set()
    await settle(sync)
    assert len(writer.syncs) == 2
    pools.shutdown()
    store.close()
