"""Another uid is refused: by the peer-credential check, and by the socket's file mode.

The child processes fork without exec and drop to uid 65534 (`nobody`) before
connecting, so SO_PEERCRED reports a genuinely different uid. (An exec'd child
cannot run as nobody here: the interpreter lives under /root, mode 0700.)
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess

from jarvisd.api.control import create_control_app
from jarvisd.api.server import AppServer, SocketError, prepare_socket_path
from jarvisd.cli.client import ControlClient, DaemonError, DaemonUnreachable
from jarvisd.config import Config, parse_config
from jarvisd.daemon import Daemon

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="switching uid needs root")


def run_as(uid: int, action: Callable[[], str]) -> str:
    """Fork, drop to `uid`, run `action`, and return what it printed (or its error)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no exec, only modules imported already
        os.close(read_end)
        try:
            os.setgid(uid)
            os.setuid(uid)
            result = action()
        except BaseException as error:
            result = f"{type(error).__name__}: {error}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def status_via(socket_path: Path) -> Callable[[], str]:
    def action() -> str:
        try:
            return json.dumps(ControlClient(socket_path, timeout=10).get("/v1/status"))
        except DaemonError as error:
            return f"DaemonError {error.status} {error.message}"
        except DaemonUnreachable as error:
            return f"DaemonUnreachable {error}"

    return action


def config_for(root: Path) -> Config:
    return parse_config(
        f"control: {{socket: {root}/run/jarvisd.sock}}\n"
        f"storage: {{database: {root}/data/jarvis.duckdb}}\nmetrics: {{listen: null}}\n"
    )


async def test_peer_of_another_uid_is_refused(short_tmp: Path) -> None:
    config = config_for(short_tmp)
    daemon = Daemon(config, None)
    prepare_socket_path(config.socket_path)
    server = AppServer(create_control_app(daemon))
    await server.start_unix(config.socket_path)
    try:
        # Open the file modes on purpose, so that only the uid check stands in the way.
        os.chmod(short_tmp, 0o755)
        os.chmod(config.socket_path.parent, 0o755)
        os.chmod(config.socket_path, 0o666)
        loop = asyncio.get_running_loop()
        refused = await loop.run_in_executor(None, run_as, NOBODY, status_via(config.socket_path))
        assert refused == f"DaemonError 403 uid {NOBODY} may not use this socket"
        allowed = await loop.run_in_executor(None, status_via(config.socket_path))
        assert json.loads(allowed)["pid"] == os.getpid()
    finally:
        await server.stop()
        daemon.pools.shutdown()


def test_socket_file_mode_keeps_other_uids_out(
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = start_daemon()
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
    os.chmod(daemon.root, 0o755)  # let nobody reach the 0700 run/ directory's parent
    outcome = run_as(NOBODY, status_via(daemon.socket))
    assert outcome.startswith("DaemonUnreachable permission denied"), outcome


# Issue 16, point 7: the socket's directory is checked at start, then fixed or refused.
def test_our_socket_directory_found_open_is_closed_to_0700(tmp_path: Path) -> None:
    directory = tmp_path / "jarvis"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    prepare_socket_path(directory / "jarvisd.sock")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_socket_directory_of_another_uid_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "jarvis"
    directory.mkdir(mode=0o700)
    os.chown(directory, NOBODY, NOBODY)
    with pytest.raises(SocketError, match=f"belongs to uid {NOBODY}, not to us"):
        prepare_socket_path(directory / "jarvisd.sock")


def test_a_file_in_the_socket_place_is_refused_not_removed(tmp_path: Path) -> None:
    directory = tmp_path / "jarvis"
    directory.mkdir(mode=0o700)
    (directory / "jarvisd.sock").write_text("someone's file", encoding="utf-8")
    with pytest.raises(SocketError, match="is not a socket; move it away"):
        prepare_socket_path(directory / "jarvisd.sock")
    assert (directory / "jarvisd.sock").read_text(encoding="utf-8") == "someone's file"
