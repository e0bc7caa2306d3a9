"""structlog, configured once at the entry point.

JSON lines when stderr is not a terminal (systemd, launchd), a readable console
format when it is. An optional file gets JSON lines too and is reopened on
SIGHUP so logrotate can move it away. The level can change on reload.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, cast

import structlog
from structlog.typing import EventDict, WrappedLogger

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _FileSink:
    """An append-mode log file that can be reopened after rotation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._stream: TextIO | None = None

    def open(self, path: Path | None) -> None:
        """Switch to `path` (None: no file). The new file opens before the old one
        closes: a failure raises and leaves the sink writing where it was."""
        stream: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            stream = path.open("a", encoding="utf-8", buffering=1)
        with self._lock:
            old, self._stream, self._path = self._stream, stream, path
        if old is not None:
            old.close()

    def reopen(self) -> None:
        self.open(self._path)

    def write(self, line: str) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.write(line + "\n")


class _Output:
    """Renders each event once for stderr (JSON or console) and once for the file."""

    def __init__(self, console: bool) -> None:
        self.console = console
        self.file = _FileSink()
        self._json = structlog.processors.JSONRenderer(sort_keys=False)
        self._console = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        self._lock = threading.Lock()

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> str:
        as_json = str(self._json(logger, method, dict(event)))
        self.file.write(as_json)
        if self.console:
            return str(self._console(logger, method, event))
        return as_json


_output: _Output | None = None
_level = logging.INFO


def _filter_level(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    if _LEVELS.get(method, logging.INFO if method != "critical" else logging.CRITICAL) < _level:
        raise structlog.DropEvent
    return event


class _CurrentStderr:
    """sys.stderr as it is at each write, not as it was at configure(): a caller that
    swaps it (pytest's capture, a benchmark run in-process) must not leave every later
    log line writing to a closed file ("I/O operation on closed file")."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "info", fmt: str = "auto", file: Path | None = None) -> None:
    """Set up structlog for the process. Call once, from the entry point."""
    global _output, _level
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    output = _Output(console)
    output.file.open(file)  # raises before anything changed (a reload then restores)
    if _output is not None:
        _output.file.open(None)
    _output = output
    _level = _LEVELS[level]
    _route_stdlib(level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _filter_level,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _output,
        ],
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )


def _route_stdlib(level: str) -> None:
    """Third-party stdlib logging (APScheduler, aiohttp) goes out as structlog events too."""
    handler = logging.Handler()

    def emit(record: logging.LogRecord) -> None:
        logger = structlog.get_logger(record.name)
        method = record.levelname.lower() if record.levelname != "CRITICAL" else "critical"
        getattr(logger, method, logger.info)(record.getMessage(), logger_name=record.name)

    handler.emit = emit  # type: ignore[method-assign]
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(_LEVELS[level])
    # aiohttp's access log duplicates our request lines; APScheduler's INFO lines
    # duplicate job.started / job.finished.
    for noisy in ("aiohttp.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def set_level(level: str) -> None:
    global _level
    _level = _LEVELS[level]
    logging.getLogger().setLevel(_level)


def set_file(file: Path | None) -> None:
    if _output is not None:
        _output.file.open(file)


def reopen() -> None:
    """Reopen the log file (logrotate moved it); a no-op without one."""
    if _output is not None:
        _output.file.reopen()


Logger = structlog.typing.FilteringBoundLogger


def get_logger(name: str, **initial: Any) -> Logger:
    """The module's logger: every jarvisd module logs through this, so events carry the
    logger's name and go through the level filter and the file sink configured here."""
    logger: Logger = structlog.get_logger(name, **initial)
    return logger


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Every event logged inside the block (in this task or thread) carries `values`."""
    structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.unbind_contextvars(*values)
