"""Serving an aiohttp app on the control Unix socket or a TCP address."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from aiohttp import web

from jarvisd.logs import get_logger

log = get_logger("jarvisd.api")


class SocketError(Exception):
    """The control socket cannot be created where configured."""


def prepare_socket_path(path: Path) -> None:
    """A 0700 directory we own, and no stale socket file in the way.

    Only called with the instance lock held, so any socket already there is stale.
    """
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
    info = directory.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) != 0o700:
        if directory.name == "jarvis" or str(directory).startswith("/tmp/jarvis-"):
            os.chmod(directory, 0o700)
        else:
            log.warning(
                "control.socket_directory_shared",
                directory=str(directory),
                mode=oct(stat.S_IMODE(info.st_mode)),
                advice="put control.socket in a directory only you can enter",
            )
    if info.st_uid != os.getuid() and directory.name == "jarvis":
        raise SocketError(f"{directory} belongs to uid {info.st_uid}, not to us")
    if path.exists() or path.is_symlink():
        mode = path.lstat().st_mode
        if not stat.S_ISSOCK(mode):
            raise SocketError(f"{path} exists and is not a socket; move it away")
        path.unlink()
        log.info("control.stale_socket_removed", socket=str(path))


class AppServer:
    """One aiohttp app on one site; stop() lets in-flight requests finish first."""

    def __init__(self, app: web.Application, shutdown_timeout: float = 10.0) -> None:
        self.app = app
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout
        )
        self._site: web.BaseSite | None = None

    async def start_unix(self, path: Path) -> None:
        await self._runner.setup()
        old_umask = os.umask(0o177)  # the socket is born 0600: no window with a wider mode
        try:
            self._site = web.UnixSite(self._runner, str(path))
            await self._site.start()
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)

    async def start_tcp(self, host: str, port: int) -> None:
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await self._site.start()

    @property
    def bound(self) -> list[str]:
        return [str(address) for address in self._runner.addresses]

    async def stop(self) -> None:
        await self._runner.cleanup()
