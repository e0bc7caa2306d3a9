"""`jarvisctl mcp` end to end: the SDK's own client starts it against the real daemon.

One daemon (real model, real DuckDB) indexes the example vault and a small
second vault once for the module; each test starts `jarvisctl mcp` as a
subprocess through the SDK's stdio client, as Claude Desktop or Claude Code do,
and talks MCP to it. The daemon's socket and its peer-uid check are the real
ones; nothing is faked.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, DaemonProcess, base_config
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent

from jarvisd.cli.client import ControlClient
from jarvisd.cli.mcp import resources
from jarvisd.cli.mcp.bridge import DaemonBridge

pytestmark = [pytest.mark.serial, pytest.mark.slow]
EXAMPLE = REPO / "jarvisd" / "example_vault"
SECOND = {
    "Garden/Tomatoes.md": "# Tomatoes\nSow in March, plant out after the last frost. [[Compost]]\n",
    "Garden/Compost.md": "# Compost\nGreens and browns, turned every two weeks.\n",
    "Ideas.md": "# Ideas\nA cold frame for the [[Tomatoes]].\n",
    "Trials.md": "---\ntitle: A/B trials\n---\n# Trials\nTwo beds, two feeds. [[Compost]]\n",
}
FORCE_MINIMAL = {"modes": {"full_min_available": "10TB", "lite_min_available": "9TB"}}
NORMAL = {"modes": {"full_min_available": "1KB", "lite_min_available": "1KB"}}


class Vaults:
    """The module's daemon, which a test may stop and start again on the same files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.example = root / "example"
        shutil.copytree(EXAMPLE, self.example)
        garden = root / "garden"
        for path, text in SECOND.items():
            (garden / path).parent.mkdir(parents=True, exist_ok=True)
            (garden / path).write_text(text, encoding="utf-8")
        self.config = base_config(
            root,
            vaults=[
                {"name": "example", "path": str(self.example)},
                {"name": "garden", "path": str(garden)},
            ],
            embedding={"preload": True},
            indexing={"on_start": True, "watch": False},
            memory=NORMAL,
            schedule={"memory_sample": "200ms", "index": None, "maintenance": None},
        )
        self.daemon = self.start()

    def start(self) -> DaemonProcess:
        daemon = DaemonProcess(self.root, self.config)
        daemon.wait_ready()
        self.daemon = daemon
        return daemon

    def until(self, test: Any, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status: dict[str, Any] = self.daemon.client.get("/v1/status")
            if test(status):
                return status
            time.sleep(0.1)
        raise AssertionError(f"daemon never got there:\n{self.daemon.output()[-3000:]}")

    @property
    def socket(self) -> Path:
        return self.daemon.socket


@pytest.fixture(scope="module")
def vaults() -> Iterator[Vaults]:
    root = Path(tempfile.mkdtemp(prefix="jm-", dir="/tmp"))
    world = Vaults(root)
    try:
        world.until(lambda s: (s.get("last_index_run") or {}).get("state") == "done")
        yield world
    finally:
        world.daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


@asynccontextmanager
async def mcp_client(socket: Path, errors: Path, mode: str = "legacy") -> AsyncIterator[Client]:
    """`jarvisctl --socket S mcp` started and spoken to by the SDK's own stdio client."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "jarvisd.cli", "--socket", str(socket), "mcp"],
        cwd=str(REPO),
    )
    with errors.open("w", encoding="utf-8") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
            yield client


def text_of(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def call(client: Client, name: str, **arguments: Any) -> CallToolResult:
    return await client.call_tool(name, arguments)


async def ok(client: Client, name: str, **arguments: Any) -> tuple[str, dict[str, Any]]:
    result = await call(client, name, **arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return text_of(result), result.structured_content


async def refused(client: Client, name: str, **arguments: Any) -> str:
    result = await call(client, name, **arguments)
    assert result.is_error, text_of(result)
    return text_of(result)


# ------------------------------------------------------------------- tests


async def test_initialize_lists_tools_and_the_note_resources(
    vaults: Vaults, tmp_path: Path
) -> None:
    assert "ask" in vaults.daemon.client.get("/v1/status")["capabilities"]
    async with mcp_client(vaults.socket, tmp_path / "err") as client:
        assert client.server_info is not None and client.server_info.name == "jarvisd"
        assert "search" in (client.instructions or "")
        names = [tool.name for tool in (await client.list_tools()).tools]
        assert names == [
            "search",
            "read_note",
            "note_links",
            "graph_neighbours",
            "graph_path",
            "unresolved_links",
            "orphans",
            "vault_status",
            "ask",
        ]  # `ask` because this daemon offers it (tests/test_mcp.py: not offered, not listed)
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["note://{vault}/{+path}"]
        first = await client.list_resources()
        assert first.next_cursor is not None  # the garden vault comes on the next page
        second = await client.list_resources(cursor=first.next_cursor)
        assert second.next_cursor is None
        uris = [resource.uri for resource in first.resources + second.resources]
        assert "note://example/Coffee/Espresso.md" in uris
        assert "note://example/Coffee/Grinder%20dial-in%20log.md" in uris
        assert "note://garden/Garden/Tomatoes.md" in uris and len(uris) == 15 + len(SECOND)
        note = await client.read_resource("note://example/Coffee/Espresso.md")
        expected = (vaults.example / "Coffee" / "Espresso.md").read_text(encoding="utf-8")
        assert note.contents[0].text == expected
        assert note.contents[0].mime_type == "text/markdown"
        spaced = await client.read_resource("note://example/Coffee/Grinder%20dial-in%20log.md")
        assert "One line per bag" in spaced.contents[0].text
        for uri, words in (
            ("note://example/Nope.md", "no note 'Nope.md'"),
            ("note://elsewhere/Home.md", "no vault named 'elsewhere'"),
            ("note://example/..%2F..%2Fetc%2Fpasswd", "climbs out of the vault"),
            ("file:///etc/passwd", "notes are note://VAULT/PATH"),
        ):
            with pytest.raises(MCPError, match=words):
                await client.read_resource(uri)
    # The modern (2026-07-28) protocol, negotiated by the SDK's default mode, works too.
    async with mcp_client(vaults.socket, tmp_path / "err2", mode="auto") as client:
        assert len((await client.list_tools()).tools) == 9


async def test_resources_are_listed_in_bounded_pages_across_vaults(vaults: Vaults) -> None:
    bridge = DaemonBridge(ControlClient(vaults.socket))
    seen, cursor, pages = [], None, 0
    while True:
        page = await resources.list_page(bridge, cursor, limit=4)
        pages += 1
        assert len(page.resources) <= 4
        seen.extend(resource.uri for resource in page.resources)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 15 + len(SECOND)
    assert seen.index("note://garden/Garden/Compost.md") > seen.index("note://example/Home.md")
    assert pages == 5  # 15 example notes in pages of 4, 4, 4, 3, then the 3 garden notes


async def test_search_and_read_a_note(vaults: Vaults, tmp_path: Path) -> None:
    async with mcp_client(vaults.socket, tmp_path / "err") as client:
        text, found = await ok(client, "search", query="espresso grind size", limit=3)
        top = found["results"][0]
        assert top["path"] == "Coffee/Espresso.md" and found["mode"] == "hybrid"
        assert "Espresso at home: Coffee/Espresso.md" in text and "**grind**" in text
        assert "offset=3" in text and found["next_offset"] == 3
        _, keyword = await ok(client, "search", query="tomatoes", mode="keyword", vault="garden")
        assert {r["vault"] for r in keyword["results"]} == {"garden"}
        _, tagged = await ok(client, "search", query="bread", tag="baking", folder="Baking")
        assert tagged["results"] and all(r["path"].startswith("Baking/") for r in tagged["results"])
        _, none = await ok(client, "search", query="bread", since="2999-01-01")
        assert none["results"] == []
        assert "Input should be 'hybrid', 'semantic' or 'keyword'" in await refused(
            client, "search", query="x", mode="fuzzy"
        )
        assert "search.max_limit" in await refused(client, "search", query="x", limit=100_000)
        assert "search.max_query_chars" in await refused(client, "search", query="x" * 5000)
        assert "query: Field required" in await refused(client, "search", mode="keyword")
        assert "colour: Extra inputs are not permitted" in await refused(
            client, "search", query="x", colour="red"
        )

        first = top["lines"][0]
        text, note = await ok(client, "read_note", note=top["path"], start_line=first)
        assert note["lines"]["start"] == first and "# Espresso at home" in text
        on_disk = (vaults.example / top["path"]).read_text(encoding="utf-8").splitlines()
        assert note["content"].splitlines()[0] == on_disk[first - 1]
        assert {link["source_path"] for link in note["backlinks"]} >= {"Home.md"}
        _, part = await ok(client, "read_note", note="Espresso at home", end_line=10)
        assert part["lines"] == {"start": 1, "end": 10, "total": 38}
        assert part["next_start_line"] == 11 and part["content"].startswith("---\n")
        _, slashed = await ok(client, "read_note", note="A/B trials", vault="garden")
        assert slashed["path"] == "Trials.md"  # a title with a slash, after no such path
        text, by_title = await ok(client, "read_note", note="tomatoes", vault="garden")
        assert by_title["path"] == "Garden/Tomatoes.md" and by_title["next_start_line"] is None
        assert "no note 'Nothing like it' in any vault" in await refused(
            client, "read_note", note="Nothing like it"
        )
        assert "climbs out of the vault" in await refused(client, "read_note", note="../x.md")
        assert "the note has 38 lines" in await refused(
            client, "read_note", note="Coffee/Espresso.md", start_line=99
        )
        assert "no vault named 'attic'" in await refused(
            client, "read_note", note="Home", vault="attic"
        )


async def test_links_graph_and_reports(vaults: Vaults, tmp_path: Path) -> None:
    async with mcp_client(vaults.socket, tmp_path / "err") as client:
        text, links = await ok(client, "note_links", note="Home")
        assert any(link["target_path"] == "Coffee/Espresso.md" for link in links["links"])
        assert "[[Espresso]] → Coffee/Espresso.md" in text
        assert "no note 'Nowhere.md' in any vault" in await refused(
            client, "note_links", note="Nowhere.md"
        )

        text, near = await ok(client, "graph_neighbours", note="Espresso at home", depth=2)
        assert near["note"]["path"] == "Coffee/Espresso.md" and near["total"] > 4
        assert {item["distance"] for item in near["neighbours"]} == {1, 2}
        _, out = await ok(client, "graph_neighbours", note="Home", direction="out", limit=2)
        assert out["truncated"] is True and len(out["neighbours"]) == 2
        assert "graph.max_depth" in await refused(client, "graph_neighbours", note="Home", depth=9)

        text, path = await ok(
            client, "graph_path", **{"from": "Focaccia", "to": "Thinking in Systems"}
        )
        assert path["found"] and path["notes"][0]["path"] == "Baking/Focaccia.md"
        assert "2 steps" in text
        _, apart = await ok(
            client, "graph_path", **{"from": "Tomatoes", "to": "Ideas", "vault": "garden"}
        )
        assert apart["found"] is True
        assert "to: Field required" in await refused(client, "graph_path", **{"from": "Home"})
        assert "Input should be 'out', 'in' or 'both'" in await refused(
            client, "graph_path", **{"from": "Home", "to": "Beans", "direction": "up"}
        )

        text, unresolved = await ok(client, "unresolved_links", vault="example")
        assert [item["target"] for item in unresolved["targets"]] == ["Pizza oven"]
        assert "[[Pizza oven]]" in text
        # Asked of no vault with two configured: one report per vault, each rendered.
        text, both = await ok(client, "unresolved_links", limit=1)
        assert [report["vault"] for report in both["vaults"]] == ["example", "garden"]
        assert both["vaults"][0]["targets"][0]["target"] == "Pizza oven"
        assert "in vault example" in text and "in vault garden" in text
        assert "limit: Input should be less than or equal to 1000" in await refused(
            client, "unresolved_links", limit=5000
        )
        _, orphans = await ok(client, "orphans", vault="garden")
        assert orphans["vault"] == "garden" and orphans["notes"] == []
        assert "no vault named 'attic'" in await refused(client, "orphans", vault="attic")

        text, status = await ok(client, "vault_status")
        assert [(v["name"], v["notes"]) for v in status["vaults"]] == [
            ("example", 15),
            ("garden", len(SECOND)),
        ]
        assert status["degraded"] is False and status["memory_mode"] == "FULL"
        assert "not degraded" in text and "example (" in text
        assert "Extra inputs are not permitted" in await refused(client, "vault_status", x=1)
        # No llm.model here: the answer is extractive, its citations checked, and says why.
        text, answer = await ok(client, "ask", question="How long should I pull an espresso?")
        assert answer["path"] == "extractive" and answer["reason"]
        assert answer["citations"] and answer["citations"][0]["vault"] in ("example", "garden")
        assert "Sources (checked by jarvisd" in text and "Why: " in text
        assert "question is empty" in await refused(client, "ask", question="   ")
        assert "question: Field required" in await refused(client, "ask")


async def test_a_degraded_answer_is_a_tool_error_that_says_what_to_do(
    vaults: Vaults, tmp_path: Path
) -> None:
    daemon = vaults.daemon
    daemon.rewrite(memory=FORCE_MINIMAL)
    daemon.signal(signal.SIGHUP)
    try:
        vaults.until(lambda s: s["memory_mode"] == "MINIMAL")
        async with mcp_client(vaults.socket, tmp_path / "err") as client:
            result = await call(client, "search", query="espresso grind size")
            assert result.is_error
            text = text_of(result)
            assert text.startswith("Degraded answer: memory is low (MINIMAL memory mode)")
            assert "What to do" in text and "Coffee/Espresso.md" in text  # results still given
            assert result.structured_content and result.structured_content["degraded"] is True
            _, keyword = await ok(client, "search", query="espresso", mode="keyword")
            assert keyword["degraded"] is False
            text, status = await ok(client, "vault_status")
            assert status["degraded"] is True and "MINIMAL" in status["degraded_reasons"][0]
            assert "degraded: memory is low" in text
    finally:
        daemon.rewrite(memory=NORMAL)
        daemon.signal(signal.SIGHUP)
        vaults.until(lambda s: s["memory_mode"] == "FULL")


async def test_a_daemon_that_stops_and_starts_again_is_found_on_the_next_call(
    vaults: Vaults, tmp_path: Path
) -> None:
    errors = tmp_path / "err"
    async with mcp_client(vaults.socket, errors) as client:
        await ok(client, "vault_status")
        assert vaults.daemon.stop() == 0
        for name, arguments in (("search", {"query": "espresso"}), ("read_note", {"note": "Home"})):
            text = await refused(client, name, **arguments)
            assert text.startswith("jarvisd is not reachable: is jarvisd running?")
            assert "call again" in text
        # The core tools stay listed while it is down; ask, a capability, does not.
        assert len((await client.list_tools()).tools) == 8
        with pytest.raises(MCPError, match="jarvisd is not reachable"):
            await client.list_resources()
        vaults.start()
        _, found = await ok(client, "search", query="espresso grind size", limit=1)
        assert found["results"][0]["path"] == "Coffee/Espresso.md"
        await ok(client, "read_note", note="Home")
        assert len((await client.list_tools()).tools) == 9  # ask is back with the daemon
    assert "Traceback" not in errors.read_text(encoding="utf-8")


async def test_odd_arguments_are_tool_errors_never_a_traceback(
    vaults: Vaults, tmp_path: Path
) -> None:
    """Empty names, words for numbers, zero limits: each a clear refusal, none a bug."""
    errors = tmp_path / "err"
    async with mcp_client(vaults.socket, errors) as client:
        for name, arguments in (
            ("search", {"query": ""}),
            ("read_note", {"note": ""}),
            ("read_note", {"note": "Home", "start_line": "first"}),
            ("graph_neighbours", {"note": "Home", "limit": 0}),
            ("orphans", {"limit": 0}),
        ):
            result = await call(client, name, **arguments)
            assert result.is_error, (name, text_of(result))
            assert "inside jarvisctl mcp" not in text_of(result)
    log = errors.read_text(encoding="utf-8")
    assert "Traceback" not in log, log
