"""The daemon watching its own memory: samples, history, FULL/LITE/MINIMAL modes, gc.

`MemoryMonitor.sample()` reads psutil (process RSS/VMS/CPU, system available
memory), keeps a bounded history, updates the memory gauges and decides the
memory mode from available memory. Components that can shed memory (embedding
batch size, caches, the LLM) register `on_mode_change` callbacks; the monitor
never reaches into them.

Modes go down at once when available memory falls below a threshold and come
back up only once it exceeds the threshold plus `hysteresis`, so a machine
hovering at a boundary does not flap between modes.

The gc helpers live here too (`gc_collect`, `apply_gc`, `freeze_after_startup`)
because what they report is memory.
"""

from __future__ import annotations

import csv
import enum
import gc
import json
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from jarvisd.config import GcConfig, MemoryConfig, MemoryModesConfig
from jarvisd.logs import get_logger
from jarvisd.observe.metrics import Metrics
from jarvisd.units import human_bytes

_log = get_logger("jarvisd.observe.memory")


class MemoryMode(enum.Enum):
    """How much memory the daemon allows itself; values are the metric label values."""

    FULL = "FULL"
    LITE = "LITE"
    MINIMAL = "MINIMAL"

    @property
    def rank(self) -> int:
        """MINIMAL 0 < LITE 1 < FULL 2."""
        return _RANKS[self]


_RANKS = {MemoryMode.MINIMAL: 0, MemoryMode.LITE: 1, MemoryMode.FULL: 2}

