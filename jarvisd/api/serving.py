"""The two listeners as daemon components: the control socket and the metrics port.

Each builds its app when it starts (the services it routes to are started by
then), binds its address, and on stop lets in-flight requests finish within
its shutdown timeout. Connection limits and `metrics.allow_mutations` are read
from the config of the last reload; the addresses themselves need a restart.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from jarvisd.api.metrics import ObservabilityProvider, create_metrics_app
from jarvisd.api.server import AppServer, ConnectionLimits, SocketError, prepare_socket_path
from jarvisd.config import Config, ConfigDiff
from jarvisd.logs import get_logger

log = get_logger("jarvisd.api")


class _Listener:
    name = "listener"

    def __init__(self, config: Config, shutdown_timeout: float) -> None:
        self._config = config
        self._shutdown_timeout = shutdown_timeout
        self._server: AppServer | None = None

    def _limits(self) -> ConnectionLimits:
        control = self._config.control
        return ConnectionLimits(control.max_connections, control.request_timeout)

    def _serve(self, app: web.Application) -> AppServer:
        self._server = AppServer(app, shutdown_timeout=self._shutdown_timeout, limits=self._limits)
        return self._server

    async def stop(self, deadline: float) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None:
        self._config = config


class ControlServer(_Listener):
    """The control socket, with every route `build_app` adds."""

    name = "control"

    def __init__(
        self, config: Config, build_app: Callable[[], web.Application], shutdown_timeout: float
    ) -> None:
        super().__init__(config, shutdown_timeout)
        self._build_app = build_app

    async def start(self) -> None:
        prepare_socket_path(self._config.socket_path)
        await self._serve(self._build_app()).start_unix(self._config.socket_path)


class MetricsServer(_Listener):
    """The metrics port; nothing when `metrics.listen` is null."""

    name = "metrics"

    def __init__(
        self, config: Config, observer: ObservabilityProvider, shutdown_timeout: float
    ) -> None:
        super().__init__(config, shutdown_timeout)
        self._observer = observer

    async def start(self) -> None:
        address = self._config.metrics.host_port
        if address is None:
            return
        app = create_metrics_app(
            self._observer, allow_mutations=lambda: self._config.metrics.allow_mutations
        )
        try:
            await self._serve(app).start_tcp(*address)
        except OSError as error:
            raise SocketError(
                f"cannot listen on {self._config.metrics.listen} (metrics.listen): "
                f"{error.strerror}; pick another port or set it to null"
            ) from error
        log.info("metrics.listening", address=self._config.metrics.listen)
