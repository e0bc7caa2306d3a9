"""Threshold rules over sampled values -> structured alert events in the log.

`AlertEngine.evaluate(values, now)` is pure logic over explicit times: a rule
fires once its condition has held for `for` seconds, is logged again while
firing at most every `cooldown`, and resolves once the value has been clear
of the threshold by `resolve_margin` for `resolve_for` seconds (hysteresis:
without it a value hovering at the threshold fired and resolved on alternate
samples, the cooldown limiting only repeats while firing). Every
transition is one structlog event (`alert.fired` / `alert.resolved`) carrying
rule, metric, value, threshold and severity, which is what log-based alerting
keys on. `AlertInputs` turns a memory sample and the metrics' recent windows
into the values the rules read (the ALERT_METRICS names).
"""

from __future__ import annotations

import math
import operator
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from jarvisd.config import AlertRule, AlertsConfig
from jarvisd.logs import get_logger
from jarvisd.observe.memory import Sample
from jarvisd.observe.metrics import SEARCH_OPERATION, Metrics

_log = get_logger("jarvisd.observe.alerts")

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}

RECENT_EVENTS = 500


def _clear(rule: AlertRule, value: float) -> bool:
    """The value is past the threshold's band on the clear side (`>` rules: below it)."""
    margin = rule.resolve_margin if rule.op in (">", ">=") else -rule.resolve_margin
    return not _COMPARE[rule.op](value, rule.threshold - margin)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One fired (first or repeated) or resolved alert. Times are Unix seconds."""

    kind: Literal["fired", "resolved"]
    rule: str
    metric: str
    value: float | None
    threshold: float
    op: str
    severity: str
    timestamp: float
    since: float
    repeat: bool = False
    duration_seconds: float | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "rule": self.rule,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "op": self.op,
            "severity": self.severity,
            "time": _iso(self.timestamp),
            "since": _iso(self.since),
        }
        if self.kind == "fired":
            data["repeat"] = self.repeat
        else:
            data["duration_seconds"] = self.duration_seconds
        if self.reason is not None:
            data["reason"] = self.reason
        return data


@dataclass(slots=True)
class _RuleState:
    rule: AlertRule
    pending_since: float | None = None  # when the condition started holding
    fired_at: float | None = None  # set while firing
    clear_since: float | None = None  # while firing: when the value went clear of the band
    last_logged: float = 0.0
    value: float | None = None

    @property
    def firing(self) -> bool:
        return self.fired_at is not None


class AlertEngine:
    """Evaluates the configured rules; keeps firing state and a bounded event log.

    Not thread-safe: evaluate, reconfigure and the readers all run on the event
    loop (the sampling job and the API handlers), which serialises them.
    """

    def __init__(self, config: AlertsConfig, metrics: Metrics) -> None:
        self._metrics = metrics
        self._cooldown = config.cooldown
        self._states: dict[str, _RuleState] = {}
        self._recent: deque[AlertEvent] = deque(maxlen=RECENT_EVENTS)
        self._last_now: float | None = None
        for rule in config.rules:
            self._add_rule(rule)

    def _add_rule(self, rule: AlertRule) -> None:
        self._states[rule.name] = _RuleState(rule)
        self._metrics.alerts_firing.labels(rule.name).set(0)
        # Touch the counter so the series exists (at 0) before the first firing.
        self._metrics.alerts.labels(rule.name)

    @property
    def rules(self) -> list[AlertRule]:
        return [state.rule for state in self._states.values()]

    def evaluate(self, values: Mapping[str, float], now: float | None = None) -> list[AlertEvent]:
        """Apply one set of sampled values; returns the events this produced.

        A rule whose metric is missing from `values` (or NaN) keeps its state.
        """
        current = time.time() if now is None else now
        self._last_now = current
        events: list[AlertEvent] = []
        for state in self._states.values():
            value = values.get(state.rule.metric)
            if value is None or math.isnan(value):
                continue
            event = self._step(state, float(value), current)
            if event is not None:
                events.append(event)
        return events

    def event(
        self,
        rule: str,
        reason: str,
        *,
        severity: str = "critical",
        now: float | None = None,
        **fields: Any,
    ) -> AlertEvent:
        """An alert for something that happened once (a store recovery), not a threshold.

        It is logged as the same `alert.fired` line the threshold rules write (so
        log-based alerting needs nothing new), with `reason` and the extra
        fields, counted in `jarvis_alerts_total`, and listed in `recent`; it never
        stays firing, since nothing is left to resolve.
        """
        current = time.time() if now is None else now
        self._metrics.alerts.labels(rule).inc()
        event = AlertEvent(
            kind="fired",
            rule=rule,
            metric="event",
            value=None,
            threshold=0.0,
            op="event",
            severity=severity,
            timestamp=current,
            since=current,
            reason=reason,
        )
        log = _log.error if severity == "critical" else _log.warning
        log(
            "alert.fired",
            rule=rule,
            metric="event",
            value=None,
            threshold=0.0,
            op="event",
            severity=severity,
            since=_iso(current),
            repeat=False,
            reason=reason,
            **fields,
        )
        self._recent.append(event)
        return event

    def _step(self, state: _RuleState, value: float, now: float) -> AlertEvent | None:
        rule = state.rule
        state.value = value
        holds = _COMPARE[rule.op](value, rule.threshold)
        if state.firing:
            if holds or not _clear(rule, value):
                state.clear_since = None  # back in the band: the clear time starts again
                if holds and now - state.last_logged >= self._cooldown:
                    return self._fire(state, now, value, repeat=True)
                return None
            if state.clear_since is None:
                state.clear_since = now
            if now - state.clear_since >= rule.resolve_for:
                return self._resolve(state, now, value)
            return None
        if not holds:
            state.pending_since = None
            return None
        if state.pending_since is None:
            state.pending_since = now
        if now - state.pending_since >= rule.for_:
            return self._fire(state, now, value, repeat=False)
        return None

    def _fire(self, state: _RuleState, now: float, value: float, *, repeat: bool) -> AlertEvent:
        rule = state.rule
        since = state.pending_since if state.pending_since is not None else now
        if not repeat:
            state.fired_at = now
            self._metrics.alerts_firing.labels(rule.name).set(1)
            self._metrics.alerts.labels(rule.name).inc()
        state.last_logged = now
        event = AlertEvent(
            kind="fired",
            rule=rule.name,
            metric=rule.metric,
            value=value,
            threshold=rule.threshold,
            op=rule.op,
            severity=rule.severity,
            timestamp=now,
            since=since,
            repeat=repeat,
        )
        # critical alerts log at error so level-based log alerting catches them;
        # the rest at warning. Resolutions log at info.
        log = _log.error if rule.severity == "critical" else _log.warning
        log(
            "alert.fired",
            rule=rule.name,
            metric=rule.metric,
            value=value,
            threshold=rule.threshold,
            op=rule.op,
            severity=rule.severity,
            since=_iso(since),
            repeat=repeat,
        )
        self._recent.append(event)
        return event

    def _resolve(
        self, state: _RuleState, now: float, value: float | None, reason: str | None = None
    ) -> AlertEvent:
        rule = state.rule
        fired_at = state.fired_at if state.fired_at is not None else now
        since = state.pending_since if state.pending_since is not None else fired_at
        duration = now - fired_at
        state.pending_since = None
        state.fired_at = None
        state.clear_since = None
        self._metrics.alerts_firing.labels(rule.name).set(0)
        event = AlertEvent(
            kind="resolved",
            rule=rule.name,
            metric=rule.metric,
            value=value,
            threshold=rule.threshold,
            op=rule.op,
            severity=rule.severity,
            timestamp=now,
            since=since,
            duration_seconds=duration,
            reason=reason,
        )
        fields: dict[str, Any] = {"reason": reason} if reason is not None else {}
        _log.info(
            "alert.resolved",
            rule=rule.name,
            metric=rule.metric,
            value=value,
            threshold=rule.threshold,
            severity=rule.severity,
            duration_seconds=duration,
            **fields,
        )
        self._recent.append(event)
        return event

    def firing(self) -> list[dict[str, Any]]:
        """The rules firing now, with their last value and how long they have fired."""
        now = self._last_now if self._last_now is not None else time.time()
        out = []
        for state in self._states.values():
            if state.fired_at is None:
                continue
            rule = state.rule
            since = state.pending_since if state.pending_since is not None else state.fired_at
            out.append(
                {
                    "rule": rule.name,
                    "metric": rule.metric,
                    "value": state.value,
                    "threshold": rule.threshold,
                    "op": rule.op,
                    "severity": rule.severity,
                    "since": _iso(since),
                    "fired_at": _iso(state.fired_at),
                    "duration_seconds": now - state.fired_at,
                    # Clear of its band since then; resolves after resolve_for.
                    "clearing_since": None
                    if state.clear_since is None
                    else _iso(state.clear_since),
                }
            )
        return out

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest fired/resolved events, newest first."""
        if limit <= 0:
            return []
        events = list(self._recent)[-limit:]
        return [event.as_dict() for event in reversed(events)]

    def configure(self, config: AlertsConfig, now: float | None = None) -> list[AlertEvent]:
        """Apply new rules and cooldown; returns the resolutions of removed firing rules.

        Added rules start fresh. Removed rules that were firing are resolved now
        (reason "rule removed") and their series dropped. Changed rules keep
        their state and meet their new definition at the next evaluate(): a
        raised threshold resolves there, a new `for` counts from when the
        condition started.
        """
        current = time.time() if now is None else now
        self._cooldown = config.cooldown
        wanted = {rule.name: rule for rule in config.rules}
        events: list[AlertEvent] = []
        for name in [name for name in self._states if name not in wanted]:
            state = self._states.pop(name)
            if state.firing:
                events.append(self._resolve(state, current, state.value, reason="rule removed"))
            self._metrics.alerts_firing.remove(name)
        states: dict[str, _RuleState] = {}
        for name, rule in wanted.items():
            existing = self._states.get(name)
            if existing is None:
                self._add_rule(rule)
                states[name] = self._states[name]
            else:
                existing.rule = rule
                states[name] = existing
        # Keep the configured order, which firing() and the log follow.
        self._states = states
        return events


