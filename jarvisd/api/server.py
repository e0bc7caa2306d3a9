"""Serving an aiohttp app on the control Unix socket or a TCP address.

Every connection is bounded, because a daemon that runs for months must not
let clients that never finish a request pile up (fault injection measured it:
200 connections that sent half a request held 200 descriptors for as long as
they stayed, and a 1,000-connection flood got EAGAIN at connect() for 509 of
them, the default listen backlog of 128 being full):

- a client has `request_timeout` to send a request's headers after it
  connects, and a body read gets the same time (`api.control.read_json`);
  past it the connection is closed;
- an idle keep-alive connection is closed after KEEPALIVE_SECONDS;
- past `max_connections` open connections a request is answered at once with
  503 `busy` and a Retry-After, and its connection closed;
- the listen backlog is LISTEN_BACKLOG, so a burst is queued by the kernel
  and answered rather than refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

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


# Linux caps a listen backlog at net.core.somaxconn (4096 by default since 5.4).
LISTEN_BACKLOG = 1024
# Our clients (jarvisctl, top, the MCP bridge) open a connection per request;
# keep-alive only has to outlast a burst of calls from one script.
KEEPALIVE_SECONDS = 15.0
# Refusals and timeouts are logged as one summary line at most this often: a
# flood must not turn into a flood of log lines.
SUMMARY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds on a server's connections; read at each connection (a reload applies)."""

    max_connections: int = 0  # 0: no limit
    request_timeout: float = 0.0  # seconds to send a request's headers; 0: none


def _no_limits() -> ConnectionLimits:
    return ConnectionLimits()


Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class GuardedServer(web.Server):
    """aiohttp's Server with a connection limit and a deadline for each request to arrive."""

    def __init__(
        self, handler: Handler, *, limits: Callable[[], ConnectionLimits], **kwargs: Any
    ) -> None:
        super().__init__(self._limited, **kwargs)
        self._inner = handler
        self._limits = limits
        self._deadlines: dict[RequestHandler, asyncio.TimerHandle] = {}
        # Connections that arrived past the limit. Judged at arrival, not when the
        # request is read: a burst of 1,000 clients that all sent at once was answered
        # 503 to the last one (every request saw 1,000 open), none was served.
        self._past_limit: set[RequestHandler] = set()
        self._arrive = self.request_factory
        self.request_factory = self._arrived
        self.counts = {"busy": 0, "timed_out": 0}
        self._logged: dict[str, tuple[float, int]] = {}

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        limit = self._limits().max_connections
        if limit and len(self._connections) > limit:
            self._past_limit.add(handler)
        timeout = self._limits().request_timeout
        if timeout > 0:
            self._deadlines[handler] = self._loop.call_later(timeout, self._expire, handler)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        deadline = self._deadlines.pop(handler, None)
        if deadline is not None:
            deadline.cancel()
        self._past_limit.discard(handler)
        super().connection_lost(handler, exc)

    def _arrived(self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> Any:
        """A request's headers are in: its connection has no deadline to meet any more."""
        deadline = self._deadlines.pop(protocol, None)
        if deadline is not None:
            deadline.cancel()
        return self._arrive(message, payload, protocol, writer, task)

    def _expire(self, handler: RequestHandler) -> None:
        self._deadlines.pop(handler, None)
        transport = self._connections.get(handler)
        if transport is not None:
            transport.close()
            self._count("timed_out")

    async def _limited(self, request: web.BaseRequest) -> web.StreamResponse:
        limit = self._limits().max_connections
        open_now = len(self._connections)
        if limit and request.protocol in self._past_limit:
            self._count("busy")
            body = {
                "error": {
                    "code": "busy",
                    "message": f"{open_now} connections are open and the limit is {limit} "
                    "(control.max_connections); retry in a moment",
                }
            }
            response = web.json_response(
                body, status=503, headers={"Retry-After": "1"}, dumps=json.dumps
            )
            response.force_close()
            return response
        return await self._inner(request)

    def _count(self, what: str) -> None:
        self.counts[what] += 1
        now = time.monotonic()
        since, logged = self._logged.get(what, (0.0, 0))
        if now - since >= SUMMARY_SECONDS:
            log.warning(
                "control.connections_busy" if what == "busy" else "control.request_timed_out",
                count=self.counts[what] - logged,
                total=self.counts[what],
                advice="a client is flooding or stalling the daemon's socket"
                if what == "busy"
                else "a client connected and did not send a whole request in time",
            )
            self._logged[what] = (now, self.counts[what])


class _GuardedRunner(web.AppRunner):
    def __init__(
        self, app: web.Application, limits: Callable[[], ConnectionLimits], **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        # The app's own Server, made the documented way (startup hooks, frozen app),
        # rebuilt as a GuardedServer from the same parts.
        made = await super()._make_server()
        return GuardedServer(
            made.request_handler,
            limits=self._limits,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **made._kwargs,
        )


class AppServer:
    """One aiohttp app on one site; stop() lets in-flight requests finish first."""

    def __init__(
        self,
        app: web.Application,
        shutdown_timeout: float = 10.0,
        limits: Callable[[], ConnectionLimits] = _no_limits,
    ) -> None:
        self.app = app
        self._runner = _GuardedRunner(
            app,
            limits,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=shutdown_timeout,
            keepalive_timeout=KEEPALIVE_SECONDS,
        )
        self._site: web.BaseSite | None = None

    @property
    def server(self) -> GuardedServer | None:
        server = self._runner.server
        return server if isinstance(server, GuardedServer) else None

    async def start_unix(self, path: Path) -> None:
        await self._runner.setup()
        old_umask = os.umask(0o177)  # the socket is born 0600: no window with a wider mode
        try:
            self._site = web.UnixSite(self._runner, str(path), backlog=LISTEN_BACKLOG)
            await self._site.start()
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)

    async def start_tcp(self, host: str, port: int) -> None:
        await self._runner.setup()
        self._site = web.TCPSite(
            self._runner, host, port, reuse_address=True, backlog=LISTEN_BACKLOG
        )
        await self._site.start()

    @property
    def bound(self) -> list[str]:
        return [str(address) for address in self._runner.addresses]

    async def stop(self) -> None:
        await self._runner.cleanup()
