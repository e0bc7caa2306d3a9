"""`jarvisctl mcp` without a daemon: schemas, pages of a note, the tool list, errors, imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema.validators import validator_for

from jarvisd.cli.client import ControlClient
from jarvisd.cli.mcp import resources
from jarvisd.cli.mcp.bridge import DaemonBridge, DaemonFailure
from jarvisd.cli.mcp.pages import ArgumentProblem, page_of
from jarvisd.cli.mcp.server import build_server, definition
from jarvisd.cli.mcp.tools import TOOLS, NoArguments, Tool, by_name, offered, vault_status

CORE = [
    "search",
    "read_note",
    "note_links",
    "graph_neighbours",
    "graph_path",
    "unresolved_links",
    "orphans",
    "vault_status",
]


def check_schema(schema: dict[str, Any]) -> None:
    validator_for(schema).check_schema(schema)  # raises SchemaError with the reason


@pytest.mark.parametrize("tool", TOOLS, ids=lambda tool: tool.name)
def test_every_tool_schema_is_valid_json_schema_and_says_when_to_use_it(tool: Tool) -> None:
    wire = definition(tool)
    check_schema(wire.input_schema)
    check_schema(wire.output_schema or {})
    assert wire.input_schema["type"] == "object"
    assert wire.input_schema.get("additionalProperties") is False  # typos are errors
    assert len(tool.description) > 60 and wire.annotations and wire.annotations.read_only_hint
    for name, prop in wire.input_schema.get("properties", {}).items():
        assert prop.get("description"), f"{tool.name}.{name} has no description"


def test_the_readme_example_of_each_tool_is_valid_for_its_schema() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    examples = dict(re.findall(r"^\| `(\w+)` \| .+ \| `(\{.*\})` \|$", readme, re.MULTILINE))
    assert sorted(examples) == sorted(tool.name for tool in TOOLS)
    for tool in TOOLS:
        arguments = json.loads(examples[tool.name])
        validator_for(tool.input_schema())(tool.input_schema()).validate(arguments)
        tool.arguments.model_validate(arguments)


def test_graph_path_takes_from_and_to() -> None:
    tool = next(tool for tool in TOOLS if tool.name == "graph_path")
    schema = tool.input_schema()
    assert set(schema["required"]) == {"from", "to"}
    arguments = tool.arguments.model_validate({"from": "A", "to": "B"})
    assert (arguments.source, arguments.target) == ("A", "B")  # type: ignore[attr-defined]


def test_a_tool_that_needs_a_capability_is_listed_only_when_offered() -> None:
    today = frozenset({"search", "graph", "notes", "notes.list"})
    assert [tool.name for tool in offered(today)] == CORE  # not offered, not listed
    assert [tool.name for tool in offered(today | {"ask"})] == [*CORE, "ask"]
    assert [tool.name for tool in offered(frozenset())] == CORE  # daemon down
    ask = by_name("ask")
    assert ask is not None and ask.requires == "ask"


def test_a_page_is_whole_lines_within_the_budget_and_names_the_next() -> None:
    content = "".join(f"line {number:03d} {'x' * 10}\n" for number in range(1, 101))  # 20 chars
    first = page_of(content, 1, None, budget=200)
    assert (first.start, first.end, first.total, first.next_start) == (1, 10, 100, 11)
    assert first.text.splitlines()[-1].startswith("line 010")
    pages, start = [first.text], first.next_start
    while start is not None:
        page = page_of(content, start, None, budget=200)
        pages.append(page.text)
        start = page.next_start
    assert "".join(pages) == content and len(pages) == 10
    ranged = page_of(content, 40, 45, budget=10_000)
    assert (ranged.start, ranged.end, ranged.next_start) == (40, 45, 46)
    past = page_of(content, 95, 500)  # a range past the end stops at the end
    assert (past.end, past.next_start) == (100, None)
    long_line = page_of("y" * 500 + "\nz\n", 1, None, budget=100)
    assert long_line.end == 1 and long_line.next_start == 2  # always at least one line
    assert page_of("", 1, None).total == 0 and page_of(None, 1, None).text == ""


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (0, None, "start_line must be 1 or more, got 0"),
        (101, None, "start_line 101 is past the end: the note has 100 lines"),
        (50, 10, "end_line (10) must not be before start_line (50)"),
    ],
)
def test_a_range_outside_the_note_is_refused_with_what_fits(
    start: int, end: int | None, message: str
) -> None:
    content = "".join(f"{number}\n" for number in range(1, 101))
    with pytest.raises(ArgumentProblem, match=message.replace("(", r"\(").replace(")", r"\)")):
        page_of(content, start, end)


async def test_no_daemon_is_a_failure_that_says_how_to_start_it(tmp_path: Path) -> None:
    bridge = DaemonBridge(ControlClient(tmp_path / "absent.sock", timeout=2))
    with pytest.raises(DaemonFailure) as caught:
        await vault_status(bridge, NoArguments())
    assert "jarvisd is not reachable" in caught.value.text
    assert "systemctl --user start jarvisd" in caught.value.text
    assert caught.value.error["code"] == "unreachable"
    assert await bridge.capabilities() == frozenset()  # core tools are still listed


async def test_a_daemon_that_does_not_answer_in_time_is_called_busy(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)  # accepts the connection, never answers
        bridge = DaemonBridge(ControlClient(path, timeout=0.3))
        with pytest.raises(DaemonFailure) as caught:
            await bridge.get("/v1/status")
    assert caught.value.error["code"] == "timeout"
    assert (
        "did not answer within" in caught.value.text
        and "call again in a moment" in caught.value.text
    )
    assert "Start it" not in caught.value.text


def test_the_server_is_built_without_touching_the_daemon(tmp_path: Path) -> None:
    server = build_server(ControlClient(tmp_path / "absent.sock"))
    options = server.create_initialization_options()
    assert options.server_name == "jarvisd"
    assert options.capabilities.tools is not None and options.capabilities.resources is not None


@pytest.mark.parametrize(
    ("vault", "path", "uri"),
    [
        (
            "example",
            "Coffee/Grinder dial-in log.md",
            "note://example/Coffee/Grinder%20dial-in%20log.md",
        ),
        ("my notes", "Home.md", "note://my%20notes/Home.md"),
        ("v", "a#b?.md", "note://v/a%23b%3F.md"),
    ],
)
def test_note_uris_keep_the_path_readable_and_round_trip(vault: str, path: str, uri: str) -> None:
    assert resources.note_uri(vault, path) == uri
    matched = resources._TEMPLATE.match(uri)
    assert matched == {"vault": vault, "path": path}


def test_a_cursor_from_elsewhere_is_refused() -> None:
    from mcp.shared.exceptions import MCPError

    with pytest.raises(MCPError, match="did not come from this server"):
        resources._decode("not base64 json!")
    assert resources._decode(resources._encode("v", "a.md")) == ("v", "a.md")


def test_mcp_is_imported_only_by_jarvisctl_mcp() -> None:
    """`jarvisctl mcp` itself brings in the SDK and nothing heavy; other commands not even that."""
    probe = (
        "import sys, json\n"
        "import jarvisd.cli\n"
        "jarvisd.cli.build_parser()\n"
        "before = sorted(m for m in ('mcp', 'pydantic', 'anyio') if m in sys.modules)\n"
        "import jarvisd.cli.mcp.server\n"
        "heavy = sorted(m for m in ('torch', 'duckdb', 'sentence_transformers', 'numpy',\n"
        "    'transformers', 'aiohttp', 'pandas') if m in sys.modules)\n"
        "print(json.dumps({'before': before, 'heavy': heavy}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    seen = json.loads(result.stdout)
    assert seen == {"before": [], "heavy": []}, seen
