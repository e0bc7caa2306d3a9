"""Recent-window statistics Prometheus cannot give without a server: percentiles and rates.

`LatencyTracker` keeps the last N durations per operation and answers
p50/p90/p95/p99 over them (for `/metrics/latency` and the search p95 alert).
`RequestStats` keeps per-second tallies of answered requests for the last hour
and answers an error rate and a per-endpoint summary over any window within it
(for `/metrics/requests` and the error-rate alert).

Both are thread-safe (a lock around microseconds of work) because requests are
timed on the event loop while searches finish in worker threads. Both hold
memory bounded by the number of distinct operation / endpoint names, which are
code-defined templates, never user input.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PERCENTILES = (50, 90, 95, 99)
# A request carrying this header is a dashboard polling (`jarvisctl top`): it is
# counted apart, so the request rates and the error rate show everyone else's.
MONITOR_HEADER = "X-Jarvis-Monitor"


def percentile(sorted_values: list[float], rank: float) -> float:
    """The `rank`-th percentile (0..100) of sorted values, linearly interpolated."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    position = (len(sorted_values) - 1) * rank / 100.0
    lower = math.floor(position)
    upper = math.ceil(position)
    if lower == upper:
        return sorted_values[lower]
    weight = position - lower
    return sorted_values[lower] * (1 - weight) + sorted_values[upper] * weight


