"""`jarvisctl`: a thin client of the control socket.

    jarvisctl [--socket PATH] COMMAND [ARGS] [--json]

Exit codes: 0 ok, 1 the daemon reported an error, 2 usage, 3 daemon not reachable,
78 `config check` found the file invalid (as `jarvisd --check-config` does).
Imports nothing heavy (no torch, duckdb, pydantic), so it answers fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, cast

from jarvisd.cli.client import ControlClient, DaemonError, DaemonUnreachable

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_CONFIG = 78  # sysexits.h EX_CONFIG, the code jarvisd itself exits with


class UsageError(Exception):
    """A command line argparse refuses; main() prints it as text or as JSON."""

    def __init__(self, message: str, usage: str, prog: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse that raises its usage errors, so that `--json` can print them as JSON."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.format_usage(), self.prog)


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
    parser = Parser(
        prog="jarvisctl",
        description="Control and query a running jarvisd over its Unix socket.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    # Each subcommand takes --json too (`jarvisctl status --json`). Its default is
    # SUPPRESS so that a subcommand without it keeps the value the main parser set:
    # with a default of False, argparse copied the subcommand's False over
    # `jarvisctl --json status`'s True, and scripts got the table.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable JSON output",
    )
    parser.add_argument(
        "--socket",
        type=Path,
        help="control socket (default: $JARVIS_SOCKET, "
        "then control.socket in the config, then the platform default)",
    )
    parser.add_argument("--config", type=Path, help="jarvis.yaml to take control.socket from")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (30)")
    # Every subcommand's parser is a Parser too (argparse makes them of the parent's class).
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True),
    )
    for register in _registrars():
        register(commands, common)
    return parser


def _registrars() -> list[
    Callable[[argparse._SubParsersAction[argparse.ArgumentParser], argparse.ArgumentParser], None]
]:
    from jarvisd.cli import ask, core, graph, index, mcp, observe, search, top

    return [module.register for module in (core, index, search, graph, observe, top, ask, mcp)]


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    try:
        return _run(build_parser().parse_args(arguments))
    except UsageError as error:
        return _usage_error(error, as_json="--json" in arguments)


def _usage_error(error: UsageError, *, as_json: bool) -> int:
    """argparse's message on stderr: as it prints it, or as a JSON error object."""
    if as_json:
        import json

        body = {"code": "usage", "message": error.message, "usage": error.usage.strip()}
        print(json.dumps({"error": body}), file=sys.stderr)
    else:
        sys.stderr.write(f"{error.usage}{error.prog}: error: {error.message}\n")
    return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
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
