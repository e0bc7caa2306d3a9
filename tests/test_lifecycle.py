"""The one component contract: start in order, stop in reverse under one deadline.

The components here are our own Protocol's, recording what happens to them;
the real ones are exercised through the daemon in test_daemon.py.
"""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from jarvisd.config import Config, ConfigDiff
from jarvisd.lifecycle import (
    Background,
    Component,
    announce_stopping,
    deadline_in,
    start_in_order,
    stop_in_reverse,
)
from jarvisd.logs import get_logger

log = get_logger("tests.lifecycle")


class Recorder:
    def __init__(
        self, name: str, events: list[str], *, fail_start: bool = False, hang: bool = False
    ) -> None:
        self.name = name
        self._events = events
        self._fail_start = fail_start
        self._hang = hang

    async def start(self) -> None:
        self._events.append(f"start {self.name}")
        if self._fail_start:
            raise RuntimeError(f"{self.name} cannot start")

    async def stop(self, deadline: float) -> None:
        self._events.append(f"stop {self.name}")
        if self._hang:
            await asyncio.Event().wait()
        if self.name == "broken":
            raise RuntimeError("broken stop")

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None:
        self._events.append(f"reconfigure {self.name}")


async def test_components_stop_in_reverse_of_their_start() -> None:
    events: list[str] = []
    components: list[Component] = [Recorder(name, events) for name in ("a", "b", "c")]
    started: list[Component] = []
    await start_in_order(components, started)
    await stop_in_reverse(started, deadline_in(5), log)
    assert events == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


async def test_a_start_that_fails_is_stopped_with_those_before_it() -> None:
    events: list[str] = []
    components: list[Component] = [
        Recorder("a", events),
        Recorder("b", events, fail_start=True),
        Recorder("c", events),
    ]
    started: list[Component] = []
    with pytest.raises(RuntimeError, match="b cannot start"):
        await start_in_order(components, started)
    await stop_in_reverse(started, deadline_in(5), log)
    assert events == ["start a", "start b", "stop b", "stop a"]


async def test_one_that_overruns_or_fails_does_not_keep_the_others_running() -> None:
    events: list[str] = []
    components: list[Component] = [
        Recorder("store", events),
        Recorder("broken", events),
        Recorder("stuck", events, hang=True),
    ]
    with capture_logs() as logs:
        await stop_in_reverse(components, deadline_in(0.2), log)
    assert events == ["stop stuck", "stop broken", "stop store"]
    assert [(entry["event"], entry["component"]) for entry in logs] == [
        ("component.stop_timeout", "stuck"),
        ("component.stop_failed", "broken"),
    ]


class Listener(Recorder):
    """A component that hears a requested stop (a StopListener), as ask does."""

    def stopping(self) -> None:
        self._events.append(f"stopping {self.name}")
        if self.name == "broken":
            raise RuntimeError("broken stopping")


async def test_a_requested_stop_reaches_the_listeners_before_any_stops() -> None:
    events: list[str] = []
    components: list[Component] = [
        Listener("broken", events),
        Recorder("deaf", events),
        Listener("ask", events),
    ]
    with capture_logs() as logs:
        announce_stopping(components, log)
    assert events == ["stopping broken", "stopping ask"]
    assert [(entry["event"], entry["component"]) for entry in logs] == [
        ("component.stopping_failed", "broken")
    ]


async def test_background_tasks_are_cancelled_and_awaited_at_stop() -> None:
    background = Background()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    task = background.spawn(forever(), "forever")
    await asyncio.sleep(0)
    await background.stop(deadline_in(5))
    assert task.cancelled() and cancelled.is_set()
