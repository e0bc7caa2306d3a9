"""`jarvisctl mcp`: the vault as tools and resources for AI assistants.

An MCP (Model Context Protocol) server on stdin/stdout, built with the official
SDK (`mcp`), that answers every call through the running jarvisd's control
socket: it holds no index and loads no model, so a call costs what the socket
costs, and the socket's peer-uid check still decides who gets in. This module
only registers the subcommand: the SDK is imported when `jarvisctl mcp` runs,
never by the other commands.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from jarvisd.cli.client import ControlClient

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    mcp = commands.add_parser(
        "mcp",
        parents=[common],
        help="serve the vault to AI assistants (Model Context Protocol over stdio)",
        description="Run an MCP server on stdin/stdout for Claude Desktop, Claude Code, "
        "Cursor or any MCP client: search, read and walk the notes through the running "
        "jarvisd. Start it from the client's configuration, not by hand.",
    )
    mcp.set_defaults(handler=cmd_mcp)


def cmd_mcp(client: ControlClient, args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        print(
            "jarvisctl mcp: serving MCP on stdin/stdout for an AI assistant; add it to the "
            "client's configuration (README: AI assistants). Ctrl-D ends it.",
            file=sys.stderr,
        )
    from jarvisd.cli.mcp.server import serve

    serve(client)
    return 0
