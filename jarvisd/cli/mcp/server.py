"""The MCP server of `jarvisctl mcp`: the SDK's low-level `Server` on stdio, over the daemon.

The SDK's high-level `MCPServer` (mcp 2.3.0) answers `resources/list` with every
resource at once, ignoring the cursor, and lists a fixed set of tools; this
server needs a paged listing (a vault can hold 10k notes) and a tool list that
follows what the daemon offers, so it gives the low-level `Server` (which
`MCPServer` itself wraps) its handlers directly. Argument models are pydantic,
as in `MCPServer`.

Nothing a user or a model does makes this process fail or answer with a
protocol error: an unknown tool, a bad argument, a daemon that is down or
refuses, and even a bug here all come back as a tool result with `isError`
and a text that says what happened and what to do. Logs go to stderr; stdout
carries the protocol.
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server
from pydantic import ValidationError

from jarvisd import __version__, logs
from jarvisd.cli.client import ControlClient
from jarvisd.cli.mcp import resources
from jarvisd.cli.mcp.bridge import DaemonBridge, DaemonFailure
from jarvisd.cli.mcp.tools import TOOLS, Answer, Tool, by_name, offered

log = logs.get_logger("jarvisd.mcp")
Context = ServerRequestContext[Any, Any]

INSTRUCTIONS = (
    "These tools reach the user's own notes: a markdown vault (Obsidian style) that "
    "jarvisd keeps indexed on this machine. Start with `search`; read a result with "
    "`read_note` (its path, and start_line from the result's lines); follow links with "
    "`note_links`, `graph_neighbours` and `graph_path`; `vault_status` names the vaults "
    "and says whether answers are degraded. Cite notes by their path."
)


def definition(tool: Tool) -> types.Tool:
    return types.Tool(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.input_schema(),
        output_schema=tool.output_schema,
        annotations=types.ToolAnnotations(
            title=tool.title,
            read_only_hint=True,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )


def result(answer: Answer) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=answer.text)],
        structured_content=answer.structured,
        is_error=answer.error,
    )


def failed(text: str, **error: Any) -> types.CallToolResult:
    return result(Answer(text, {"error": {"message": text, **error}}, error=True))


def bad_arguments(tool: Tool, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        got = f" (got {item['input']!r})" if item["type"] not in ("missing",) else ""
        problems.append(f"{where}: {item['msg']}{got}")
    return (
        f"Bad arguments for {tool.name}: {'; '.join(problems)}. Its input schema lists "
        "the arguments it takes; fix them and call again."
    )


class VaultServer:
    """The handlers: tools and resources, each a daemon call away."""

    def __init__(self, daemon: DaemonBridge) -> None:
        self.daemon = daemon

    async def list_tools(
        self, context: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        capabilities = await self.daemon.capabilities()
        return types.ListToolsResult(tools=[definition(tool) for tool in offered(capabilities)])

    async def call_tool(
        self, context: Context, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tool = by_name(params.name)
        if tool is None:
            names = ", ".join(tool.name for tool in TOOLS)
            return failed(f"There is no tool {params.name!r}; the tools are {names}.")
        if tool.requires is not None and tool.requires not in await self.daemon.capabilities():
            return failed(
                f"The running jarvisd does not offer {tool.requires!r}, which {tool.name} "
                "needs: update and restart jarvisd, or use the other tools.",
                code="not_offered",
            )
        try:
            arguments = tool.arguments.model_validate(params.arguments or {})
        except ValidationError as error:
            return failed(bad_arguments(tool, error), code="bad_arguments")
        try:
            return result(await tool.run(self.daemon, arguments))
        except DaemonFailure as failure:
            return result(Answer(failure.text, {"error": failure.error}, error=True))
        except Exception as error:  # a bug here must not take the server down
            log.exception("mcp.tool_failed", tool=tool.name)
            return failed(
                f"{tool.name} failed inside jarvisctl mcp ({type(error).__name__}: {error}); "
                "this is a bug: its log is on the MCP client's stderr.",
                code="internal",
            )

    async def list_resources(
        self, context: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return await resources.list_page(self.daemon, params.cursor if params else None)

    async def list_resource_templates(
        self, context: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[resources.template()])

    async def read_resource(
        self, context: Context, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        return await resources.read(self.daemon, params.uri)


def build_server(client: ControlClient) -> Server[Any]:
    handlers = VaultServer(DaemonBridge(client))
    return Server(
        "jarvisd",
        version=__version__,
        title="jarvisd notes",
        instructions=INSTRUCTIONS,
        on_list_tools=handlers.list_tools,
        on_call_tool=handlers.call_tool,
        on_list_resources=handlers.list_resources,
        on_list_resource_templates=handlers.list_resource_templates,
        on_read_resource=handlers.read_resource,
    )


async def _serve(client: ControlClient) -> None:
    server = build_server(client)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def serve(client: ControlClient) -> None:
    """Serve MCP on stdin/stdout until the client closes stdin."""
    # Warnings and worse, the SDK's own included, as console lines on stderr (stdout
    # carries the protocol).
    logs.configure(level="warning", fmt="console")
    anyio.run(_serve, client)
