"""Memory sampling, modes with hysteresis, history export and the gc helpers."""

from __future__ import annotations

import csv
import gc
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from jarvisd.config import GcConfig, MemoryConfig, MemoryModesConfig
from jarvisd.observe.memory import (
    MemoryMode,
    MemoryMonitor,
    accelerator_memory,
    apply_gc,
    decide_mode,
    freeze_after_startup,
    gc_collect,
    linear_slope,
)
from jarvisd.observe.metrics import MEMORY_MODES, Metrics

GB = 1_000_000_000
TB = 1000 * GB
MB = 1_000_000

MODES = MemoryModesConfig(full_min_available=4 * GB, lite_min_available=2 * GB, hysteresis=256 * MB)


def memory_config(full: int, lite: int, history: int = 720, hysteresis: int = 0) -> MemoryConfig:
    return MemoryConfig(
        history=history,
        modes=MemoryModesConfig(
            full_min_available=full, lite_min_available=lite, hysteresis=hysteresis
        ),
    )


# Thresholds no machine reaches / every machine reaches, to force a mode.
FORCE_MINIMAL = memory_config(20 * TB, 10 * TB)
FORCE_FULL = memory_config(0, 0)


def mode_gauges(metrics: Metrics) -> dict[str, float | None]:
    return {
        mode: metrics.registry.get_sample_value("jarvis_memory_mode", {"mode": mode})
        for mode in MEMORY_MODES
    }


def test_mode_values_are_the_metric_labels() -> None:
    assert [mode.value for mode in MemoryMode] == list(MEMORY_MODES)
    assert MemoryMode.MINIMAL.rank < MemoryMode.LITE.rank < MemoryMode.FULL.rank


def test_going_down_is_immediate() -> None:
    assert decide_mode(MemoryMode.FULL, 4 * GB - 1, MODES)[0] is MemoryMode.LITE
    assert decide_mode(MemoryMode.FULL, 1 * GB, MODES)[0] is MemoryMode.MINIMAL
    mode, reason = decide_mode(MemoryMode.LITE, 2 * GB - 1, MODES)
    assert mode is MemoryMode.MINIMAL
    assert "below 2.0 GB" in reason


def test_going_up_needs_threshold_plus_hysteresis() -> None:
    assert decide_mode(MemoryMode.LITE, 4 * GB, MODES)[0] is MemoryMode.LITE
    assert decide_mode(MemoryMode.LITE, 4 * GB + 255 * MB, MODES)[0] is MemoryMode.LITE
    mode, reason = decide_mode(MemoryMode.LITE, 4 * GB + 256 * MB, MODES)
    assert mode is MemoryMode.FULL
    assert "hysteresis" in reason
    # From MINIMAL with plenty for LITE but not enough margin for FULL: LITE.
    assert decide_mode(MemoryMode.MINIMAL, 4 * GB + 100 * MB, MODES)[0] is MemoryMode.LITE
    assert decide_mode(MemoryMode.MINIMAL, 2 * GB + 100 * MB, MODES)[0] is MemoryMode.MINIMAL
    assert decide_mode(MemoryMode.MINIMAL, 5 * GB, MODES)[0] is MemoryMode.FULL


def test_hovering_at_a_boundary_does_not_flap() -> None:
    mode = MemoryMode.FULL
    seen = [mode]
    # Available memory jitters +-100 MB around the FULL threshold.
    for step in range(200):
        available = 4 * GB + (100 * MB if step % 2 else -100 * MB)
        mode = decide_mode(mode, available, MODES)[0]
        if mode is not seen[-1]:
            seen.append(mode)
    assert seen == [MemoryMode.FULL, MemoryMode.LITE]


def test_sample_reads_the_process_and_updates_gauges() -> None:
    metrics = Metrics()
    monitor = MemoryMonitor(FORCE_FULL, metrics)
    sample = monitor.sample()
    assert sample.rss > 0 and sample.vms >= sample.rss
    assert 0 < sample.available <= sample.total
    assert 0 <= sample.percent <= 100
    assert sample.cpu_percent >= 0
    assert sample.mode is MemoryMode.FULL
    registry = metrics.registry
    assert registry.get_sample_value("jarvis_memory_rss_bytes") == sample.rss
    assert registry.get_sample_value("jarvis_memory_total_bytes") == sample.total
    assert registry.get_sample_value("jarvis_memory_available_bytes") == sample.available
    assert registry.get_sample_value("jarvis_cpu_percent") == sample.cpu_percent
    assert monitor.latest() == sample


def test_short_memory_forces_minimal_with_callback_and_one_log_event() -> None:
    metrics = Metrics()
    monitor = MemoryMonitor(FORCE_MINIMAL, metrics)
    changes: list[tuple[MemoryMode, MemoryMode, str]] = []
    monitor.on_mode_change(lambda old, new, reason: changes.append((old, new, reason)))
    with capture_logs() as logs:
        first = monitor.sample()
        monitor.sample()
    assert first.mode is MemoryMode.MINIMAL
    assert monitor.mode is MemoryMode.MINIMAL
    assert [(old, new) for old, new, _ in changes] == [(MemoryMode.FULL, MemoryMode.MINIMAL)]
    events = [log for log in logs if log["event"] == "memory.mode_changed"]
    assert len(events) == 1
    assert events[0]["before"] == "FULL" and events[0]["after"] == "MINIMAL"
    assert events[0]["available"] == first.available
    assert events[0]["reason"] == changes[0][2]
    assert mode_gauges(metrics) == {"FULL": 0, "LITE": 0, "MINIMAL": 1}


