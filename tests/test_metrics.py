"""The Metrics registry as a scraper sees it, and the Prometheus rules file against it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jarvisd.config import AlertsConfig
from jarvisd.observe.metrics import MEMORY_MODES, SEARCH_OPERATION, Metrics
from jarvisd.units import parse_duration

RULES_FILE = Path(__file__).resolve().parents[1] / "packaging" / "prometheus" / "jarvis-alerts.yml"

# Family name as the text parser reports it (counters without _total) -> type.
EXPECTED_FAMILIES = {
    "jarvis_build_info": "gauge",
    "jarvis_config_last_reload_successful": "gauge",
    "jarvis_config_last_reload_success_timestamp_seconds": "gauge",
    "jarvis_requests": "counter",
    "jarvis_request_duration_seconds": "histogram",
    "jarvis_job_runs": "counter",
    "jarvis_job_duration_seconds": "histogram",
    "jarvis_uptime_seconds": "gauge",
    "jarvis_memory_rss_bytes": "gauge",
    "jarvis_memory_vms_bytes": "gauge",
    "jarvis_memory_available_bytes": "gauge",
    "jarvis_memory_total_bytes": "gauge",
    "jarvis_cpu_percent": "gauge",
    "jarvis_memory_mode": "gauge",
    "jarvis_alerts_firing": "gauge",
    "jarvis_alerts": "counter",
    "jarvis_cache_hits": "counter",
    "jarvis_cache_misses": "counter",
    "jarvis_cache_entries": "gauge",
    "jarvis_index_files": "counter",
    "jarvis_index_chunks": "counter",
    "jarvis_index_duration_seconds": "histogram",
    "jarvis_index_notes": "gauge",
    "jarvis_index_last_success_timestamp_seconds": "gauge",
    "jarvis_search_duration_seconds": "histogram",
    "jarvis_search_requests": "counter",
    "jarvis_model_loaded": "gauge",
    "jarvis_model_memory_bytes": "gauge",
}


def scrape(metrics: Metrics) -> dict[str, object]:
    text = generate_latest(metrics.registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample_value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    assert value is not None, f"{name}{labels or ''} not exposed"
    return value


def test_every_metric_is_exposed_with_its_type() -> None:
    families = scrape(Metrics())
    types = {name: family.type for name, family in families.items()}  # type: ignore[attr-defined]
    for name, kind in EXPECTED_FAMILIES.items():
        assert types.get(name) == kind, f"{name}: expected {kind}, got {types.get(name)}"


def test_names_follow_prometheus_conventions() -> None:
    text = generate_latest(Metrics().registry).decode()
    names = {
        family.name
        for family in text_string_to_metric_families(text)
        if family.name.startswith("jarvis_")
    }
    for name in names:
        assert re.fullmatch(r"jarvis_[a-z0-9_]+", name), name
        # Base units only: no milliseconds, no megabytes.
        assert not re.search(r"_(ms|milliseconds|mb|kb|gb|percent_ratio)$", name), name
    # Counters are exposed with _total.
    assert "# TYPE jarvis_requests_total counter" in text
    assert "# TYPE jarvis_alerts_total counter" in text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ProcessCollector reads /proc")
def test_process_collector_is_on_this_registry() -> None:
    metrics = Metrics()
    assert sample_value(metrics, "process_resident_memory_bytes") > 0


def test_uptime_is_computed_at_scrape_time() -> None:
    metrics = Metrics()
    first = sample_value(metrics, "jarvis_uptime_seconds")
    second = sample_value(metrics, "jarvis_uptime_seconds")
    assert 0 <= first <= second


def test_memory_mode_has_one_series_per_mode_and_one_current() -> None:
    metrics = Metrics()

    def modes() -> list[float]:
        return [sample_value(metrics, "jarvis_memory_mode", {"mode": m}) for m in MEMORY_MODES]

    assert modes() == [1, 0, 0]
    metrics.set_memory_mode("MINIMAL")
    assert modes() == [0, 0, 1]
    with pytest.raises(ValueError, match="unknown memory mode"):
        metrics.set_memory_mode("TURBO")


def test_models_are_exposed_unloaded_from_the_start() -> None:
    metrics = Metrics()
    for model in ("embedding", "llm"):
        assert sample_value(metrics, "jarvis_model_loaded", {"model": model}) == 0
    metrics.set_model("embedding", True, 90_000_000)
    assert sample_value(metrics, "jarvis_model_loaded", {"model": "embedding"}) == 1
    assert sample_value(metrics, "jarvis_model_memory_bytes", {"model": "embedding"}) == 90e6
    metrics.set_model("embedding", False)
    assert sample_value(metrics, "jarvis_model_memory_bytes", {"model": "embedding"}) == 0


def test_observe_request_feeds_counter_histogram_and_windows() -> None:
    metrics = Metrics()
    metrics.observe_request("/v1/search", "GET", 200, 0.010)
    metrics.observe_request("/v1/search", "GET", 500, 0.020)
    labels = {"endpoint": "/v1/search", "method": "GET", "status": "500"}
    assert sample_value(metrics, "jarvis_requests_total", labels) == 1
    assert (
        sample_value(metrics, "jarvis_request_duration_seconds_count", {"endpoint": "/v1/search"})
        == 2
    )
    assert metrics.request_stats.error_rate() == 0.5
    assert metrics.latency.percentiles("request:/v1/search")["request:/v1/search"]["count"] == 2


def test_observe_search_feeds_the_search_operation() -> None:
    metrics = Metrics()
    metrics.observe_search("hybrid", 0.5)
    metrics.observe_search("semantic", 1.5, result="error")
    assert metrics.latency.percentile(SEARCH_OPERATION, 100) == 1.5
    assert metrics.latency.operations() == ["search", "search:hybrid", "search:semantic"]
    labels = {"mode": "semantic", "result": "error"}
    assert sample_value(metrics, "jarvis_search_requests_total", labels) == 1
    assert sample_value(metrics, "jarvis_search_duration_seconds_count", {"mode": "hybrid"}) == 1


def test_cache_and_job_helpers() -> None:
    metrics = Metrics()
    metrics.observe_cache("query", hit=True)
    metrics.observe_cache("query", hit=False)
    metrics.observe_cache("query", hit=False)
    assert sample_value(metrics, "jarvis_cache_hits_total", {"cache": "query"}) == 1
    assert sample_value(metrics, "jarvis_cache_misses_total", {"cache": "query"}) == 2
    assert metrics.job_failures_total() == 0
    metrics.observe_job("index", "ok", 1.0)
    metrics.observe_job("index", "error", 2.0)
    # A component incrementing the counter directly is counted too.
    metrics.job_runs.labels("maintenance", "error").inc()
    assert metrics.job_failures_total() == 2


def test_index_last_success_time_is_none_until_set() -> None:
    metrics = Metrics()
    assert metrics.index_last_success_time() is None
    metrics.index_succeeded(1_700_000_000.0)
    assert metrics.index_last_success_time() == 1_700_000_000.0
    assert sample_value(metrics, "jarvis_index_last_success_timestamp_seconds") == 1.7e9


def test_reset_empties_windows_but_never_counters() -> None:
    metrics = Metrics()
    metrics.observe_request("/v1/search", "GET", 500, 0.1)
    metrics.observe_search("keyword", 0.1)
    answer = metrics.reset()
    assert answer["counters_reset"] is False
    assert metrics.latency.percentiles() == {}
    assert metrics.request_stats.count() == 0
    labels = {"endpoint": "/v1/search", "method": "GET", "status": "500"}
    assert sample_value(metrics, "jarvis_requests_total", labels) == 1


def test_two_instances_do_not_share_a_registry() -> None:
    first, second = Metrics(), Metrics()
    first.observe_cache("results", hit=True)
    assert second.registry.get_sample_value("jarvis_cache_hits_total", {"cache": "results"}) is None


# --------------------------------------------------------------- Prometheus rules file

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exposed_names(metrics: Metrics) -> set[str]:
    """Every series name the registry can expose, including families with no children yet."""
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
    return names


def load_rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_rules_file_references_only_exposed_metrics() -> None:
    exposed = exposed_names(Metrics())
    rules = load_rules()
    assert rules
    for rule in rules:
        expression = str(rule["expr"])
        referenced = set(re.findall(r"\b((?:jarvis|process)_[a-z0-9_]+)", expression))
        assert referenced, f"{rule['alert']} references no jarvis metric"
        missing = referenced - exposed
        assert not missing, f"{rule['alert']} references unknown metrics {sorted(missing)}"


def test_rules_file_mirrors_the_default_daemon_rules() -> None:
    defaults = {rule.name: rule for rule in AlertsConfig().rules}
    rules = load_rules()
    by_rule = {rule["labels"]["rule"]: rule for rule in rules}  # type: ignore[index]
    assert set(by_rule) == set(defaults)
    for name, rule in by_rule.items():
        assert parse_duration(rule.get("for", 0)) == defaults[name].for_, name
        severity = rule["labels"]["severity"]  # type: ignore[index]
        assert severity == defaults[name].severity, name
