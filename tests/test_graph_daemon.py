"""Graph and notes through the real daemon: the socket routes, jarvisctl, a Neo4j that fails.

The vault is indexed into the daemon's database beforehand by the real
parser and store (no model), so the daemon starts lean and serves at once.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from boltstub import BoltStub, requires_boltstub
from conftest import DaemonProcess, base_config, ctl
from graph_fixtures import CONTRACT_VAULTS, build_store, write_vault

from jarvisd.cli.client import ControlClient, DaemonError
from jarvisd.graph.neo4j_queries import OUTGOING

pytestmark = pytest.mark.serial
Start = Callable[..., DaemonProcess]


def prepared(root: Path, **overrides: Any) -> dict[str, Any]:
    """A config on vault `v`, already indexed into the database the daemon will open."""
    vault = write_vault(root / "v", CONTRACT_VAULTS["v"])
    config = base_config(root, vaults=[{"name": "v", "path": str(vault)}], **overrides)
    build_store(Path(config["storage"]["database"]), {"v": vault}).close()
    return config


def get(client: ControlClient, route: str, **query: Any) -> Any:
    return client.request("GET", route, query=query)


def error_of(client: ControlClient, route: str, **query: Any) -> DaemonError:
    with pytest.raises(DaemonError) as caught:
        client.request("GET", route, query=query)
    return caught.value


def test_graph_routes_answer_by_path_or_title(start_daemon: Start, short_tmp: Path) -> None:
    client = start_daemon(prepared(short_tmp)).client
    links = get(client, "/v1/graph/links", path="a.md")
    assert [link["target_path"] for link in links["links"]] == ["b.md", "c.md", None]
    by_title = get(client, "/v1/graph/backlinks", path="Alpha")  # a.md's frontmatter title
    assert [link["source"] for link in by_title["links"]] == ["b.md", "folder/h.md"]
    around = get(client, "/v1/graph/neighbours", path="a", depth=2, direction="out")
    assert [(n["path"], n["distance"], n["via"]) for n in around["neighbours"]] == [
        ("b.md", 1, "a.md"),
        ("c.md", 1, "a.md"),
        ("d.md", 2, "c.md"),
    ]
    walk = get(client, "/v1/graph/path", **{"from": "d.md", "to": "First", "direction": "both"})
    assert [note["path"] for note in walk["notes"]] == ["d.md", "c.md", "a.md"]
    assert get(client, "/v1/graph/unresolved")["targets"][0]["target"] == "Ghost"
    assert [n["path"] for n in get(client, "/v1/graph/orphans", vault="v")["notes"]] == [
        "e.md",
        "f.md",
        "g.md",
    ]
    assert get(client, "/v1/graph")["backend"] == "duckdb"


def test_graph_routes_refuse_bad_requests_clearly(start_daemon: Start, short_tmp: Path) -> None:
    client = start_daemon(prepared(short_tmp)).client
    deep = error_of(client, "/v1/graph/neighbours", path="a.md", depth=4)
    assert (deep.status, deep.code) == (400, "bad_request")
    assert "depth must be between 1 and 3 (graph.max_depth), got 4" in deep.message
    assert error_of(client, "/v1/graph/neighbours", path="a.md", depth="two").status == 400
    assert error_of(client, "/v1/graph/neighbours", path="a.md", direction="up").status == 400
    assert error_of(client, "/v1/graph/links").status == 400
    missing = error_of(client, "/v1/graph/links", path="nowhere.md")
    assert (missing.status, missing.code) == (404, "not_found")
    assert error_of(client, "/v1/graph/orphans", vault="other").status == 404
    assert set(missing.body) == {"error"} and set(missing.body["error"]) == {"code", "message"}


def test_notes_route_reads_a_note_and_guards_the_vault(
    start_daemon: Start, short_tmp: Path
) -> None:
    config = prepared(short_tmp)
    (short_tmp / "secret.md").write_text("# not in the vault\n", encoding="utf-8")
    (Path(config["vaults"][0]["path"]) / "leak.md").symlink_to(short_tmp / "secret.md")
    client = start_daemon(config).client
    note = get(client, "/v1/notes", path="a.md")
    assert note["title"] == "Alpha" and note["content"] == CONTRACT_VAULTS["v"]["a.md"]
    assert [link["source_path"] for link in note["backlinks"]] == ["b.md", "folder/h.md"]
    assert get(client, "/v1/notes", title="first")["path"] == "a.md"  # an alias
    for path, words in (
        ("../secret.md", "climbs out of the vault"),
        (str(short_tmp / "secret.md"), "is an absolute path"),
        ("leak.md", "symlink that leads outside the vault"),
    ):
        refused = error_of(client, "/v1/notes", path=path)
        assert refused.status == 400 and words in refused.message, refused.message
    assert error_of(client, "/v1/notes", path="nope.md").status == 404
    assert error_of(client, "/v1/notes").status == 400


def test_notes_list_route_pages_and_states_its_bound(start_daemon: Start, short_tmp: Path) -> None:
    client = start_daemon(prepared(short_tmp)).client
    assert "notes.list" in get(client, "/v1/status")["capabilities"]
    first = get(client, "/v1/notes/list", limit=5)
    assert first["vault"] == "v" and first["total"] == len(CONTRACT_VAULTS["v"])
    rest = get(client, "/v1/notes/list", vault="v", cursor=first["next_cursor"], limit=5)
    assert rest["next_cursor"] is None
    paths = [note["path"] for note in first["notes"] + rest["notes"]]
    assert paths == sorted(CONTRACT_VAULTS["v"])
    assert get(client, "/v1/notes/list")["limit"] == 100  # the default page
    over = error_of(client, "/v1/notes/list", limit=1001)
    assert over.status == 400 and "limit must be between 1 and 1000, got 1001" in over.message
    assert error_of(client, "/v1/notes/list", limit="many").status == 400
    assert error_of(client, "/v1/notes/list", vault="other").status == 404


def test_jarvisctl_graph_and_note(start_daemon: Start, short_tmp: Path) -> None:
    daemon = start_daemon(prepared(short_tmp))
    tree = ctl(daemon, "graph", "Alpha", "--depth", "2", "--direction", "out")
    assert tree.returncode == 0, tree.stderr
    assert "Alpha" in tree.stdout and "d.md" in tree.stdout
    assert "3 notes within 2 step(s) following links" in tree.stdout
    as_json = json.loads(ctl(daemon, "graph", "a.md", "--json").stdout)
    assert as_json["total"] == 3  # depth 1, both directions: b, c, folder/h
    assert "Ghost" in ctl(daemon, "graph", "--unresolved").stdout
    assert "e.md" in ctl(daemon, "graph", "--orphans").stdout
    walk = ctl(daemon, "graph", "--path", "a.md", "d.md", "--direction", "out")
    assert "2 step(s)" in walk.stdout and walk.stdout.index("c.md") < walk.stdout.index("d.md")
    note = ctl(daemon, "note", "alpha")
    assert note.returncode == 0, note.stderr
    assert "a.md" in note.stdout and "First" in note.stdout and "Ghost" in note.stdout
    deep = ctl(daemon, "graph", "a.md", "--depth", "9")
    assert deep.returncode == 1 and "graph.max_depth" in deep.stderr
    assert ctl(daemon, "graph").returncode == 2


def test_several_vaults_unknown_vaults_and_dates_out_of_range(
    start_daemon: Start, short_tmp: Path
) -> None:
    roots = {name: write_vault(short_tmp / name, CONTRACT_VAULTS[name]) for name in ("v", "w")}
    vaults = [{"name": name, "path": str(root)} for name, root in roots.items()]
    config = base_config(short_tmp, vaults=vaults)
    build_store(Path(config["storage"]["database"]), roots).close()
    daemon = start_daemon(config)
    routes: list[tuple[str, dict[str, str]]] = [
        ("/v1/search", {"q": "alone", "mode": "keyword"}),
        ("/v1/notes", {"path": "a.md"}),
        ("/v1/graph/links", {"path": "a.md"}),
        ("/v1/graph/backlinks", {"path": "a.md"}),
        ("/v1/graph/neighbours", {"path": "a.md"}),
        ("/v1/graph/path", {"from": "a.md", "to": "b.md"}),
        ("/v1/graph/unresolved", {}),
        ("/v1/graph/orphans", {}),
    ]
    for route, query in routes:
        unknown = error_of(daemon.client, route, vault="nosuch", **query)
        assert (unknown.status, unknown.code) == (404, "not_found"), route
        assert "no vault named 'nosuch'; configured: v, w" in unknown.message, route
    too_old = error_of(daemon.client, "/v1/search", q="alone", since="99999999999d")
    assert (too_old.status, too_old.code) == (400, "out_of_range")
    # x.md is only in the second vault: no vault named, it is found there.
    note = ctl(daemon, "note", "x.md")
    assert note.returncode == 0, note.stderr
    assert "x.md" in note.stdout
    graph = json.loads(ctl(daemon, "graph", "X", "--json").stdout)  # by file name
    assert (graph["vault"], graph["note"]["path"]) == ("w", "x.md")
    orphans = ctl(daemon, "graph", "--orphans")
    assert "orphans in v" in orphans.stdout and "orphans in w" in orphans.stdout


def assert_still_serving(client: ControlClient) -> None:
    assert get(client, "/v1/status")["state"] == "running"
    try:
        get(client, "/v1/search", q="alone", mode="keyword")
    except DaemonError as error:
        assert error.status < 500, error.message
    assert get(client, "/v1/notes", path="a.md")["title"] == "Alpha"


@requires_boltstub
def test_a_failing_neo4j_server_answers_502_and_the_rest_keeps_serving(
    start_daemon: Start, short_tmp: Path, tmp_path: Path
) -> None:
    with BoltStub("failure.script", {"OUTGOING": OUTGOING}, tmp_path) as stub:
        graph = {
            "backend": "neo4j",
            "neo4j": {"uri": stub.uri, "database": "", "max_retry_time": "0s"},
        }
        daemon = start_daemon(prepared(short_tmp, graph=graph))
        failed = error_of(daemon.client, "/v1/graph/links", path="a.md")
        assert (failed.status, failed.code) == (502, "graph_backend_error")
        assert f"the Neo4j server at {stub.uri} failed the query" in failed.message
        assert_still_serving(daemon.client)
        assert daemon.stop() == 0
        assert stub.finish() == 0, stub.log()  # the script was played out, then GOODBYE


def test_a_neo4j_server_that_is_down_answers_503(start_daemon: Start, short_tmp: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        uri = f"bolt://127.0.0.1:{sock.getsockname()[1]}"
    graph = {"backend": "neo4j", "neo4j": {"uri": uri, "max_retry_time": "0s"}}
    daemon = start_daemon(prepared(short_tmp, graph=graph))
    down = error_of(daemon.client, "/v1/graph/neighbours", path="a.md", depth=2)
    assert (down.status, down.code) == (503, "graph_unavailable")
    assert f"the Neo4j server at {uri} cannot be reached" in down.message
    assert_still_serving(daemon.client)
    assert get(daemon.client, "/v1/graph")["uri"] == uri
