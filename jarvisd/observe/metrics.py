"""Prometheus metrics: one registry per daemon, owned here, observed by everyone.

Components receive the `Metrics` object and update its instruments; they never
create instruments of their own, so every metric name is declared in this one
file. No label carries unbounded values (no query text, no note paths): label
values are endpoint templates, job names, cache names, search modes.

Besides the Prometheus instruments, `Metrics` holds two in-process windows that
Prometheus cannot answer without a server of its own: recent latency
percentiles per operation (`latency`) and recent request counts and error rate
(`request_stats`). The `observe_*` helpers feed both sides at once, so prefer
them to touching the instruments directly.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
)

from jarvisd import __version__
from jarvisd.observe.latency import LatencyTracker, RequestStats

# Latency buckets from 1 ms to 30 s: fine at the low end, where searches live.
LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
)
JOB_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)

# Label values of jarvis_memory_mode; jarvisd.observe.memory.MemoryMode uses the same
# spellings (a test keeps them in step; this module cannot import memory).
MEMORY_MODES = ("FULL", "LITE", "MINIMAL")
# Label values of jarvis_model_loaded / jarvis_model_memory_bytes.
MODELS = ("embedding", "llm")

# Operation names in the latency tracker for searches; the alert rule
# search_latency_p95_seconds reads SEARCH_OPERATION.
SEARCH_OPERATION = "search"


class Metrics:
    """Every instrument jarvisd exposes, in one registry."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, latency_window: int = 2048
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.start_time = time.time()
        self._start_monotonic = time.monotonic()
        self.latency = LatencyTracker(window=latency_window)
        self.request_stats = RequestStats()
        r = self.registry
        self.build_info = Info("jarvis_build", "jarvisd version", registry=r)
        self.build_info.info({"version": __version__})
        # Standard process_* series (CPU seconds, RSS, fds, start time), Linux only.
        self.process_collector = ProcessCollector(registry=r)
        self._declare_config(r)
        self._declare_requests(r)
        self._declare_jobs(r)
        self._declare_process(r)
        self._declare_alerts_and_caches(r)
        self._declare_index_and_search(r)
        self._declare_models(r)
        self._declare_ask(r)

    # ------------------------------------------------------------------ declarations

    def _declare_config(self, r: CollectorRegistry) -> None:
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

    def _declare_requests(self, r: CollectorRegistry) -> None:
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

    def _declare_jobs(self, r: CollectorRegistry) -> None:
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

    def _declare_process(self, r: CollectorRegistry) -> None:
        self.uptime = Gauge("jarvis_uptime_seconds", "Seconds since the daemon started", registry=r)
        # Computed at scrape time, so it is right however rarely anything samples.
        self.uptime.set_function(self.uptime_seconds)
        self.memory_rss = Gauge(
            "jarvis_memory_rss_bytes", "Resident memory of the daemon, sampled", registry=r
        )
        self.memory_vms = Gauge(
            "jarvis_memory_vms_bytes", "Virtual memory of the daemon, sampled", registry=r
        )
        self.memory_available = Gauge(
            "jarvis_memory_available_bytes", "System memory available, sampled", registry=r
        )
        self.memory_total = Gauge(
            "jarvis_memory_total_bytes", "System memory installed", registry=r
        )
        self.cpu_percent = Gauge(
            "jarvis_cpu_percent", "CPU used by the daemon, percent of one core, sampled", registry=r
        )
        self.memory_mode = Gauge(
            "jarvis_memory_mode",
            "1 for the current memory mode, 0 for the others",
            ["mode"],
            registry=r,
        )
        for mode in MEMORY_MODES:
            self.memory_mode.labels(mode).set(1 if mode == MEMORY_MODES[0] else 0)

    def _declare_alerts_and_caches(self, r: CollectorRegistry) -> None:
        self.alerts_firing = Gauge(
            "jarvis_alerts_firing", "1 while the alert rule is firing", ["rule"], registry=r
        )
        self.alerts = Counter(
            "jarvis_alerts", "Times the alert rule started firing", ["rule"], registry=r
        )
        self.cache_hits = Counter("jarvis_cache_hits", "Cache hits", ["cache"], registry=r)
        self.cache_misses = Counter("jarvis_cache_misses", "Cache misses", ["cache"], registry=r)
        self.cache_entries = Gauge(
            "jarvis_cache_entries", "Entries held by the cache", ["cache"], registry=r
        )

    def _declare_index_and_search(self, r: CollectorRegistry) -> None:
        self.index_files = Counter(
            "jarvis_index_files", "Files seen by indexing, by result", ["result"], registry=r
        )
        self.index_chunks = Counter("jarvis_index_chunks", "Chunks embedded and stored", registry=r)
        self.index_duration = Histogram(
            "jarvis_index_duration_seconds", "Indexing run time", buckets=JOB_BUCKETS, registry=r
        )
        self.index_notes = Gauge("jarvis_index_notes", "Notes in the index", registry=r)
        self.index_last_success = Gauge(
            "jarvis_index_last_success_timestamp_seconds",
            "Unix time the last indexing run finished without error; 0: never",
            registry=r,
        )
        self.search_duration = Histogram(
            "jarvis_search_duration_seconds",
            "Search latency by mode",
            ["mode"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.search_requests = Counter(
            "jarvis_search_requests", "Searches by mode and result", ["mode", "result"], registry=r
        )

    def _declare_models(self, r: CollectorRegistry) -> None:
        self.model_loaded = Gauge(
            "jarvis_model_loaded", "1 while the model is loaded", ["model"], registry=r
        )
        self.model_memory = Gauge(
            "jarvis_model_memory_bytes",
            "Memory the loaded model holds (estimate)",
            ["model"],
            registry=r,
        )
        for model in MODELS:
            self.model_loaded.labels(model).set(0)
            self.model_memory.labels(model).set(0)

    def _declare_ask(self, r: CollectorRegistry) -> None:
        self.ask_requests = Counter(
            "jarvis_ask_requests",
            "Questions answered, by path (template, llm, extractive) and result",
            ["path", "result"],
            registry=r,
        )
        self.ask_duration = Histogram(
            "jarvis_ask_duration_seconds",
            "Time to the final answer, by path",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.llm_tokens = Counter("jarvis_llm_tokens", "Tokens the LLM generated", registry=r)
        self.llm_first_token = Histogram(
            "jarvis_llm_first_token_seconds",
            "From the start of generation to the first token (reading the prompt)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.llm_loaded = Gauge("jarvis_llm_loaded", "1 while the LLM is loaded", registry=r)

    # ---------------------------------------------------------------------- helpers

    def uptime_seconds(self) -> float:
        return time.monotonic() - self._start_monotonic

    def observe_request(
        self, endpoint: str, method: str, status: int, seconds: float, *, monitor: bool = False
    ) -> None:
        """One answered request: the counter, the histogram and the recent windows.

        `endpoint` is the route template (`/v1/notes/{path}`), never the raw path.
        A `monitor`'s poll (jarvisctl top) counts in Prometheus but apart in the
        recent-request windows, so a dashboard does not measure itself.
        """
        self.requests.labels(endpoint, method, str(status)).inc()
        self.request_duration.labels(endpoint).observe(seconds)
        self.request_stats.record(endpoint, status, seconds, monitor=monitor)
        self.latency.observe(f"request:{endpoint}", seconds)

    def observe_search(
        self, mode: str, seconds: float, result: str = "ok", *, window: bool = True
    ) -> None:
        """One search; its latency feeds the search_latency_p95_seconds alert.

        `window` False: counted and in the histogram, but not in the recent window
        the alert reads (a search that waited for the model to load at a cold start)."""
        self.search_duration.labels(mode).observe(seconds)
        self.search_requests.labels(mode, result).inc()
        if window:
            self.latency.observe(SEARCH_OPERATION, seconds)
            self.latency.observe(f"{SEARCH_OPERATION}:{mode}", seconds)

    def observe_job(self, job: str, result: str, seconds: float) -> None:
        """One job run; result is `ok` or `error` (`error` feeds the job_failures alert)."""
        self.job_runs.labels(job, result).inc()
        self.job_duration.labels(job).observe(seconds)

    def observe_cache(self, cache: str, hit: bool) -> None:
        (self.cache_hits if hit else self.cache_misses).labels(cache).inc()

    def observe_ask(self, path: str, result: str, seconds: float) -> None:
        """One question answered; `path` is template, llm or extractive."""
        self.ask_requests.labels(path, result).inc()
        self.ask_duration.labels(path).observe(seconds)
        self.latency.observe(f"ask:{path}", seconds)

    def set_llm(self, loaded: bool, memory_bytes: float = 0.0) -> None:
        self.llm_loaded.set(1 if loaded else 0)
        self.set_model("llm", loaded, memory_bytes)

    def set_memory_mode(self, mode: str) -> None:
        if mode not in MEMORY_MODES:
            raise ValueError(f"unknown memory mode {mode!r}; known: {', '.join(MEMORY_MODES)}")
        for name in MEMORY_MODES:
            self.memory_mode.labels(name).set(1 if name == mode else 0)

    def set_model(self, model: str, loaded: bool, memory_bytes: float = 0.0) -> None:
        self.model_loaded.labels(model).set(1 if loaded else 0)
        self.model_memory.labels(model).set(memory_bytes if loaded else 0)

    def index_succeeded(self, timestamp: float | None = None) -> None:
        self.index_last_success.set(time.time() if timestamp is None else timestamp)

    # ------------------------------------------------------------ reading values back

    def job_failures_total(self) -> float:
        """Failed job runs since start, however the counter was incremented."""
        return sum(
            sample.value
            for family in self.job_runs.collect()
            for sample in family.samples
            if sample.name.endswith("_total") and sample.labels.get("result") == "error"
        )

    def index_last_success_time(self) -> float | None:
        """Unix time of the last successful indexing run, None before the first."""
        for family in self.index_last_success.collect():
            for sample in family.samples:
                return sample.value or None
        return None

    # ------------------------------------------------------------------------- reset

    def reset(self) -> dict[str, Any]:
        """Empty the recent windows (latency percentiles, request summary).

        Prometheus counters and histograms are NOT reset: they are monotonic by
        contract and Prometheus' rate() treats a drop as a restart, so resetting
        them would only corrupt the scraper's view. Gauges are current values and
        are refreshed by the next sample.
        """
        self.latency.reset()
        self.request_stats.reset()
        return {
            "reset": ["latency", "requests"],
            "counters_reset": False,
            "note": "Prometheus counters and histograms are monotonic and are never reset",
        }
