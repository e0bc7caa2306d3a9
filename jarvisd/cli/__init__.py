"""`jarvisctl`: a thin client of the control socket.

    jarvisctl [--socket PATH] COMMAND [ARGS] [--json]

Exit codes: 0 ok, 1 the daemon reported an error, 2 usage, 3 daemon not reachable.
Imports nothing heavy (no torch, duckdb, pydantic), so it answers fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from jarvisd.cli.client import ControlClient, DaemonError, DaemonUnreachable

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

Command = Callable[[ControlClient, argparse.Namespace], int]


def resolve_socket(explicit: Path | None, config: Path | None) -> Path:
    """--socket, else $JARVIS_SOCKET, else control.socket of the config, else the default."""
    if explicit is not None:
        return explicit.expanduser()
    env = os.environ.get("JARVIS_SOCKET")
    if env:
        return Path(env).expanduser()
    from jarvisd.paths import default_config_path, default_socket_path

    config_path = config or default_config_path()
    if config_path is not None and config_path.is_file():
        import yaml  # the C-accelerated safe loader; no pydantic needed for one key

        try:
            data = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
            configured = (data.get("control") or {}).get("socket")
        except (yaml.YAMLError, OSError, AttributeError, UnicodeDecodeError):
            configured = None
        if configured:
            return Path(os.path.expandvars(os.path.expanduser(str(configured))))
    return default_socket_path()


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable JSON output")
    parser = argparse.ArgumentParser(
        prog="jarvisctl",
        description="Control and query a running jarvisd over its Unix socket.",
        parents=[common],
    )
    parser.add_argument(
        "--socket",
        type=Path,
        help="control socket (default: $JARVIS_SOCKET, "
        "then control.socket in the config, then the platform default)",
    )
    parser.add_argument("--config", type=Path, help="jarvis.yaml to take control.socket from")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (30)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _registrars():
        register(commands, common)
    return parser


def _registrars() -> list[
    Callable[[argparse._SubParsersAction[argparse.ArgumentParser], argparse.ArgumentParser], None]
]:
    from jarvisd.cli import ask, core, graph, index, observe, search

    return [module.register for module in (core, index, search, graph, observe, ask)]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Command = args.handler
    if getattr(args, "local", False):
        return handler(ControlClient(Path("/nonexistent")), args)
    client = ControlClient(resolve_socket(args.socket, args.config), timeout=args.timeout)
    try:
        return handler(client, args)
    except DaemonUnreachable as error:
        print(f"jarvisctl: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except DaemonError as error:
        if args.json:
            import json

            print(
                json.dumps(error.body or {"error": {"code": error.code, "message": error.message}})
            )
        else:
            print(f"jarvisctl: {error.message} ({error.code})", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
