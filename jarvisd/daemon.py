"""The daemon's lifecycle: lock, start, serve, signals, reload, shutdown, sd_notify.

Signal handlers only enqueue the signal's name; one task dispatches them to
`handle_hup` / `handle_term` (the gunicorn arbiter's shape), so reloads and
shutdowns run as ordinary coroutines, one at a time.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from jarvisd import __version__, logs
from jarvisd.api.ask import add_ask_routes
from jarvisd.api.control import add_jobs_routes, add_report_routes, create_control_app
from jarvisd.api.graph import add_graph_routes
from jarvisd.api.index import add_index_routes
from jarvisd.api.metrics import add_mutation_routes
from jarvisd.api.notes import add_notes_routes
from jarvisd.api.search import add_search_routes
from jarvisd.api.serving import ControlServer, MetricsServer
from jarvisd.config import Config, ConfigDiff, ConfigError, diff_configs, load_config, masked
from jarvisd.jobs import JobScheduler
from jarvisd.knowledge import Knowledge
from jarvisd.lifecycle import (
    Component,
    State,
    announce_stopping,
    start_in_order,
    stop_in_reverse,
)
from jarvisd.lockfile import LockFile
from jarvisd.observe.metrics import Metrics
from jarvisd.observe.observer import Observer
from jarvisd.pools import Pools
from jarvisd.reports import DaemonStatus, ReloadOutcome
from jarvisd.store import Recovery
from jarvisd.systemd import Notifier

log = logs.get_logger("jarvisd.daemon")

SHUTDOWN_DEADLINE = 20.0  # seconds for everything; systemd's TimeoutStopSec is above it
EXIT_FORCED = 130  # 128 + SIGINT: a second Ctrl-C during the shutdown
# Loading is bounded (size, alias expansion, regular files only); this is the backstop.
RELOAD_READ_TIMEOUT = 10.0
_SIGNALS = {signal.SIGHUP: "hup", signal.SIGTERM: "term", signal.SIGINT: "int"}


class Daemon:
    def __init__(self, config: Config, config_path: Path | None, rebuild: bool = False) -> None:
        self._config = config
        self.config_path = config_path
        self.metrics = Metrics()
        self.state = State.STARTING
        self.started_at = time.time()
        self.notifier = Notifier()
        self.pools = Pools(config.threads, llm=config.llm.max_concurrent)
        self.jobs = JobScheduler(config.schedule, self.metrics)
        self.observer = Observer(config, self.metrics, self.pools, ready=self.ready)
        self.knowledge = Knowledge(config, self.metrics, self.pools, self.jobs)
        if rebuild:
            self.knowledge.rebuild_requested = "rebuild requested (jarvisd --rebuild-index)"
        self.observer.on_mode_change(self.knowledge.on_memory_mode)
        self.observer.unhealthy = lambda: self.knowledge.unhealthy
        self.knowledge.on_recovered = self._store_recovered
        for model, report in self.knowledge.model_memory_reports().items():
            self.observer.add_model_memory(model, report)
        self.jobs.register(
            "memory_sample",
            self.observer.sample,
            schedule_key="memory_sample",
            description="Sample memory and CPU; evaluate alert rules",
        )
        # Started in this order, stopped in reverse under one SHUTDOWN_DEADLINE: the
        # first sample sets the memory mode before the model loads; the socket opens
        # last, once every service it routes to answers, and closes first.
        self._components: list[Component] = [
            self.observer,
            self.knowledge,
            self.jobs,
            ControlServer(config, self._control_app, shutdown_timeout=SHUTDOWN_DEADLINE / 2),
            MetricsServer(config, self.observer, shutdown_timeout=2.0),
        ]
        self._started: list[Component] = []
        self._locks = [
            LockFile(config.socket_path.with_name(config.socket_path.name + ".lock")),
            LockFile(config.database_path.with_name(config.database_path.name + ".lock")),
        ]
        self._signals: asyncio.Queue[str] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._reloads: set[asyncio.Task[Any]] = set()
        self.last_reload: ReloadOutcome | None = None
        self.metrics.config_last_reload_successful.set(1)
        self.metrics.config_last_reload_success_timestamp.set(time.time())

    @property
    def config(self) -> Config:
        return self._config

    # ------------------------------------------------------------------ run

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the process exit code."""
        for lock in self._locks:
            lock.acquire()
        try:
            try:
                await self._start()
            except BaseException:
                # Undo what did start (socket file, scheduler, store) before exiting.
                await self._shutdown()
                raise
            await self._stop.wait()
            await self._shutdown()
        finally:
            for lock in reversed(self._locks):
                lock.release()
        return 0

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        for signum, name in _SIGNALS.items():
            loop.add_signal_handler(signum, self._signals.put_nowait, name)
        self._tasks.append(loop.create_task(self._dispatch_signals(), name="signals"))
        await start_in_order(self._components, self._started)

        self.state = State.RUNNING
        if self._config.gc.freeze_after_startup:
            gc.freeze()  # start-up objects live forever; stop rescanning them
        self.notifier.ready()
        self.knowledge.after_ready()
        interval = self.notifier.watchdog_interval
        if interval:
            self._tasks.append(loop.create_task(self._watchdog(interval), name="watchdog"))
        log.info(
            "daemon.ready",
            pid=os.getpid(),
            version=__version__,
            socket=str(self._config.socket_path),
            config=str(self.config_path) if self.config_path else None,
        )

    def _control_app(self) -> web.Application:
        """The control socket's routes, each over the component that answers it."""
        app = create_control_app(self)
        add_jobs_routes(app, self.jobs)
        add_report_routes(app, self.observer)
        add_index_routes(app, self.knowledge)
        add_search_routes(app, self.knowledge)
        add_graph_routes(app, self.knowledge.graph)
        add_notes_routes(app, self.knowledge.graph.notes)
        add_ask_routes(app, self.knowledge.ask)
        # The metrics port's POST operations are always allowed on the socket: its peer
        # is the daemon's own user.
        for prefix in ("/metrics", "/v1/metrics"):
            add_mutation_routes(app, self.observer, prefix, allowed=True)
        return app

    def ready(self) -> bool:
        """Serving, and not recovering from a damaged database (/health answers 503)."""
        return self.state in (State.RUNNING, State.RELOADING) and self.knowledge.unhealthy is None

    def _store_recovered(self, recovery: Recovery) -> None:
        kept = ", ".join(str(path) for path in recovery.kept) or "none"
        self.observer.event(
            "store_recovered",
            f"{recovery.reason}; files kept: {kept}; the index is rebuilt from the vault",
            files=[str(path) for path in recovery.kept],
            phase=recovery.phase,
        )

    async def _dispatch_signals(self) -> None:
        while True:
            name = await self._signals.get()
            if name == "hup":
                # A reload runs beside the queue (reloads still wait for each other on
                # the reload lock): a SIGTERM behind it must stop the daemon within its
                # deadline whatever the reload does; a hung reload once held it for good.
                task = asyncio.get_running_loop().create_task(self._handle("hup"), name="hup")
                self._reloads.add(task)
                task.add_done_callback(self._reloads.discard)
            else:
                await self._handle(name)

    async def _handle(self, name: str) -> None:
        try:
            await getattr(self, f"handle_{name}")()
        except Exception:
            log.error("daemon.signal_handler_failed", signal=name, exc_info=True)

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    # -------------------------------------------------------------- signals

    async def handle_hup(self) -> None:
        try:
            logs.reopen()
        except OSError as error:
            # Never a reason to skip the reload: it may be the fix (a new logging.file).
            log.error("logging.reopen_failed", error=str(error))
        await self.reload("SIGHUP")

    async def handle_term(self) -> None:
        self._request_stop("SIGTERM")

    async def handle_int(self) -> None:
        self._request_stop("SIGINT")

    def _request_stop(self, reason: str) -> None:
        if self.state is State.STOPPING:
            if reason == "SIGINT":
                # A second Ctrl-C means "now" (uvicorn does the same). Nothing is lost:
                # every note is committed in its own transaction and the WAL replays.
                log.warning(
                    "daemon.forced_exit",
                    signal=reason,
                    advice="the database is consistent; the next start replays its WAL",
                )
                sys.stderr.flush()
                os._exit(EXIT_FORCED)
            log.warning("daemon.stop_already_requested", signal=reason)
            return
        log.info("daemon.stopping", reason=reason)
        self.state = State.STOPPING
        # Answers being generated end now (knowledge's ask service listens), so the
        # socket's in-flight requests drain fast.
        announce_stopping(self._started, log)
        self.notifier.stopping()
        self._stop.set()

    async def _shutdown(self) -> None:
        """Stop what started in reverse (serving first, letting in-flight requests
        finish; the store last), all under one deadline; then the pools."""
        deadline = time.monotonic() + SHUTDOWN_DEADLINE
        await stop_in_reverse(self._started, deadline, log)
        self._started.clear()
        for task in [*self._tasks, *self._reloads]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._reloads, return_exceptions=True)
        self.pools.shutdown(wait=True)
        socket_path = self._config.socket_path
        if socket_path.exists():
            socket_path.unlink()
        self.state = State.STOPPED
        log.info("daemon.stopped", uptime_seconds=round(time.time() - self.started_at, 3))

    # --------------------------------------------------------------- reload

    async def reload(self, source: str) -> ReloadOutcome:
        """Validate the whole file, then apply key by key; an invalid file changes nothing."""
        async with self._reload_lock:
            self.state = State.RELOADING
            self.notifier.reloading()
            try:
                return await self._reload(source)
            finally:
                if self.state is State.RELOADING:
                    self.state = State.RUNNING
                self.notifier.ready()

    async def _reload(self, source: str) -> ReloadOutcome:
        try:
            new = await asyncio.wait_for(
                self.pools.run("io", load_config, self.config_path), RELOAD_READ_TIMEOUT
            )
        except ConfigError as error:
            return self._reload_failed(source, str(error))
        except TimeoutError:
            return self._reload_failed(
                source, f"reading {self.config_path} took past {RELOAD_READ_TIMEOUT:.0f} s"
            )
        old = self._config
        applied, diff = diff_configs(old, new)
        try:
            self._apply(applied, diff)
        except Exception as error:
            # All or nothing: put back what was applied before the failure.
            log.error("config.apply_failed", source=source, exc_info=True)
            try:
                self._apply(old, diff_configs(applied, old)[1])
            except Exception:
                log.error("config.restore_failed", source=source, exc_info=True)
            self._config = old
            return self._reload_failed(source, f"applying the new config failed: {error}")
        self.metrics.config_last_reload_successful.set(1)
        self.metrics.config_last_reload_success_timestamp.set(time.time())
        outcome = ReloadOutcome(source, time.time(), diff)
        self.last_reload = outcome
        log.info("config.reloaded", **outcome.as_dict())
        if diff.restart_required:
            log.warning("config.restart_required", keys=diff.restart_required)
        return outcome

    def _reload_failed(self, source: str, reason: str) -> ReloadOutcome:
        self.metrics.config_last_reload_successful.set(0)
        outcome = ReloadOutcome(source, time.time(), error=reason)
        self.last_reload = outcome
        log.error("config.reload_failed", source=source, reason=reason)
        return outcome

    def _apply(self, config: Config, diff: ConfigDiff) -> None:
        """Every component in start order, each taking what `diff` touches of it."""
        self._config = config
        if diff.touches("logging"):
            logs.configure(config.logging.level, config.logging.format, config.logging.file)
        self.pools.reconfigure(config, diff)
        for component in self._components:
            component.reconfigure(config, diff)

    # ------------------------------------------------------------ services

    def status(self) -> DaemonStatus:
        return DaemonStatus(
            state=self.state,
            pid=os.getpid(),
            version=__version__,
            uptime_seconds=round(time.time() - self.started_at, 3),
            started_at=self.started_at,
            config_path=self.config_path,
            socket=self._config.socket_path,
            database=self._config.database_path,
            observer=self.observer.status(),
            capabilities=tuple(self.knowledge.capabilities()),
            threads=self.pools.sizes(),
            knowledge=self.knowledge.status(),
            jobs=self.jobs.describe(),
            last_reload=self.last_reload,
        )

    def effective_config(self) -> dict[str, Any]:
        return {
            "path": str(self.config_path) if self.config_path else None,
            "config": masked(self._config),
        }
