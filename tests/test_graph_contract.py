"""One contract, every graph backend: the same vault, the same questions, the same answers.

duckdb always runs. neo4j runs against a real server when JARVIS_TEST_NEO4J_URI
(with JARVIS_TEST_NEO4J_USER / _PASSWORD, optional _DATABASE) names one; the
test database's :Note and :Unresolved nodes are replaced by the sync.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from graph_fixtures import CONTRACT_VAULTS, build_store, write_vault

from jarvisd.config import GraphConfig, Neo4jConfig, ThreadsConfig
from jarvisd.graph import (
    GraphStore,
    InvalidGraphQuery,
    NoteNotFound,
    create_graph_store,
    read_projection,
)
from jarvisd.pools import Pools
from jarvisd.store import Store

NO_SERVER = "no Neo4j server on this machine; set JARVIS_TEST_NEO4J_URI to run against one"


def graph_config(backend: str) -> GraphConfig:
    if backend == "duckdb":
        return GraphConfig(backend="duckdb", max_depth=3)
    return GraphConfig(
        backend="neo4j",
        max_depth=3,
        neo4j=Neo4jConfig(
            uri=os.environ["JARVIS_TEST_NEO4J_URI"],
            user=os.environ.get("JARVIS_TEST_NEO4J_USER", "neo4j"),
            password=os.environ.get("JARVIS_TEST_NEO4J_PASSWORD"),
            database=os.environ.get("JARVIS_TEST_NEO4J_DATABASE", "neo4j"),
            max_retry_time=0.0,
        ),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    roots = {name: write_vault(tmp_path / name, notes) for name, notes in CONTRACT_VAULTS.items()}
    opened = build_store(tmp_path / "jarvis.duckdb", roots)
    yield opened
    opened.close()


@pytest.fixture
def pools() -> Iterator[Pools]:
    made = Pools(ThreadsConfig())
    yield made
    made.shutdown()


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param(
            "neo4j",
            marks=pytest.mark.skipif(not os.environ.get("JARVIS_TEST_NEO4J_URI"), reason=NO_SERVER),
        ),
    ]
)
async def graph(
    request: pytest.FixtureRequest, store: Store, pools: Pools
) -> AsyncIterator[GraphStore]:
    backend = create_graph_store(graph_config(request.param), store, pools)
    await backend.start()
    await sync(backend, store)
    yield backend
    await backend.close()


async def sync(graph: GraphStore, store: Store) -> None:
    await graph.sync([read_projection(store, vault) for vault in CONTRACT_VAULTS])


# ------------------------------------------------------------------- links


async def test_outgoing_links_in_written_order_resolved_or_not(graph: GraphStore) -> None:
    result = await graph.outgoing("v", "a.md")
    assert result.note.path == "a.md" and result.note.title == "Alpha"
    assert [(link.target, link.target_path) for link in result.links] == [
        ("b", "b.md"),
        ("c", "c.md"),
        ("Ghost", None),
    ]
    assert [link.line for link in result.links] == [6, 7, 8]
    assert result.links[0].target_title == "b" and result.links[0].resolved
    assert not result.links[2].resolved


async def test_backlinks_by_linking_note(graph: GraphStore) -> None:
    result = await graph.backlinks("v", "a.md")
    assert [(link.source, link.alias) for link in result.links] == [
        ("b.md", "back to a"),
        ("folder/h.md", None),
    ]
    assert all(link.target_path == "a.md" for link in result.links)
    empty = await graph.backlinks("v", "e.md")
    assert empty.links == ()


async def test_unknown_notes_and_vaults_are_not_found(graph: GraphStore) -> None:
    with pytest.raises(NoteNotFound, match=r"nope\.md"):
        await graph.outgoing("v", "nope.md")
    with pytest.raises(NoteNotFound):
        await graph.neighbours("w", "a.md", 1, "out", 100)  # a.md lives in vault v


# ------------------------------------------------------------------- walks


def distances(result: object) -> dict[str, int]:
    return {item.path: item.distance for item in result.neighbours}  # type: ignore[attr-defined]


async def test_neighbourhood_by_direction_and_depth(graph: GraphStore) -> None:
    assert distances(await graph.neighbours("v", "a.md", 1, "out", 100)) == {"b.md": 1, "c.md": 1}
    assert distances(await graph.neighbours("v", "a.md", 2, "out", 100)) == {
        "b.md": 1,
        "c.md": 1,
        "d.md": 2,
    }
    assert distances(await graph.neighbours("v", "a.md", 1, "in", 100)) == {
        "b.md": 1,
        "folder/h.md": 1,
    }
    both = await graph.neighbours("v", "a.md", 2, "both", 100)
    assert distances(both) == {"b.md": 1, "c.md": 1, "folder/h.md": 1, "d.md": 2}
    assert [item.path for item in both.neighbours] == ["b.md", "c.md", "folder/h.md", "d.md"]


async def test_the_cycle_a_b_a_is_walked_once_and_via_is_one_step_nearer(
    graph: GraphStore,
) -> None:
    result = await graph.neighbours("v", "b.md", 3, "out", 100)
    assert distances(result) == {"a.md": 1, "c.md": 1, "d.md": 2}
    via = {item.path: item.via for item in result.neighbours}
    assert via["a.md"] == "b.md" and via["c.md"] == "b.md" and via["d.md"] == "c.md"
    assert result.total == 3 and result.depth == 3 and result.direction == "out"


async def test_the_limit_cuts_the_list_but_counts_everything(graph: GraphStore) -> None:
    result = await graph.neighbours("v", "a.md", 2, "both", 2)
    assert [item.path for item in result.neighbours] == ["b.md", "c.md"]
    assert result.total == 4 and result.as_dict()["truncated"] is True


async def test_depth_beyond_max_depth_is_refused(graph: GraphStore) -> None:
    with pytest.raises(InvalidGraphQuery, match=r"between 1 and 3 \(graph.max_depth\)"):
        await graph.neighbours("v", "a.md", 4, "out", 100)


async def test_vaults_do_not_mix(graph: GraphStore) -> None:
    assert distances(await graph.neighbours("w", "x.md", 3, "both", 100)) == {"y.md": 1}


async def test_shortest_path(graph: GraphStore) -> None:
    forward = await graph.shortest_path("v", "a.md", "d.md", "out")
    assert [note.path for note in forward.notes] == ["a.md", "c.md", "d.md"]
    assert forward.as_dict()["length"] == 2
    assert not (await graph.shortest_path("v", "d.md", "a.md", "out")).found
    back = await graph.shortest_path("v", "d.md", "a.md", "both")
    assert [note.path for note in back.notes] == ["d.md", "c.md", "a.md"]
    same = await graph.shortest_path("v", "a.md", "a.md", "out")
    assert [note.path for note in same.notes] == ["a.md"]
    assert not (await graph.shortest_path("v", "a.md", "e.md", "both")).found
    with pytest.raises(NoteNotFound):
        await graph.shortest_path("v", "a.md", "missing.md", "out")


# ----------------------------------------------------------------- reports


async def test_unresolved_links_with_the_notes_that_hold_them(graph: GraphStore) -> None:
    report = await graph.unresolved("v")
    assert [(item.target, item.count, item.sources) for item in report.targets] == [
        ("Ghost", 2, ("a.md", "g.md")),
        ("Nowhere", 1, ("g.md",)),
    ]
    assert report.as_dict()["links"] == 3
    assert (await graph.unresolved("w")).targets == ()


async def test_orphans_have_no_note_link_in_or_out(graph: GraphStore) -> None:
    orphans = await graph.orphans("v")
    assert [note.path for note in orphans.notes] == ["e.md", "f.md", "g.md"]


async def test_a_deleted_note_leaves_every_answer_after_the_next_sync(
    graph: GraphStore, store: Store
) -> None:
    store.delete_note("v", "c.md")
    store.finalize(["v"], force=True)
    await sync(graph, store)
    assert distances(await graph.neighbours("v", "a.md", 2, "out", 100)) == {"b.md": 1}
    unresolved = {item.target: item.sources for item in (await graph.unresolved("v")).targets}
    assert unresolved["c"] == ("a.md", "b.md")
    assert [note.path for note in (await graph.orphans("v")).notes] == [
        "d.md",
        "e.md",
        "f.md",
        "g.md",
    ]
    await sync(graph, store)  # a second sync with nothing new changes nothing
    assert distances(await graph.neighbours("v", "a.md", 2, "out", 100)) == {"b.md": 1}
