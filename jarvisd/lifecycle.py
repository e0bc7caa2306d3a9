"""The shape every long-lived part of the daemon shares, and the daemon's states."""

from __future__ import annotations

import enum
from typing import Protocol

from jarvisd.config import Config, ConfigDiff


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RELOADING = "reloading"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Component(Protocol):
    """Started in order, stopped in reverse (each within a deadline), reconfigured on reload."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None: ...