def test_a_failing_callback_does_not_stop_the_others() -> None:
    monitor = MemoryMonitor(FORCE_MINIMAL, Metrics())
    heard: list[MemoryMode] = []

    def broken(old: MemoryMode, new: MemoryMode, reason: str) -> None:
        raise RuntimeError("cannot shrink")

    monitor.on_mode_change(broken)
    monitor.on_mode_change(lambda old, new, reason: heard.append(new))
    with capture_logs() as logs:
        monitor.sample()
    assert heard == [MemoryMode.MINIMAL]
    assert any(log["event"] == "memory.mode_callback_failed" for log in logs)


def test_configure_applies_thresholds_at_the_next_sample() -> None:
    metrics = Metrics()
    monitor = MemoryMonitor(FORCE_MINIMAL, metrics)
    monitor.sample()
    changes: list[MemoryMode] = []
    monitor.on_mode_change(lambda old, new, reason: changes.append(new))
    monitor.configure(FORCE_FULL)
    assert monitor.mode is MemoryMode.MINIMAL  # nothing happens until the next sample
    assert monitor.sample().mode is MemoryMode.FULL
    assert changes == [MemoryMode.FULL]
    assert monitor.config == FORCE_FULL


def test_configure_resizes_history_keeping_the_newest() -> None:
    monitor = MemoryMonitor(memory_config(0, 0, history=5), Metrics())
    samples = [monitor.sample() for _ in range(5)]
    assert monitor.history() == samples
    monitor.configure(memory_config(0, 0, history=2))
    assert monitor.history() == samples[-2:]
    monitor.sample()
    assert len(monitor.history()) == 2


def test_trend_summarises_the_history() -> None:
    monitor = MemoryMonitor(FORCE_FULL, Metrics())
    assert monitor.trend() == {"samples": 0}
    for _ in range(3):
        monitor.sample()
    trend = monitor.trend()
    assert trend["samples"] == 3
    rss = trend["rss_bytes"]
    assert rss["min"] <= rss["mean"] <= rss["max"]
    assert "slope_bytes_per_minute" in rss
    assert set(trend) == {"samples", "span_seconds", "rss_bytes", "available_bytes", "cpu_percent"}


def test_linear_slope() -> None:
    assert linear_slope([0.0, 60.0, 120.0], [100.0, 160.0, 220.0]) == pytest.approx(1.0)
    assert linear_slope([5.0], [1.0]) == 0.0
    assert linear_slope([5.0, 5.0], [1.0, 2.0]) == 0.0


def test_export_json_and_csv(tmp_path: Path) -> None:
    monitor = MemoryMonitor(FORCE_FULL, Metrics())
    samples = [monitor.sample() for _ in range(3)]
    assert monitor.export(tmp_path / "history.json") == 3
    rows = json.loads((tmp_path / "history.json").read_text())
    assert [row["rss"] for row in rows] == [sample.rss for sample in samples]
    assert rows[0]["mode"] == "FULL" and rows[0]["time"].endswith("+00:00")

    assert monitor.export(tmp_path / "history.CSV") == 3
    with (tmp_path / "history.CSV").open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert [int(record["available"]) for record in records] == [s.available for s in samples]
    assert set(records[0]) >= {"time", "timestamp", "rss", "vms", "percent", "mode"}

    with pytest.raises(ValueError, match=r"\.json or \.csv"):
        monitor.export(tmp_path / "history.txt")


# ---------------------------------------------------------------------------- gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_gc_collect_reports_what_it_found() -> None:
    for _ in range(100):
        _Cycle()
    report = gc_collect()
    assert report["collected"] >= 100
    assert report["rss_before_bytes"] > 0 and report["rss_after_bytes"] > 0
    assert report["freed_bytes"] == max(0, report["rss_before_bytes"] - report["rss_after_bytes"])
    assert report["thresholds"] == list(gc.get_threshold())


def test_apply_gc_sets_thresholds(restore_gc: None) -> None:
    apply_gc(GcConfig(thresholds=(1000, 20, 30)))
    assert gc.get_threshold() == (1000, 20, 30)


def test_freeze_after_startup_follows_the_config(restore_gc: None) -> None:
    assert freeze_after_startup(GcConfig(freeze_after_startup=False)) is False
    assert freeze_after_startup(GcConfig(freeze_after_startup=True)) is True
    assert gc.get_freeze_count() > 0


def test_accelerator_memory_is_a_dict_without_importing_torch() -> None:
    import sys

    had_torch = "torch" in sys.modules
    assert isinstance(accelerator_memory(), dict)
    assert ("torch" in sys.modules) == had_torch