class AlertInputs:
    """Collects the ALERT_METRICS values from a memory sample and the metrics' windows.

    Stateful only for job_failures, which counts failures since the previous
    collect(), so call it once per evaluation.
    """

    def __init__(self, metrics: Metrics, *, error_window_seconds: float = 300.0) -> None:
        self._metrics = metrics
        self._error_window = error_window_seconds
        self._job_failures_seen = metrics.job_failures_total()

    def collect(self, sample: Sample | None = None, now: float | None = None) -> dict[str, float]:
        """Values for the rules; a value that cannot be known yet is left out."""
        metrics = self._metrics
        values: dict[str, float] = {}
        if sample is not None:
            values["memory_percent"] = sample.percent
            values["rss_bytes"] = float(sample.rss)
            values["cpu_percent"] = sample.cpu_percent
        p95 = metrics.latency.percentile(SEARCH_OPERATION, 95)
        if p95 is not None:
            values["search_latency_p95_seconds"] = p95
        values["error_rate"] = metrics.request_stats.error_rate(self._error_window)
        last_index = metrics.index_last_success_time()
        if last_index is not None:
            wall = time.time() if now is None else now
            values["index_staleness_seconds"] = max(0.0, wall - last_index)
        failures = metrics.job_failures_total()
        values["job_failures"] = failures - self._job_failures_seen
        self._job_failures_seen = failures
        return values
