"""The alerts section of jarvis.yaml: the metrics a rule may read, thresholds in their
unit, hysteresis, and the built-in rules (apart from model.py to keep each module short)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from jarvisd.config.types import Duration, Section
from jarvisd.units import parse_duration, parse_size

_CRON_FIELD = re.compile(r"^[\w*/,\-?]+$")


ALERT_METRICS: dict[str, str] = {
    "memory_percent": "system memory in use, percent",
    "rss_bytes": "resident memory of the daemon, bytes",
    "cpu_percent": "CPU used by the daemon, percent of one core",
    "search_latency_p95_seconds": "95th percentile of recent search latency, seconds",
    "error_rate": "share of recent requests answered with a 5xx status, 0..1",
    "index_staleness_seconds": "time since the last successful indexing run, seconds",
    "job_failures": "job runs that failed since the previous sample",
}


# How a threshold may be spelled besides a bare number: in the unit its metric is
# measured in (the sample is compared in bytes, seconds, percent or a 0..1 share).
ALERT_UNITS: dict[str, Literal["size", "duration", "percent", "share"]] = {
    "memory_percent": "percent",
    "rss_bytes": "size",
    "cpu_percent": "percent",
    "search_latency_p95_seconds": "duration",
    "error_rate": "share",
    "index_staleness_seconds": "duration",
}
_SPELLINGS = {
    "size": "a size like '512MB' or '2GB' (or a number of bytes)",
    "duration": "a duration like '2s' or '250ms' (or a number of seconds)",
    "percent": "a percentage like 80 or '80%'",
    "share": "a share between 0 and 1 like 0.05, or '5%'",
    None: "a number",
}
_PERCENT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*%\s*$")


def parse_threshold(metric: str, value: object) -> object:
    """A threshold in its metric's unit (`512MB`, `2s`, `80%`) as the number compared."""
    unit = ALERT_UNITS.get(metric)
    if isinstance(value, bool):
        raise ValueError(f"{metric} takes {_SPELLINGS[unit]}, not a boolean")
    if not isinstance(value, str):
        return value
    try:
        if unit == "size":
            return float(parse_size(value))
        if unit == "duration":
            return parse_duration(value)
        percent = _PERCENT.match(value)
        if unit in ("percent", "share") and percent:
            return float(percent.group(1)) / (100.0 if unit == "share" else 1.0)
        return float(value)
    except ValueError:
        raise ValueError(f"{metric} takes {_SPELLINGS[unit]}, got {value!r}") from None


class AlertRule(Section):
    name: str = Field(description="Unique rule name, used as the metric label.")
    metric: str = Field(description="One of: " + ", ".join(ALERT_METRICS) + ".")
    op: Literal[">", ">=", "<", "<="] = Field(default=">", description="Comparison.")
    threshold: float = Field(
        description="Value the metric is compared with, in its unit: a size for rss_bytes "
        "('512MB'), a duration for the *_seconds metrics ('2s'), '80%' for the percent "
        "metrics and error_rate ('5%' is 0.05), or a bare number."
    )
    for_: Duration = Field(
        default=0.0, alias="for", description="How long the condition must hold before firing."
    )
    severity: Literal["info", "warning", "critical"] = Field(
        default="warning", description="Severity carried by the alert event."
    )
    resolve_for: Duration = Field(
        default=0.0,
        ge=0.0,
        description="How long a firing alert's condition must stay clear before it resolves; "
        "a value hovering at the threshold then fires once, not over and over.",
    )
    resolve_margin: float = Field(
        default=0.0,
        ge=0.0,
        description="A firing alert counts as clear only this far past the threshold, in the "
        "threshold's unit ('5%' below 80% is 75%): a band against flapping.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in ALERT_METRICS:
            raise ValueError(f"unknown metric {value!r}; known: {', '.join(ALERT_METRICS)}")
        return value

    @field_validator("threshold", "resolve_margin", mode="before")
    @classmethod
    def _threshold_in_unit(cls, value: object, info: ValidationInfo) -> object:
        metric = info.data.get("metric")
        return parse_threshold(metric, value) if isinstance(metric, str) else value


def _default_rules() -> list[AlertRule]:
    rules: list[dict[str, Any]] = [
        # Samples come every 10 s: a minute clear (and a band) keeps a value that hovers
        # at the threshold from firing and resolving on alternate samples.
        {
            "name": "memory_high",
            "metric": "memory_percent",
            "threshold": 80,
            "for": "1m",
            "resolve_for": "1m",
            "resolve_margin": "5%",
        },
        {
            "name": "cpu_high",
            "metric": "cpu_percent",
            "threshold": 90,
            "for": "5m",
            "resolve_for": "1m",
            "resolve_margin": "10%",
        },
        {
            "name": "search_slow",
            "metric": "search_latency_p95_seconds",
            "threshold": 2.0,
            "resolve_for": "1m",
        },
        {
            "name": "errors_high",
            "metric": "error_rate",
            "threshold": 0.05,
            "for": "1m",
            "resolve_for": "1m",
        },
        {"name": "index_stale", "metric": "index_staleness_seconds", "threshold": 7200},
        {"name": "job_failing", "metric": "job_failures", "threshold": 0, "severity": "critical"},
    ]
    return [AlertRule.model_validate(rule) for rule in rules]


class AlertsConfig(Section):
    cooldown: Duration = Field(
        default=900.0, description="A firing alert is logged again at most this often."
    )
    rules: list[AlertRule] = Field(
        default_factory=_default_rules, description="Threshold rules over the sampled metrics."
    )

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[AlertRule]) -> list[AlertRule]:
        names = [rule.name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate alert rule names: {', '.join(duplicates)}")
        return rules


# ------------------------------------------------------------------- schedule & surfaces
