"""`jarvisd` / `python -m jarvisd`: run the daemon in the foreground, or check a config."""

from __future__ import annotations

import argparse
import asyncio
import errno
import sys
from pathlib import Path

from jarvisd import __version__
from jarvisd.paths import default_config_path

EX_OK = 0
EX_USAGE = 64
EX_CANTCREAT = 73
EX_CONFIG = 78
# Errors of the environment that a restart cannot cure: exit 73, which the systemd
# units list in RestartPreventExitStatus.
_NEEDS_A_PERSON = (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jarvisd",
        description="Local knowledge daemon: indexes a markdown vault and serves search over "
        "a Unix socket. Runs in the foreground; let systemd or launchd keep it running.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="jarvis.yaml to use (default: "
        "$JARVIS_CONFIG, then ~/.config/jarvis/jarvis.yaml, else built-in defaults)",
    )
    parser.add_argument(
        "--check-config",
        type=Path,
        metavar="FILE",
        help="validate FILE and exit: 0 when valid, 78 with the reason when not",
    )
    parser.add_argument(
        "--print-default-config",
        action="store_true",
        help="print the documented default jarvis.yaml and exit",
    )
    parser.add_argument(
        "--rebuild-index",
        action="store_true",
        help="set the database aside (kept, renamed <name>.broken-<UTC time>) and rebuild "
        "the index from the vault, then serve as usual",
    )
    parser.add_argument("--version", action="version", version=f"jarvisd {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    from jarvisd.model.allocator import limit_arenas

    limit_arenas()  # before any thread exists: see allocator.py
    args = _parser().parse_args(argv)
    from jarvisd.config import ConfigError, load_config

    if args.print_default_config:
        from jarvisd.config.docs import render_example

        sys.stdout.write(render_example())
        return EX_OK
    if args.check_config is not None:
        try:
            load_config(args.check_config)
        except ConfigError as error:
            print(f"jarvisd: invalid config: {error}", file=sys.stderr)
            return EX_CONFIG
        print(f"{args.check_config}: ok")
        return EX_OK

    config_path = args.config if args.config is not None else default_config_path()
    try:
        config = load_config(config_path)
    except ConfigError as error:
        print(f"jarvisd: invalid config: {error}", file=sys.stderr)
        return EX_CONFIG
    return _serve(config, config_path, rebuild=args.rebuild_index)


def _serve(config: object, config_path: Path | None, rebuild: bool = False) -> int:
    from jarvisd import logs
    from jarvisd.api.server import SocketError
    from jarvisd.config import Config
    from jarvisd.daemon import Daemon
    from jarvisd.lockfile import LockHeld
    from jarvisd.store import StoreError

    assert isinstance(config, Config)
    import prometheus_client

    # `*_created` series double every counter for little use; off for the whole process.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    logs.configure(config.logging.level, config.logging.format, config.logging.file)
    log = logs.get_logger("jarvisd")

    async def serve() -> int:
        return await Daemon(config, config_path, rebuild=rebuild).run()

    try:
        return asyncio.run(serve())
    except LockHeld as error:
        log.error("daemon.already_running", reason=str(error), lock=str(error.path), pid=error.pid)
        print(f"jarvisd: {error}", file=sys.stderr)
        return EX_CANTCREAT
    except (SocketError, PermissionError) as error:
        log.error("daemon.cannot_start", reason=str(error))
        print(f"jarvisd: cannot start: {error}", file=sys.stderr)
        return EX_CANTCREAT
    except OSError as error:
        if error.errno not in _NEEDS_A_PERSON:
            raise
        # A read-only or full disk under the database folder (the lock file is the first
        # write): a traceback and exit 1 made systemd's Restart=on-failure start it again
        # and again (found by tests/test_storage_faults_daemon.py).
        log.error("daemon.cannot_start", reason=str(error))
        print(f"jarvisd: cannot start: {error}", file=sys.stderr)
        return EX_CANTCREAT
    except StoreError as error:
        # Damage to the files is recovered from (store.recovered); what is left (a lock
        # another program holds, a missing extension, a newer schema) needs a person.
        log.error("daemon.cannot_start", reason=str(error))
        print(f"jarvisd: cannot start: {error}", file=sys.stderr)
        return EX_CANTCREAT  # RestartPreventExitStatus: no loop under systemd
    except KeyboardInterrupt:
        return EX_OK


if __name__ == "__main__":
    sys.exit(main())
