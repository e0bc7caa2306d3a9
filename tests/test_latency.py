"""Recent-window latency percentiles and request rates."""

from __future__ import annotations

import threading

import pytest

from jarvisd.observe.latency import LatencyTracker, RequestStats, percentile, status_class


def test_percentile_interpolates_linearly() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 95) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_percentiles_per_operation() -> None:
    tracker = LatencyTracker()
    for value in range(1, 101):
        tracker.observe("search", value / 1000)
    tracker.observe("ask", 2.0)
    report = tracker.percentiles()
    assert list(report) == ["ask", "search"]
    search = report["search"]
    assert search["count"] == 100
    assert search["p50"] == pytest.approx(0.0505)
    assert search["p95"] == pytest.approx(0.09505)
    assert search["max"] == 0.1
    assert search["mean"] == pytest.approx(0.0505)
    assert set(search) == {"count", "p50", "p90", "p95", "p99", "mean", "max", "total"}
    assert tracker.percentiles("ask") == {"ask": {**report["ask"]}}
    assert tracker.percentiles("never") == {}
    assert tracker.percentile("never", 95) is None


def test_window_keeps_only_the_most_recent() -> None:
    tracker = LatencyTracker(window=4)
    for value in range(10):
        tracker.observe("search", float(value))
    report = tracker.percentiles("search")["search"]
    assert report["count"] == 4
    assert report["total"] == 10
    assert tracker.percentile("search", 0) == 6.0
    with pytest.raises(ValueError):
        LatencyTracker(window=0)


def test_reset_forgets_everything() -> None:
    tracker = LatencyTracker()
    tracker.observe("search", 0.1)
    tracker.reset()
    assert tracker.percentiles() == {}
    assert tracker.operations() == []


def test_observe_from_many_threads_loses_nothing() -> None:
    tracker = LatencyTracker(window=100_000)

    def work() -> None:
        for _ in range(2_000):
            tracker.observe("search", 0.001)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.percentiles("search")["search"]["count"] == 16_000


def test_status_class() -> None:
    assert [status_class(s) for s in (200, 204, 404, 503)] == ["2xx", "2xx", "4xx", "5xx"]


def test_error_rate_counts_5xx_share_within_the_window() -> None:
    stats = RequestStats()
    assert stats.error_rate(now=1000.0) == 0.0
    for second in range(100, 110):
        stats.record("/v1/search", 500, 0.1, now=float(second))  # old failures
    for second in range(900, 1000):
        stats.record("/v1/search", 200, 0.01, now=float(second))
    for second in range(990, 1000, 2):
        stats.record("/v1/ask", 503, 0.5, now=float(second))
    assert stats.error_rate(300, now=1000.0) == pytest.approx(5 / 105)
    assert stats.error_rate(3600, now=1000.0) == pytest.approx(15 / 115)
    # 4xx are the client's fault, not an error of the daemon.
    stats.record("/v1/notes/{path}", 404, 0.001, now=1000.0)
    assert stats.error_rate(300, now=1000.0) == pytest.approx(5 / 106)


def test_summary_per_endpoint() -> None:
    stats = RequestStats()
    for second in range(0, 60):
        stats.record("/v1/search", 200, 0.02, now=float(second))
    stats.record("/v1/search", 500, 0.2, now=59.0)
    stats.record("/v1/status", 200, 0.001, now=59.5)
    summary = stats.summary(60, now=60.0)
    assert summary["window_seconds"] == 60
    assert summary["count"] == 62
    assert summary["rate_per_second"] == pytest.approx(62 / 60)
    search = summary["endpoints"]["/v1/search"]
    assert search["count"] == 61
    assert search["by_status"] == {"2xx": 60, "5xx": 1}
    assert search["error_rate"] == pytest.approx(1 / 61)
    assert search["mean_seconds"] == pytest.approx((60 * 0.02 + 0.2) / 61)
    assert summary["endpoints"]["/v1/status"]["by_status"] == {"2xx": 1}


def test_a_monitors_polls_are_counted_apart() -> None:
    """jarvisctl top's own polling must not read as traffic, nor dilute the error rate."""
    stats = RequestStats()
    for second in range(30):
        for endpoint in ("/v1/status", "/v1/memory", "/v1/metrics/requests"):
            stats.record(endpoint, 200, 0.001, now=float(second), monitor=True)
    stats.record("/v1/search", 500, 0.2, now=10.0)
    stats.record("/v1/search", 200, 0.02, now=11.0)
    summary = stats.summary(60, now=30.0)
    assert summary["count"] == 2 and set(summary["endpoints"]) == {"/v1/search"}
    assert summary["error_rate"] == pytest.approx(0.5)
    assert summary["monitor"] == {"count": 90, "rate_per_second": pytest.approx(1.5)}
    assert stats.error_rate(60, now=30.0) == pytest.approx(0.5)
    assert stats.count(60, now=30.0) == 2


def test_horizon_bounds_memory_and_reset_empties() -> None:
    stats = RequestStats(horizon_seconds=10)
    for second in range(1000):
        stats.record("/v1/search", 200, 0.01, now=float(second))
    assert stats.count(10_000, now=999.5) == 10
    stats.reset()
    assert stats.count(now=999.5) == 0
    with pytest.raises(ValueError):
        RequestStats(horizon_seconds=0)