def describe(values: Iterable[float]) -> dict[str, float]:
    """count, p50, p90, p95, p99, mean and max of some durations (all 0 when empty)."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, **{f"p{rank}": 0.0 for rank in PERCENTILES}, "mean": 0.0, "max": 0.0}
    summary: dict[str, float] = {"count": len(ordered)}
    for rank in PERCENTILES:
        summary[f"p{rank}"] = percentile(ordered, rank)
    summary["mean"] = math.fsum(ordered) / len(ordered)
    summary["max"] = ordered[-1]
    return summary


class LatencyTracker:
    """The most recent `window` durations of each operation, in seconds."""

    def __init__(self, window: int = 2048) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self._lock = threading.Lock()
        self._samples: dict[str, deque[float]] = {}
        self._totals: dict[str, int] = {}

    def observe(self, operation: str, seconds: float) -> None:
        with self._lock:
            samples = self._samples.get(operation)
            if samples is None:
                samples = self._samples[operation] = deque(maxlen=self.window)
            samples.append(seconds)
            self._totals[operation] = self._totals.get(operation, 0) + 1

    def percentiles(self, operation: str | None = None) -> dict[str, dict[str, float]]:
        """operation -> {count, p50, p90, p95, p99, mean, max, total} over the window.

        `count` is the samples in the window, `total` those observed since the
        last reset. With `operation`, only that one (empty if never observed).
        """
        with self._lock:
            if operation is None:
                snapshot = {name: list(values) for name, values in self._samples.items()}
            elif operation in self._samples:
                snapshot = {operation: list(self._samples[operation])}
            else:
                snapshot = {}
            totals = dict(self._totals)
        # Sorting happens outside the lock so observers never wait on a report.
        return {
            name: {**describe(values), "total": totals.get(name, 0)}
            for name, values in sorted(snapshot.items())
        }

    def percentile(self, operation: str, rank: float) -> float | None:
        """One percentile of one operation, None when it has no samples."""
        with self._lock:
            values = list(self._samples.get(operation, ()))
        if not values:
            return None
        return percentile(sorted(values), rank)

    def operations(self) -> list[str]:
        with self._lock:
            return sorted(self._samples)

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()
            self._totals.clear()


def status_class(status: int) -> str:
    """`2xx`, `4xx`, `5xx`... for a status code."""
    return f"{status // 100}xx"


@dataclass(slots=True)
class _Tally:
    count: int = 0
    seconds: float = 0.0


# One second of traffic: (endpoint, status class, a monitor's poll) -> tally.
_Key = tuple[str, str, bool]
_Bucket = dict[_Key, _Tally]


class RequestStats:
    """Answered requests in one-second buckets over the last `horizon_seconds`.

    Memory is bounded by horizon x distinct (endpoint, status class) pairs,
    however busy the daemon is. Times are `time.monotonic()` unless given.
    """

    def __init__(self, horizon_seconds: int = 3600) -> None:
        if horizon_seconds < 1:
            raise ValueError("horizon_seconds must be at least 1")
        self.horizon_seconds = horizon_seconds
        self._lock = threading.Lock()
        self._buckets: deque[tuple[int, _Bucket]] = deque()

    def record(
        self,
        endpoint: str,
        status: int,
        seconds: float,
        now: float | None = None,
        *,
        monitor: bool = False,
    ) -> None:
        """One answered request; `monitor`: a dashboard's poll, reported apart."""
        second = int(time.monotonic() if now is None else now)
        key = (endpoint, status_class(status), monitor)
        with self._lock:
            if not self._buckets or self._buckets[-1][0] < second:
                self._buckets.append((second, {}))
            # A clock given out of order (tests) lands in the newest bucket.
            bucket = self._buckets[-1][1]
            tally = bucket.get(key)
            if tally is None:
                tally = bucket[key] = _Tally()
            tally.count += 1
            tally.seconds += seconds
            self._prune(second)

    def _prune(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self.horizon_seconds:
            self._buckets.popleft()

    def _window(
        self, window_seconds: float, now: float | None, monitor: bool = False
    ) -> dict[tuple[str, str], _Tally]:
        """Tallies summed over the buckets within the window ending now.

        Those of ordinary requests, or (`monitor`) of a dashboard's polls.
        """
        current = time.monotonic() if now is None else now
        start = current - min(window_seconds, self.horizon_seconds)
        totals: dict[tuple[str, str], _Tally] = {}
        with self._lock:
            for second, bucket in reversed(self._buckets):
                if second + 1 <= start:
                    break
                for (endpoint, cls, polled), tally in bucket.items():
                    if polled != monitor:
                        continue
                    total = totals.setdefault((endpoint, cls), _Tally())
                    total.count += tally.count
                    total.seconds += tally.seconds
        return totals

    def error_rate(self, window_seconds: float = 300.0, now: float | None = None) -> float:
        """Share (0..1) of the window's requests answered with a 5xx; 0 with no requests."""
        totals = self._window(window_seconds, now)
        requests = sum(tally.count for tally in totals.values())
        if requests == 0:
            return 0.0
        errors = sum(tally.count for (_, cls), tally in totals.items() if cls == "5xx")
        return errors / requests

    def count(self, window_seconds: float = 300.0, now: float | None = None) -> int:
        return sum(tally.count for tally in self._window(window_seconds, now).values())

    def summary(self, window_seconds: float = 300.0, now: float | None = None) -> dict[str, Any]:
        """Per endpoint: counts by status class, rate per second, mean seconds; and totals."""
        window = min(window_seconds, self.horizon_seconds)
        totals = self._window(window, now)
        endpoints: dict[str, dict[str, Any]] = {}
        for (endpoint, cls), tally in sorted(totals.items()):
            entry = endpoints.setdefault(endpoint, {"count": 0, "by_status": {}, "seconds": 0.0})
            entry["count"] += tally.count
            entry["by_status"][cls] = tally.count
            entry["seconds"] += tally.seconds
        for entry in endpoints.values():
            seconds = entry.pop("seconds")
            entry["rate_per_second"] = entry["count"] / window
            entry["mean_seconds"] = seconds / entry["count"]
            entry["error_rate"] = entry["by_status"].get("5xx", 0) / entry["count"]
        requests = sum(entry["count"] for entry in endpoints.values())
        errors = sum(entry["by_status"].get("5xx", 0) for entry in endpoints.values())
        polls = sum(tally.count for tally in self._window(window, now, monitor=True).values())
        return {
            "window_seconds": window,
            "count": requests,
            "rate_per_second": requests / window,
            "error_rate": errors / requests if requests else 0.0,
            "endpoints": endpoints,
            # A dashboard's own polling (MONITOR_HEADER), left out of all of the above.
            "monitor": {"count": polls, "rate_per_second": polls / window},
        }

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
