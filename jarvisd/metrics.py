"""Prometheus metrics: one registry per daemon, owned here, observed by everyone.

Components receive the `Metrics` object and update its instruments; they never
create instruments of their own, so every metric name is declared in this one
file. No label carries unbounded values (no query text, no note paths).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)

from jarvisd import __version__

# Latency buckets from 1 ms to 30 s: fine at the low end, where searches live.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5,
    1.0, 2.0, 5.0, 10.0, 30.0,
)  # fmt: skip
JOB_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


class Metrics:
    """Every instrument jarvisd exposes, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.build_info = Info("jarvis_build", "jarvisd version", registry=r)
        self.build_info.info({"version": __version__})

        # config
        self.config_last_reload_successful = Gauge(
            "jarvis_config_last_reload_successful",
            "1 if the last config reload succeeded, 0 if it was rejected",
            registry=r,
        )
        self.config_last_reload_success_timestamp = Gauge(
            "jarvis_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load or reload",
            registry=r,
        )

        # requests
        self.requests = Counter(
            "jarvis_requests",
            "Requests answered, by endpoint template, method and status",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "jarvis_request_duration_seconds",
            "Request latency by endpoint template",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        # jobs
        self.job_runs = Counter(
            "jarvis_job_runs", "Scheduled job runs by result", ["job", "result"], registry=r
        )
        self.job_duration = Histogram(
            "jarvis_job_duration_seconds",
            "Scheduled job run time",
            ["job"],
            buckets=JOB_BUCKETS,
            registry=r,
        )

        # process
        self.uptime = Gauge("jarvis_uptime_seconds", "Seconds since the daemon started", registry=r)
