"""The daemon watching itself: memory sampling, memory modes, alert rules, reports.

Owns the MemoryMonitor and the AlertEngine, runs one sample-and-evaluate step
for the `memory_sample` job, and answers the metrics port's reports. It only
observes: what a mode change does to other components is the daemon's
business (it registers callbacks with `on_mode_change`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jarvisd import __version__
from jarvisd.config import Config, ConfigDiff
from jarvisd.logs import get_logger
from jarvisd.observe.alerts import AlertEngine, AlertInputs
from jarvisd.observe.memory import (
    MemoryMode,
    MemoryMonitor,
    ModeCallback,
    accelerator_memory,
    apply_gc,
    gc_collect,
)
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools

log = get_logger("jarvisd.observe.observer")


@dataclass(frozen=True, slots=True)
class ObserverStatus:
    """The observer's part of `/v1/status` (its keys go at the top level of the JSON)."""

    memory_mode: str  # "FULL", "LITE", "MINIMAL"
    alerts_firing: tuple[str, ...]  # the rules firing now

    def as_dict(self) -> dict[str, Any]:
        return {"memory_mode": self.memory_mode, "alerts_firing": list(self.alerts_firing)}


class Observer:
    """The daemon's first component; implements the metrics port's ObservabilityProvider
    and builds every report about memory and alerts (the daemon and the routes ask here)."""

    name = "observer"

    def __init__(
        self, config: Config, metrics: Metrics, pools: Pools, ready: Callable[[], bool]
    ) -> None:
        self._metrics = metrics
        self._pools = pools
        self._ready = ready
        self.memory = MemoryMonitor(config.memory, metrics)
        self.alerts = AlertEngine(config.alerts, metrics)
        self._inputs = AlertInputs(metrics)
        self._model_memory: dict[str, Callable[[], dict[str, Any]]] = {}
        # Why the daemon cannot serve right now (the daemon sets it), for /health.
        self.unhealthy: Callable[[], str | None] = lambda: None
        apply_gc(config.gc)

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    @property
    def mode(self) -> MemoryMode:
        return self.memory.mode

    def on_mode_change(self, callback: ModeCallback) -> None:
        """`callback` runs on the event loop, whichever thread took the sample."""
        loop = asyncio.get_running_loop()

        def on_loop(old: MemoryMode, new: MemoryMode, reason: str) -> None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                callback(old, new, reason)
            else:
                loop.call_soon_threadsafe(callback, old, new, reason)

        self.memory.on_mode_change(on_loop)

    def add_model_memory(self, name: str, report: Callable[[], dict[str, Any]]) -> None:
        """A component that holds a model reports its memory here (for /metrics/memory)."""
        self._model_memory[name] = report

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.sample()  # the first sample sets the memory mode before anything loads

    async def stop(self, deadline: float) -> None:
        return None

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None:
        if diff.touches("memory"):
            self.memory.configure(config.memory)
        if diff.touches("alerts"):
            self.alerts.configure(config.alerts)
        if diff.touches("gc"):
            apply_gc(config.gc)

    def event(self, rule: str, reason: str, **fields: Any) -> None:
        """Something that happened once and deserves an alert (a store recovery)."""
        self.alerts.event(rule, reason, **fields)

    # ------------------------------------------------------------- sampling

    def sample_now(self) -> dict[str, Any]:
        """One sample, then every alert rule evaluated on it (the memory_sample job)."""
        sample = self.memory.sample()
        self.alerts.evaluate(self._inputs.collect(sample))
        return sample.as_dict()

    async def sample(self) -> dict[str, Any]:
        # psutil reads /proc: fast, but still file I/O, so off the loop; not on the io
        # pool, which indexing keeps busy: a sample must not queue behind a window.
        return await asyncio.to_thread(self.sample_now)

    async def collect_garbage(self) -> dict[str, Any]:
        result = gc_collect()
        log.info("memory.gc", **result)
        return result

    async def reset_metrics(self) -> dict[str, Any]:
        return self._metrics.reset()

    # -------------------------------------------------------------- reports

    def ready(self) -> bool:
        return self._ready()

    def status_summary(self) -> dict[str, Any]:
        unhealthy = self.unhealthy()
        return {
            **({"unhealthy_reason": unhealthy} if unhealthy is not None else {}),
            "version": __version__,
            "uptime_seconds": round(self._metrics.uptime_seconds(), 3),
            "memory_mode": self.memory.mode.value,
            "alerts_firing": [alert["rule"] for alert in self.alerts.firing()],
        }

    def memory_report(self) -> dict[str, Any]:
        latest = self.memory.latest()
        models = {name: report() for name, report in self._model_memory.items()}
        return {
            "mode": self.memory.mode.value,
            "latest": latest.as_dict() if latest else None,
            "trend": self.memory.trend(),
            "models": models,
            "accelerator": accelerator_memory(),
            "thresholds": self.memory.config.modes.model_dump(mode="json"),
            "at": time.time(),
        }

    def memory_history(self) -> dict[str, Any]:
        """The memory report with every sample kept (`/v1/memory`)."""
        report = self.memory_report()
        report["history"] = [sample.as_dict() for sample in self.memory.history()]
        return report

    def alerts_report(self) -> dict[str, Any]:
        """Firing alerts, the latest events and the rules in force (`/v1/alerts`)."""
        return {
            "firing": self.alerts.firing(),
            "recent": self.alerts.recent(),
            "rules": [rule.model_dump(mode="json", by_alias=True) for rule in self.alerts.rules],
        }

    def status(self) -> ObserverStatus:
        """The observer's part of `/v1/status`."""
        return ObserverStatus(
            memory_mode=self.memory.mode.value,
            alerts_firing=tuple(alert["rule"] for alert in self.alerts.firing()),
        )

    def latency_report(self) -> dict[str, Any]:
        return {"operations": self._metrics.latency.percentiles()}

    def requests_report(self, window: float | None = None) -> dict[str, Any]:
        """Recent requests per endpoint; `window` seconds (the 300 s default when None)."""
        stats = self._metrics.request_stats
        return stats.summary() if window is None else stats.summary(window)

    @property
    def requests_horizon_seconds(self) -> int:
        """The longest window `requests_report` can answer for."""
        return self._metrics.request_stats.horizon_seconds
