"""The daemon's states."""

from __future__ import annotations

import enum


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RELOADING = "reloading"
    STOPPING = "stopping"
    STOPPED = "stopped"
