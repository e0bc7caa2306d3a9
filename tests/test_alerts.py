"""Alert rules: fire after `for`, repeat after cooldown, resolve, reconfigure; explicit times."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from jarvisd.config import AlertsConfig, MemoryConfig
from jarvisd.observe.alerts import AlertEngine, AlertInputs
from jarvisd.observe.memory import MemoryMonitor
from jarvisd.observe.metrics import Metrics

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20+00:00


def alerts_config(*rules: dict[str, Any], cooldown: str = "10m") -> AlertsConfig:
    return AlertsConfig.model_validate({"cooldown": cooldown, "rules": list(rules)})


MEMORY_RULE = {"name": "memory_high", "metric": "memory_percent", "threshold": 80, "for": "1m"}
JOB_RULE = {"name": "job_failing", "metric": "job_failures", "threshold": 0, "severity": "critical"}


def firing_gauge(metrics: Metrics, rule: str) -> float | None:
    return metrics.registry.get_sample_value("jarvis_alerts_firing", {"rule": rule})


def fired_total(metrics: Metrics, rule: str) -> float | None:
    return metrics.registry.get_sample_value("jarvis_alerts_total", {"rule": rule})


def test_series_exist_at_zero_before_anything_fires() -> None:
    metrics = Metrics()
    AlertEngine(alerts_config(MEMORY_RULE), metrics)
    assert firing_gauge(metrics, "memory_high") == 0
    assert fired_total(metrics, "memory_high") == 0


def test_fires_once_the_condition_held_for_the_duration() -> None:
    metrics = Metrics()
    engine = AlertEngine(alerts_config(MEMORY_RULE), metrics)
    with capture_logs() as logs:
        assert engine.evaluate({"memory_percent": 90}, now=T0) == []
        assert engine.evaluate({"memory_percent": 95}, now=T0 + 59) == []
        events = engine.evaluate({"memory_percent": 91}, now=T0 + 60)
    assert [(e.kind, e.rule, e.value, e.repeat) for e in events] == [
        ("fired", "memory_high", 91, False)
    ]
    assert events[0].since == T0
    assert logs == [
        {
            "event": "alert.fired",
            "log_level": "warning",
            "rule": "memory_high",
            "metric": "memory_percent",
            "value": 91.0,
            "threshold": 80.0,
            "op": ">",
            "severity": "warning",
            "since": "2023-11-14T22:13:20+00:00",
            "repeat": False,
        }
    ]
    assert firing_gauge(metrics, "memory_high") == 1
    assert fired_total(metrics, "memory_high") == 1


def test_an_interrupted_condition_starts_counting_again() -> None:
    engine = AlertEngine(alerts_config(MEMORY_RULE), Metrics())
    engine.evaluate({"memory_percent": 90}, now=T0)
    engine.evaluate({"memory_percent": 70}, now=T0 + 30)
    assert engine.evaluate({"memory_percent": 90}, now=T0 + 60) == []
    assert engine.evaluate({"memory_percent": 90}, now=T0 + 119) == []
    assert [e.kind for e in engine.evaluate({"memory_percent": 90}, now=T0 + 120)] == ["fired"]


def test_repeats_no_more_often_than_the_cooldown_then_resolves() -> None:
    metrics = Metrics()
    engine = AlertEngine(alerts_config(MEMORY_RULE, cooldown="10m"), metrics)
    engine.evaluate({"memory_percent": 90}, now=T0)
    engine.evaluate({"memory_percent": 90}, now=T0 + 60)  # fired
    with capture_logs() as logs:
        assert engine.evaluate({"memory_percent": 90}, now=T0 + 300) == []
        assert engine.evaluate({"memory_percent": 90}, now=T0 + 659) == []
        repeat = engine.evaluate({"memory_percent": 92}, now=T0 + 660)
        assert engine.evaluate({"memory_percent": 93}, now=T0 + 700) == []
        resolved = engine.evaluate({"memory_percent": 50}, now=T0 + 800)
        assert engine.evaluate({"memory_percent": 50}, now=T0 + 900) == []
    assert [(e.kind, e.repeat) for e in repeat] == [("fired", True)]
    assert [(e.kind, e.duration_seconds) for e in resolved] == [("resolved", 740.0)]
    assert [(log["event"], log.get("repeat")) for log in logs] == [
        ("alert.fired", True),
        ("alert.resolved", None),
    ]
    assert logs[1] == {
        "event": "alert.resolved",
        "log_level": "info",
        "rule": "memory_high",
        "metric": "memory_percent",
        "value": 50.0,
        "threshold": 80.0,
        "severity": "warning",
        "duration_seconds": 740.0,
    }
    assert firing_gauge(metrics, "memory_high") == 0
    # A repeat is the same alert still firing, not a new one.
    assert fired_total(metrics, "memory_high") == 1


def test_critical_alerts_log_at_error() -> None:
    engine = AlertEngine(alerts_config(JOB_RULE), Metrics())
    with capture_logs() as logs:
        engine.evaluate({"job_failures": 1}, now=T0)
    assert [(log["event"], log["log_level"]) for log in logs] == [("alert.fired", "error")]


def test_a_missing_metric_leaves_the_state_unchanged() -> None:
    engine = AlertEngine(alerts_config(MEMORY_RULE), Metrics())
    engine.evaluate({"memory_percent": 90}, now=T0)
    assert engine.evaluate({}, now=T0 + 30) == []
    assert engine.evaluate({"memory_percent": float("nan")}, now=T0 + 40) == []
    # Still pending since T0: fires at T0 + 60 without a restart of the clock.
    assert [e.kind for e in engine.evaluate({"memory_percent": 90}, now=T0 + 60)] == ["fired"]
    assert engine.evaluate({"cpu_percent": 1}, now=T0 + 2000) == []
    assert [alert["rule"] for alert in engine.firing()] == ["memory_high"]


def test_ops_compare_as_written() -> None:
    rules = [
        {"name": "low", "metric": "cpu_percent", "op": "<", "threshold": 10},
        {"name": "at_most", "metric": "cpu_percent", "op": "<=", "threshold": 5},
        {"name": "at_least", "metric": "cpu_percent", "op": ">=", "threshold": 5},
    ]
    engine = AlertEngine(alerts_config(*rules), Metrics())
    assert sorted(e.rule for e in engine.evaluate({"cpu_percent": 5}, now=T0)) == [
        "at_least",
        "at_most",
        "low",
    ]


def test_firing_and_recent() -> None:
    engine = AlertEngine(alerts_config(MEMORY_RULE, JOB_RULE), Metrics())
    engine.evaluate({"memory_percent": 90, "job_failures": 2}, now=T0)
    engine.evaluate({"memory_percent": 90, "job_failures": 0}, now=T0 + 60)
    engine.evaluate({"memory_percent": 90}, now=T0 + 90)
    firing = engine.firing()
    assert len(firing) == 1
    assert firing[0] == {
        "rule": "memory_high",
        "metric": "memory_percent",
        "value": 90,
        "threshold": 80,
        "op": ">",
        "severity": "warning",
        "since": "2023-11-14T22:13:20+00:00",
        "fired_at": "2023-11-14T22:14:20+00:00",
        "duration_seconds": 30.0,
        "clearing_since": None,
    }
    recent = engine.recent()
    # Newest first; within one evaluation, in rule order.
    assert [(e["kind"], e["rule"]) for e in recent] == [
        ("resolved", "job_failing"),
        ("fired", "memory_high"),
        ("fired", "job_failing"),
    ]
    assert recent[0]["duration_seconds"] == 60
    assert len(engine.recent(limit=1)) == 1
    assert engine.recent(limit=0) == []


def test_configure_resolves_removed_firing_rules() -> None:
    metrics = Metrics()
    engine = AlertEngine(alerts_config(MEMORY_RULE, JOB_RULE), metrics)
    engine.evaluate({"job_failures": 3}, now=T0)
    with capture_logs() as logs:
        events = engine.configure(alerts_config(MEMORY_RULE), now=T0 + 10)
    assert [(e.kind, e.rule, e.reason) for e in events] == [
        ("resolved", "job_failing", "rule removed")
    ]
    assert logs[0]["event"] == "alert.resolved" and logs[0]["reason"] == "rule removed"
    assert firing_gauge(metrics, "job_failing") is None  # the series is gone
    assert [rule.name for rule in engine.rules] == ["memory_high"]
    assert engine.firing() == []


def test_configure_added_rules_start_fresh_and_raised_thresholds_resolve() -> None:
    metrics = Metrics()
    engine = AlertEngine(alerts_config(MEMORY_RULE), metrics)
    engine.evaluate({"memory_percent": 90, "cpu_percent": 99}, now=T0)
    engine.evaluate({"memory_percent": 90, "cpu_percent": 99}, now=T0 + 60)
    assert [alert["rule"] for alert in engine.firing()] == ["memory_high"]

    raised = {**MEMORY_RULE, "threshold": 95}
    cpu_rule = {"name": "cpu_high", "metric": "cpu_percent", "threshold": 90, "for": "5m"}
    assert engine.configure(alerts_config(raised, cpu_rule), now=T0 + 61) == []
    assert firing_gauge(metrics, "cpu_high") == 0
    events = engine.evaluate({"memory_percent": 90, "cpu_percent": 99}, now=T0 + 70)
    # memory_high resolves under its new threshold; cpu_high only starts counting now.
    assert [(e.kind, e.rule) for e in events] == [("resolved", "memory_high")]
    assert engine.evaluate({"cpu_percent": 99}, now=T0 + 369) == []
    assert [e.rule for e in engine.evaluate({"cpu_percent": 99}, now=T0 + 370)] == ["cpu_high"]


def test_configure_applies_the_new_cooldown() -> None:
    engine = AlertEngine(alerts_config(MEMORY_RULE, cooldown="1h"), Metrics())
    engine.evaluate({"memory_percent": 90}, now=T0)
    engine.evaluate({"memory_percent": 90}, now=T0 + 60)
    assert engine.evaluate({"memory_percent": 90}, now=T0 + 120) == []
    engine.configure(alerts_config(MEMORY_RULE, cooldown="1m"), now=T0 + 121)
    assert [e.repeat for e in engine.evaluate({"memory_percent": 90}, now=T0 + 125)] == [True]


def test_default_rules_evaluate_cleanly_on_quiet_values() -> None:
    engine = AlertEngine(AlertsConfig(), Metrics())
    quiet = {
        "memory_percent": 30.0,
        "cpu_percent": 1.0,
        "search_latency_p95_seconds": 0.05,
        "error_rate": 0.0,
        "index_staleness_seconds": 60.0,
        "job_failures": 0.0,
    }
    assert engine.evaluate(quiet, now=T0) == []
    assert engine.firing() == []


def test_alert_inputs_collects_every_value_it_can_know() -> None:
    metrics = Metrics()
    inputs = AlertInputs(metrics)
    first = inputs.collect(now=T0)
    # No sample, no search, no index run yet: those are left out, not zero.
    assert set(first) == {"error_rate", "job_failures"}
    assert first["job_failures"] == 0

    monitor = MemoryMonitor(MemoryConfig(), metrics)
    sample = monitor.sample()
    for seconds in (0.1, 0.2, 3.0):
        metrics.observe_search("hybrid", seconds)
    metrics.observe_request("/v1/search", "GET", 500, 0.1)
    metrics.observe_job("index", "error", 1.0)
    metrics.index_succeeded(T0 - 7200)
    values = inputs.collect(sample, now=T0)
    assert values["memory_percent"] == sample.percent
    assert values["rss_bytes"] == sample.rss
    assert values["cpu_percent"] == sample.cpu_percent
    assert values["search_latency_p95_seconds"] > 2.0
    assert values["error_rate"] == 1.0
    assert values["index_staleness_seconds"] == 7200
    assert values["job_failures"] == 1
    # Failures count since the previous collect, so a past failure stops alerting.
    assert inputs.collect(sample, now=T0)["job_failures"] == 0


def test_a_value_oscillating_around_the_threshold_fires_once_and_resolves_once() -> None:
    """Without hysteresis this sequence fired and resolved on alternate samples."""
    metrics = Metrics()
    rule = {
        "name": "memory_high",
        "metric": "memory_percent",
        "threshold": 80,
        "resolve_for": "1m",
        "resolve_margin": "5%",
    }
    engine = AlertEngine(alerts_config(rule), metrics)
    events = []
    # 10 minutes of 10 s samples hovering at the threshold: 81, 79, 81, 79, ...
    for step in range(60):
        events += engine.evaluate({"memory_percent": 81 if step % 2 == 0 else 79}, T0 + 10 * step)
    # Then clear of the band, but for less than resolve_for, then back in it.
    t = T0 + 600
    for offset, value in ((0, 70), (30, 70), (50, 78), (60, 70)):
        events += engine.evaluate({"memory_percent": value}, t + offset)
    assert [e.kind for e in events] == ["fired"]
    assert engine.firing()[0]["clearing_since"] is not None
    # A full minute clear of the band resolves it, once.
    for offset in (90, 110, 120, 130, 200):
        events += engine.evaluate({"memory_percent": 70}, t + offset)
    assert [e.kind for e in events] == ["fired", "resolved"]
    assert events[1].timestamp == t + 120
    assert firing_gauge(metrics, "memory_high") == 0
    assert fired_total(metrics, "memory_high") == 1


def test_the_margin_is_taken_in_the_threshold_unit_on_the_clear_side() -> None:
    below = {"name": "free", "metric": "error_rate", "op": "<", "threshold": "5%"}
    config = alerts_config({**below, "resolve_margin": "1%"})
    assert config.rules[0].resolve_margin == pytest.approx(0.01)
    engine = AlertEngine(config, Metrics())
    assert [e.kind for e in engine.evaluate({"error_rate": 0.04}, T0)] == ["fired"]
    assert engine.evaluate({"error_rate": 0.055}, T0 + 10) == []  # in the band: 5-6 %
    assert [e.kind for e in engine.evaluate({"error_rate": 0.07}, T0 + 20)] == ["resolved"]


def test_the_default_rules_resolve_with_hysteresis() -> None:
    rules = {rule.name: rule for rule in AlertsConfig().rules}
    assert rules["memory_high"].resolve_for == 60 and rules["memory_high"].resolve_margin == 5
    assert rules["search_slow"].resolve_for == 60