ModeCallback = Callable[[MemoryMode, MemoryMode, str], None]


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading. Sizes in bytes; percent is system memory in use; cpu per one core."""

    timestamp: float
    rss: int
    vms: int
    available: int
    total: int
    percent: float
    cpu_percent: float
    mode: MemoryMode

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mode"] = self.mode.value
        data["time"] = _iso(self.timestamp)
        return data


SAMPLE_FIELDS = [field.name for field in fields(Sample)]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def decide_mode(
    current: MemoryMode, available: int, modes: MemoryModesConfig
) -> tuple[MemoryMode, str]:
    """The mode for this much available memory, starting from `current`, and why.

    Down is immediate: below a mode's threshold, that mode is left. Up needs the
    higher mode's threshold plus the hysteresis margin.
    """
    if available >= modes.full_min_available:
        plain = MemoryMode.FULL
    elif available >= modes.lite_min_available:
        plain = MemoryMode.LITE
    else:
        plain = MemoryMode.MINIMAL
    have = human_bytes(available)
    if plain.rank < current.rank:
        threshold = (
            modes.full_min_available if plain is MemoryMode.LITE else modes.lite_min_available
        )
        return plain, f"available {have} below {human_bytes(threshold)}"
    margin = modes.hysteresis
    if plain.rank > current.rank:
        if available >= modes.full_min_available + margin:
            up, threshold = MemoryMode.FULL, modes.full_min_available
        elif available >= modes.lite_min_available + margin:
            up, threshold = MemoryMode.LITE, modes.lite_min_available
        else:
            return current, "within hysteresis"
        if up.rank > current.rank:
            return up, (
                f"available {have} at or above {human_bytes(threshold)} "
                f"+ hysteresis {human_bytes(margin)}"
            )
    return current, "unchanged"


class MemoryMonitor:
    """Samples process and system memory, keeps history, owns the memory mode."""

    def __init__(self, config: MemoryConfig, metrics: Metrics) -> None:
        self._config = config
        self._metrics = metrics
        self._lock = threading.Lock()
        self._history: deque[Sample] = deque(maxlen=config.history)
        self._callbacks: list[ModeCallback] = []
        # Optimistic start: components start in FULL and the first sample
        # brings them down at once if memory is short.
        self._mode = MemoryMode.FULL
        self._process = psutil.Process()
        # psutil's cpu_percent measures since the previous call; prime it so
        # the first sample reports a real figure instead of 0.
        self._process.cpu_percent(interval=None)
        metrics.set_memory_mode(self._mode.value)

    @property
    def mode(self) -> MemoryMode:
        return self._mode

    @property
    def config(self) -> MemoryConfig:
        return self._config

    def on_mode_change(self, callback: ModeCallback) -> None:
        """Call `callback(old, new, reason)` synchronously from sample() on each change.

        sample() runs on the event loop, so a callback only flips settings
        (batch size, cache size) and schedules heavier work (unloading a model).
        """
        self._callbacks.append(callback)

    def sample(self) -> Sample:
        """Read psutil once (sub-millisecond), record it and apply any mode change."""
        memory = self._process.memory_info()
        system = psutil.virtual_memory()
        cpu = self._process.cpu_percent(interval=None)
        old = self._mode
        new, reason = decide_mode(old, system.available, self._config.modes)
        sample = Sample(
            timestamp=time.time(),
            rss=memory.rss,
            vms=memory.vms,
            available=system.available,
            total=system.total,
            percent=system.percent,
            cpu_percent=cpu,
            mode=new,
        )
        with self._lock:
            self._history.append(sample)
            self._mode = new
        self._update_gauges(sample)
        if new is not old:
            self._announce(old, new, sample, reason)
        return sample

    def _update_gauges(self, sample: Sample) -> None:
        metrics = self._metrics
        metrics.memory_rss.set(sample.rss)
        metrics.memory_vms.set(sample.vms)
        metrics.memory_available.set(sample.available)
        metrics.memory_total.set(sample.total)
        metrics.cpu_percent.set(sample.cpu_percent)
        metrics.set_memory_mode(sample.mode.value)

    def _announce(self, old: MemoryMode, new: MemoryMode, sample: Sample, reason: str) -> None:
        _log.warning(
            "memory.mode_changed",
            before=old.value,
            after=new.value,
            available=sample.available,
            reason=reason,
        )
        for callback in list(self._callbacks):
            try:
                callback(old, new, reason)
            except Exception:
                # One component failing to shed memory must not stop the others
                # from hearing about the change, nor stop sampling.
                _log.exception("memory.mode_callback_failed", callback=repr(callback))

    def history(self) -> list[Sample]:
        with self._lock:
            return list(self._history)

    def latest(self) -> Sample | None:
        with self._lock:
            return self._history[-1] if self._history else None

    def trend(self) -> dict[str, Any]:
        """RSS slope (bytes/minute, least squares) and min/max/mean over the history."""
        samples = self.history()
        if not samples:
            return {"samples": 0}
        times = [sample.timestamp for sample in samples]
        rss = [float(sample.rss) for sample in samples]
        available = [float(sample.available) for sample in samples]
        cpu = [sample.cpu_percent for sample in samples]
        return {
            "samples": len(samples),
            "span_seconds": times[-1] - times[0],
            "rss_bytes": {**_spread(rss), "slope_bytes_per_minute": linear_slope(times, rss) * 60},
            "available_bytes": _spread(available),
            "cpu_percent": _spread(cpu),
        }

    def configure(self, config: MemoryConfig) -> None:
        """New history size (keeping the newest samples) and thresholds.

        The mode is re-evaluated with the new thresholds at the next sample.
        """
        with self._lock:
            if config.history != self._config.history:
                self._history = deque(self._history, maxlen=config.history)
            self._config = config

    def export(self, path: Path) -> int:
        """Write the history to `path` as JSON or CSV (by suffix); returns the sample count.

        Blocking file I/O: the daemon calls it in its I/O thread pool.
        """
        samples = self.history()
        suffix = path.suffix.lower()
        if suffix == ".json":
            rows = [sample.as_dict() for sample in samples]
            path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        elif suffix == ".csv":
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=["time", *SAMPLE_FIELDS])
                writer.writeheader()
                for sample in samples:
                    writer.writerow(sample.as_dict())
        else:
            raise ValueError(f"cannot export memory history as {path.name!r}: use .json or .csv")
        return len(samples)


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "max": max(values), "mean": math.fsum(values) / len(values)}


def linear_slope(times: list[float], values: list[float]) -> float:
    """Least-squares slope of values over times, per second (0 with too little data)."""
    count = len(times)
    if count < 2:
        return 0.0
    mean_time = math.fsum(times) / count
    mean_value = math.fsum(values) / count
    spread = math.fsum((t - mean_time) ** 2 for t in times)
    if spread == 0:
        return 0.0
    covariance = math.fsum(
        (t - mean_time) * (v - mean_value) for t, v in zip(times, values, strict=True)
    )
    return covariance / spread


# ------------------------------------------------------------------------------ gc


def gc_collect() -> dict[str, Any]:
    """A full collection, with what it found and what RSS did.

    RSS often does not drop even when objects are freed (the allocator keeps
    arenas), so `freed_bytes` is a floor of 0, not a promise.
    """
    process = psutil.Process()
    before = process.memory_info().rss
    started = time.perf_counter()
    collected = gc.collect()
    duration = time.perf_counter() - started
    after = process.memory_info().rss
    return {
        "collected": collected,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "freed_bytes": max(0, before - after),
        "duration_seconds": duration,
        "thresholds": list(gc.get_threshold()),
        "frozen": gc.get_freeze_count(),
    }


def apply_gc(config: GcConfig) -> None:
    """Set the collector's generation thresholds from the config (live on reload)."""
    gc.set_threshold(*config.thresholds)


def freeze_after_startup(config: GcConfig) -> bool:
    """gc.freeze() the start-up objects when configured; True if it froze.

    Start-up objects (modules, the model, config) live for the whole run;
    freezing them keeps every later full collection from rescanning them.
    """
    if not config.freeze_after_startup:
        return False
    gc.collect()
    gc.freeze()
    return True


def accelerator_memory() -> dict[str, Any]:
    """GPU/Metal memory held by torch, when torch is already imported and has a device.

    Never imports torch itself: the daemon imports it only when the model loads.
    """
    torch: Any = sys.modules.get("torch")
    if torch is None:
        return {}
    report: dict[str, Any] = {}
    try:
        if torch.cuda.is_available():
            report["cuda"] = {
                "allocated_bytes": int(torch.cuda.memory_allocated()),
                "reserved_bytes": int(torch.cuda.memory_reserved()),
            }
        mps = getattr(torch, "mps", None)
        if mps is not None and torch.backends.mps.is_available():
            report["mps"] = {"allocated_bytes": int(mps.current_allocated_memory())}
    except (RuntimeError, AttributeError) as error:
        report["error"] = str(error)
    return report
