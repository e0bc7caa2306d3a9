"""The Neo4j backend on the wire, without a Neo4j server.

boltkit's stub server plays scripted Bolt 3 sessions (tests/bolt/*.script) to
the real neo4j driver: a read, and a server failure. A closed port stands in
for a server that is down. The sync's pure parts (what changed, the walk
tree, the password) are checked directly; the full contract runs in
test_graph_contract.py when a real server is configured.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from boltstub import BoltStub, played, requires_boltstub, sync_script, sync_transactions
from graph_fixtures import CONTRACT_VAULTS, build_store, write_vault
from structlog.testing import capture_logs

from jarvisd.api.errors import from_domain
from jarvisd.config import Config, GraphConfig, Neo4jConfig
from jarvisd.graph import GraphBackendError, GraphUnavailable, Neighbour, Projection
from jarvisd.graph import neo4j_queries as queries
from jarvisd.graph.neo4j import Neo4jGraph, _auth, _changes, _with_via
from jarvisd.graph.neo4j_queries import NEIGHBOUR_EDGES, NEIGHBOURS, ORPHANS, OUTGOING
from jarvisd.graph.sync import GraphSync, ProjectedNote, read_projection
from jarvisd.indexing.progress import RunReport
from jarvisd.pools import Pools


def neo4j_config(uri: str, **settings: object) -> GraphConfig:
    values: dict[str, object] = {
        "uri": uri,
        "password": "secret",
        # Neo4j 3.5 (Bolt 3, what the stub speaks) has no database names.
        "database": "",
        "max_retry_time": 0.0,
        "connection_timeout": 2.0,
        **settings,
    }
    return GraphConfig(backend="neo4j", max_depth=3, neo4j=Neo4jConfig.model_validate(values))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once this closes


@requires_boltstub
async def test_a_scripted_read_gives_the_neighbourhood_with_its_tree(tmp_path: Path) -> None:
    values = {"NEIGHBOURS_OUT_2": NEIGHBOURS["out"][2], "NEIGHBOUR_EDGES": NEIGHBOUR_EDGES}
    with BoltStub("neighbours.script", values, tmp_path) as stub:
        graph = Neo4jGraph(neo4j_config(stub.uri))
        await graph.start()
        result = await graph.neighbours("v", "a.md", 2, "out", 100)
        await graph.close()
        assert stub.finish() == 0, stub.log()
    assert result.note.title == "Alpha"
    assert result.neighbours == (
        Neighbour("b.md", "b", 1, "a.md"),
        Neighbour("c.md", "c", 1, "a.md"),
        Neighbour("d.md", "d", 2, "c.md"),
    )
    assert result.total == 3


@requires_boltstub
async def test_it_connects_with_the_password_files_first_line(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("first line only\nsecond line\n", encoding="utf-8")
    with BoltStub("hello.script", {"ORPHANS": ORPHANS}, tmp_path) as stub:
        settings = {"user": "reader", "password_file": str(secret), "password": None}
        graph = Neo4jGraph(neo4j_config(stub.uri, **settings))
        orphans = await graph.orphans("v")
        await graph.close()
        assert stub.finish() == 0, stub.log()
    assert [note.path for note in orphans.notes] == ["d.md", "e.md"]  # sorted by path


@requires_boltstub
async def test_a_server_failure_is_a_backend_error_naming_the_server(tmp_path: Path) -> None:
    with BoltStub("failure.script", {"OUTGOING": OUTGOING}, tmp_path) as stub:
        graph = Neo4jGraph(neo4j_config(stub.uri))
        with pytest.raises(GraphBackendError) as caught:
            await graph.outgoing("v", "a.md")
        await graph.close()
        assert stub.finish() == 0, stub.log()
    message = str(caught.value)
    assert f"the Neo4j server at {stub.uri} failed the query" in message
    assert "Neo.DatabaseError.General.UnknownError: the disk is on fire" in message
    assert from_domain(caught.value).status == 502


async def test_a_server_that_is_down_is_unavailable_naming_the_server() -> None:
    uri = f"bolt://127.0.0.1:{closed_port()}"
    graph = Neo4jGraph(neo4j_config(uri))
    with pytest.raises(GraphUnavailable) as caught:
        await graph.orphans("v")
    await graph.close()
    assert f"the Neo4j server at {uri} cannot be reached" in str(caught.value)
    assert "is it running?" in str(caught.value)
    assert from_domain(caught.value).status == 503


async def test_after_a_server_is_found_down_requests_answer_at_once_until_the_next_try() -> None:
    """Measured before: every request to a down server took max_retry_time (16.8 s with
    the defaults) to its 503. A clock we move stands in for the waiting."""
    uri = f"bolt://127.0.0.1:{closed_port()}"
    graph = Neo4jGraph(neo4j_config(uri, retry_after="5s"))
    now = [1000.0]
    graph._clock = lambda: now[0]
    with pytest.raises(GraphUnavailable):
        await graph.orphans("v")  # a real try: nothing listens
    driver = graph._driver

    async def must_not_connect(*args: object, **kwargs: object) -> object:
        raise AssertionError("a request in the back-off tried the server")

    graph._get_driver = must_not_connect  # type: ignore[method-assign]
    now[0] += 1.5
    with pytest.raises(GraphUnavailable) as caught:
        await graph.backlinks("v", "a.md")
    message = str(caught.value)
    assert f"the Neo4j server at {uri} cannot be reached" in message
    assert message.endswith("Not tried again yet: the next try is in 3.5s")
    assert caught.value.details == {"retry_after": 3.5}
    assert from_domain(caught.value).status == 503

    # Past the wait, one request tries again; a second failure doubles the wait.
    del graph._get_driver
    now[0] += 4.0
    with pytest.raises(GraphUnavailable) as caught:
        await graph.orphans("v")
    assert "Not tried again yet" not in str(caught.value)
    with pytest.raises(GraphUnavailable) as caught:
        await graph.orphans("v")
    assert caught.value.details == {"retry_after": 10.0}
    assert graph._driver is driver  # the same settings keep the same driver
    await graph.close()


@requires_boltstub
async def test_a_server_that_answers_again_ends_the_back_off(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("first line only\n", encoding="utf-8")
    with BoltStub("hello.script", {"ORPHANS": ORPHANS}, tmp_path) as stub:
        settings = {"user": "reader", "password_file": str(secret), "password": None}
        graph = Neo4jGraph(neo4j_config(stub.uri, retry_after="5s", **settings))
        now = [1000.0]
        graph._clock = lambda: now[0]
        graph._failures, graph._next_try = 3, now[0]  # as after three failed tries
        graph._last_error = "down"
        orphans = await graph.orphans("v")
        await graph.close()
        assert stub.finish() == 0, stub.log()
    assert [note.path for note in orphans.notes] == ["d.md", "e.md"]
    assert graph._failures == 0


async def test_an_unreadable_password_file_is_a_clear_error(tmp_path: Path) -> None:
    graph = Neo4jGraph(neo4j_config("bolt://127.0.0.1:1", password_file=str(tmp_path / "none")))
    with pytest.raises(GraphUnavailable, match=r"cannot read graph\.neo4j\.password_file"):
        await graph.orphans("v")


def test_the_password_is_the_first_line_of_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "neo4j.password"
    secret.write_text("s3cret pass\nignored second line\n", encoding="utf-8")
    settings = Neo4jConfig.model_validate({"password_file": str(secret), "password": "other"})
    assert _auth(settings) == ("neo4j", "s3cret pass")
    assert _auth(Neo4jConfig(password="inline")) == ("neo4j", "inline")
    assert _auth(Neo4jConfig()) is None


def test_a_sync_rewrites_only_changed_notes_and_deletes_the_gone() -> None:
    link = {"ordinal": 0, "target": "b", "key": "b", "kind": "wikilink", "line": 1}
    a = ProjectedNote(
        "a.md", "A", ({**link, "heading": None, "alias": None, "target_path": "b.md"},)
    )
    b = ProjectedNote("b.md", "B")
    projection = Projection("v", (a, b))
    stored = {"a.md": a.fingerprint, "b.md": "stale", "old.md": "x"}
    changed, gone = _changes(projection, stored)
    assert [note.path for note in changed] == ["b.md"]
    assert gone == ["old.md"]
    relinked = ProjectedNote("a.md", "A", ({**a.links[0], "target_path": None},))
    assert relinked.fingerprint != a.fingerprint  # a link that stops resolving is a change


def test_via_follows_the_direction_walked() -> None:
    distances = {"b.md": (1, "b"), "c.md": (2, "c")}
    edges = [("b.md", "a.md"), ("c.md", "b.md")]  # b -> a, c -> b: a's backlinks
    found = _with_via("a.md", distances, edges, "in")
    assert [(item.path, item.via) for item in found] == [("b.md", "a.md"), ("c.md", "b.md")]


@requires_boltstub
async def test_a_first_sync_sends_schema_upserts_and_links_in_batches(tmp_path: Path) -> None:
    resolved = {"ordinal": 0, "target": "b", "key": "b", "kind": "wikilink", "line": 2}
    missing = {"ordinal": 1, "target": "Ghost", "key": "ghost", "kind": "wikilink", "line": 3}
    a = ProjectedNote(
        "a.md",
        "A",
        (
            {**resolved, "heading": None, "alias": None, "target_path": "b.md"},
            {**missing, "heading": None, "alias": None, "target_path": None},
        ),
    )
    b = ProjectedNote("b.md", "b")
    rows = [
        {"path": note.path, "fingerprint": note.fingerprint, "links": list(note.links)}
        for note in (a, b)
    ]
    values = {
        "SCHEMA_0": queries.SCHEMA[0],
        "SCHEMA_1": queries.SCHEMA[1],
        "DELETE_OTHER_VAULTS": queries.DELETE_OTHER_VAULTS,
        "FINGERPRINTS": queries.FINGERPRINTS,
        "UPSERT_NOTES": queries.UPSERT_NOTES,
        "UPSERT_PARAMETERS": {
            "vault": "v",
            "rows": [{"path": "a.md", "title": "A"}, {"path": "b.md", "title": "b"}],
        },
        "REPLACE_LINKS": queries.REPLACE_LINKS,
        "REPLACE_PARAMETERS": {"vault": "v", "rows": rows},
        "DELETE_UNUSED_UNRESOLVED": queries.DELETE_UNUSED_UNRESOLVED,
    }
    with BoltStub("sync.script", values, tmp_path) as stub:
        graph = Neo4jGraph(neo4j_config(stub.uri))
        report = await graph.sync([Projection("v", (a, b))])
        await graph.close()
        assert stub.finish() == 0, stub.log()
    assert (report.notes, report.links, report.deleted) == (2, 2, 0)


@requires_boltstub
async def test_a_server_that_never_answers_a_batch_fails_the_sync_and_the_next_run_retries(
    tmp_path: Path,
) -> None:
    """Found by the reliability benchmark: a server that took a batch of links and kept the
    connection open without answering held the sync for ever (neither graph.synced nor
    graph.sync_failed in 600 s), and no later run synced, since that sync still ran. The
    driver reads with no deadline unless the server sends one; query_timeout is ours."""
    root = write_vault(tmp_path / "v", CONTRACT_VAULTS["v"])
    store = build_store(tmp_path / "jarvis.duckdb", {"v": root})
    pools = Pools(Config().threads)
    projections = [read_projection(store, "v")]
    whole = sync_transactions(projections, {})
    cut = next(n for n, item in enumerate(whole) if item.query == queries.REPLACE_LINKS)
    silent_script = sync_script(whole, stall_at=cut)
    with BoltStub("silent.script", {}, tmp_path, silent_script, idle=120) as silent:
        graph = Neo4jGraph(neo4j_config(silent.uri, query_timeout="1s", retry_after="0s"))
        sync = GraphSync(graph, store, pools, lambda: ["v"])
        with capture_logs() as logs:
            sync.on_index_event(RunReport(id=1, trigger="test", full=False, state="done"))
            assert sync._task is not None
            await asyncio.wait_for(sync._task, 120)  # before the fix: for ever
        assert silent.log().count("C: PULL_ALL") == cut + 1  # it took the links batch
    assert sync.last is not None and sync.last["ok"] is False
    reason = f"{silent.uri} did not answer within 1s (graph.neo4j.query_timeout)"
    assert reason in sync.last["error"]
    failed = [entry for entry in logs if entry["event"] == "graph.sync_failed"]
    assert len(failed) == 1 and reason in failed[0]["error"]
    assert failed[0]["retry"] == "after the next index run"

    # The next run's sync sends exactly what the cut one left undone, to a server that answers.
    rest = sync_transactions(projections, played(whole, {}, cut))
    with BoltStub("rest.script", {}, tmp_path, sync_script(rest)) as stub:
        graph.configure(neo4j_config(stub.uri, query_timeout="1s", retry_after="0s"))
        sync.on_index_event(RunReport(id=2, trigger="test", full=False, state="done"))
        assert sync._task is not None
        await asyncio.wait_for(sync._task, 120)
        await graph.close()
        assert stub.finish() == 0, stub.log()
    assert sync.last is not None and sync.last["ok"] is True
    assert sync.last["notes"] == len(projections[0].notes)
    pools.shutdown()
    store.close()


@requires_boltstub
async def test_the_stub_takes_a_links_batch_bigger_than_one_read(tmp_path: Path) -> None:
    """boltkit read a chunk with one recv, which returned part of a big one (600 notes'
    links), and then waited mid-message for ever: the reliability benchmark's Neo4j
    crash runs at 600 notes could not finish. tests/bolt/stub.py reads whole chunks."""

    def linked(number: int) -> ProjectedNote:
        links = tuple(
            {
                "ordinal": ordinal,
                "target": f"n{(number + ordinal) % 600}",
                "key": f"n{(number + ordinal) % 600}",
                "kind": "wikilink",
                "line": ordinal + 1,
                "heading": None,
                "alias": None,
                "target_path": f"folder/n{(number + ordinal) % 600}.md",
            }
            for ordinal in range(8)
        )
        return ProjectedNote(f"folder/n{number}.md", f"Note {number} with a title", links)

    projection = Projection("v", tuple(linked(number) for number in range(600)))
    script = sync_script(sync_transactions([projection], {}))
    with BoltStub("big.script", {}, tmp_path, script) as stub:
        graph = Neo4jGraph(neo4j_config(stub.uri))
        report = await asyncio.wait_for(graph.sync([projection]), 120)
        await graph.close()
        assert stub.finish() == 0, stub.log()[-2000:]
    assert (report.notes, report.links) == (600, 4800)
