"""The daemon's states and the one shape every component has.

A component is started once (`start`), reconfigured on every reload that
applies (`reconfigure(config, diff)`: it asks `diff.touches(...)` itself what
concerns it) and stopped once (`stop(deadline)`, a `time.monotonic()` time it
must be done by). The daemon drives its components through `start_in_order`
and `stop_in_reverse`; `Knowledge` drives its own the same way. The moment a
stop is requested, before anything is stopped, `announce_stopping` tells the
started components that have a `stopping()` (a `StopListener`): work that would
hold the shutdown up (an answer being generated) ends there.

Parts that a single component owns and that do blocking or pure work (the
store, the embedding model, the alert engine, the memory monitor, caches, graph
backends, the LLM runtime) have no lifecycle of their own: their owner hands
them their section with `configure(section)`.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from jarvisd.config import Config, ConfigDiff
    from jarvisd.logs import Logger


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RELOADING = "reloading"
    STOPPING = "stopping"
    STOPPED = "stopped"


def deadline_in(seconds: float) -> float:
    """The deadline `stop` takes, `seconds` from now."""
    return time.monotonic() + seconds


class Component(Protocol):
    """start() -> reconfigure(config, diff)* -> stop(deadline)."""

    @property
    def name(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self, deadline: float) -> None:
        """Done by `deadline` (monotonic seconds); safe after a start that failed halfway."""

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None:
        """Apply what `diff` touches of this component; work that must wait is its own task."""


@runtime_checkable
class StopListener(Protocol):
    """A component that acts at once on a requested stop, before any component stops."""

    def stopping(self) -> None:
        """Synchronous and quick: it runs in the signal dispatch, before `stop(deadline)`."""


def announce_stopping(components: Sequence[Component], log: Logger) -> None:
    """Tell each started component that listens (and, through it, its own) that a
    stop is requested; one that fails is logged, and the others still hear it."""
    for component in components:
        if isinstance(component, StopListener):
            try:
                component.stopping()
            except Exception:
                log.error("component.stopping_failed", component=component.name, exc_info=True)


async def start_in_order(components: Sequence[Component], started: list[Component]) -> None:
    """Start each in turn; each goes in `started` before its start, so a start that
    fails halfway is still stopped."""
    for component in components:
        started.append(component)
        await component.start()


async def stop_in_reverse(components: Sequence[Component], deadline: float, log: Logger) -> None:
    """Stop the last started first, all within one shared deadline.

    One that overruns or fails is logged and the next is stopped anyway: the
    store's checkpoint at the end matters more than any one component's manners.
    """
    for component in reversed(components):
        remaining = max(0.1, deadline - time.monotonic())
        try:
            await asyncio.wait_for(component.stop(deadline), timeout=remaining)
        except TimeoutError:
            log.warning("component.stop_timeout", component=component.name)
        except Exception:
            log.error("component.stop_failed", component=component.name, exc_info=True)


class Background:
    """A component's own tasks (a spawned run, an unload): cancelled and awaited at stop."""

    name = "background"

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self) -> None:
        return None

    async def stop(self, deadline: float) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None:
        return None
