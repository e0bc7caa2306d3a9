"""The daemon watching itself, end to end: the real jarvisd, its metrics port and its socket.

Prometheus names, types and labels as scraped; the JSON reports; mutations refused on
TCP until a reload allows them; an alert rule firing and resolving in the log; the
reload gauge; memory modes forced down and brought back by reloads.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from conftest import DaemonProcess, free_port
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from jarvisd import __version__
from jarvisd.cli.client import DaemonError

pytestmark = pytest.mark.serial
Start = Callable[..., DaemonProcess]

# Every metric the issue names: family name as the parser reports it (counters lose
# `_total`), its type, and the label names of its samples (`le` aside).
EXPECTED: dict[str, tuple[str, set[str]]] = {
    "jarvis_memory_rss_bytes": ("gauge", set()),
    "jarvis_memory_vms_bytes": ("gauge", set()),
    "jarvis_memory_available_bytes": ("gauge", set()),
    "jarvis_memory_total_bytes": ("gauge", set()),
    "jarvis_requests": ("counter", {"endpoint", "method", "status"}),
    "jarvis_request_duration_seconds": ("histogram", {"endpoint"}),
    "jarvis_uptime_seconds": ("gauge", set()),
    "jarvis_memory_mode": ("gauge", {"mode"}),
    "jarvis_alerts_firing": ("gauge", {"rule"}),
    "jarvis_alerts": ("counter", {"rule"}),
    "jarvis_job_runs": ("counter", {"job", "result"}),
    "jarvis_job_duration_seconds": ("histogram", {"job"}),
    "jarvis_cache_hits": ("counter", {"cache"}),
    "jarvis_cache_misses": ("counter", {"cache"}),
    "jarvis_build_info": ("gauge", {"version"}),
    "jarvis_config_last_reload_successful": ("gauge", set()),
    "process_resident_memory_bytes": ("gauge", set()),
    "process_virtual_memory_bytes": ("gauge", set()),
    "process_cpu_seconds": ("counter", set()),
    "process_start_time_seconds": ("gauge", set()),
    "process_open_fds": ("gauge", set()),
}

# Keeps the daemon to what these tests watch: fast sampling, no indexing work.
QUIET: dict[str, dict[str, Any]] = {
    "schedule": {"memory_sample": "200ms", "index": None},
    "indexing": {"on_start": False, "watch": False},
}

RSS_RULE = {
    "name": "rss_any",
    "metric": "rss_bytes",
    "op": ">",
    "threshold": 1,
    "for": "0s",
    "severity": "warning",
}


def observed(start_daemon: Start, **sections: dict[str, Any]) -> tuple[DaemonProcess, int]:
    """The real daemon with its metrics port on a free loopback port, sampling every 200 ms."""
    port = free_port()
    config: dict[str, dict[str, Any]] = {
        "metrics": {"listen": f"127.0.0.1:{port}"},
        **{name: dict(values) for name, values in QUIET.items()},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return start_daemon(**config), port


def http(port: int, method: str, path: str, accept: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def http_json(port: int, method: str, path: str) -> tuple[int, Any]:
    status, body = http(port, method, path)
    return status, json.loads(body)


def scrape(port: int) -> dict[str, Metric]:
    status, body = http(port, "GET", "/metrics")
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(body)}


def value(families: dict[str, Metric], name: str, **labels: str) -> float:
    """The one sample named `name` (`_total`, `_count`... included) with exactly these labels."""
    found = [
        sample.value
        for family in families.values()
        for sample in family.samples
        if sample.name == name and sample.labels == labels
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


# ---------------------------------------------------------------------------- scrape


def test_scrape_has_every_metric_with_its_type_and_labels(start_daemon: Start) -> None:
    daemon, port = observed(start_daemon)
    daemon.client.get("/v1/status")
    # Query text and a note-like path must never become label values.
    daemon.client.get("/v1/status", q="my secret query")
    with pytest.raises(DaemonError):
        daemon.client.get("/v1/nowhere/Private%20Diary.md", q="another secret")
    daemon.wait_event("job.finished")

    families = scrape(port)
    for name, (kind, label_names) in EXPECTED.items():
        assert name in families, f"{name} is not exposed"
        assert families[name].type == kind, (name, families[name].type)
        for sample in families[name].samples:
            assert set(sample.labels) - {"le"} == label_names, (name, sample)

    assert value(families, "jarvis_memory_rss_bytes") > 0
    available = value(families, "jarvis_memory_available_bytes")
    assert 0 < available <= value(families, "jarvis_memory_total_bytes")
    assert value(families, "jarvis_uptime_seconds") > 0
    assert value(families, "jarvis_build_info", version=__version__) == 1
    assert value(families, "jarvis_config_last_reload_successful") == 1
    modes = {s.labels["mode"]: s.value for s in families["jarvis_memory_mode"].samples}
    assert set(modes) == {"FULL", "LITE", "MINIMAL"} and sum(modes.values()) == 1
    ok = value(families, "jarvis_requests_total", endpoint="/v1/status", method="GET", status="200")
    assert ok >= 2
    assert value(families, "jarvis_job_runs_total", job="memory_sample", result="ok") >= 1
    assert value(families, "jarvis_job_duration_seconds_count", job="memory_sample") >= 1
    assert value(families, "jarvis_request_duration_seconds_count", endpoint="/v1/status") >= 2
    assert {s.labels["rule"] for s in families["jarvis_alerts_firing"].samples} >= {
        "memory_high",
        "job_failing",
    }
    assert value(families, "process_resident_memory_bytes") > 0
    assert_bounded_labels(families, daemon)


def assert_bounded_labels(families: dict[str, Metric], daemon: DaemonProcess) -> None:
    """No label value carries query text or a file path; endpoints are route templates."""
    for family in families.values():
        for sample in family.samples:
            for label, text in sample.labels.items():
                for secret in ("secret", "Private", "Diary", "?", " "):
                    assert secret not in text, (sample.name, label, text)
                assert str(daemon.root) not in text and "/home/" not in text, (label, text)
                if label == "endpoint":
                    assert text == "unmatched" or text.startswith(("/v1/", "/metrics")), text
    endpoints = {s.labels["endpoint"] for s in families["jarvis_requests"].samples}
    assert "unmatched" in endpoints and "/v1/status" in endpoints


def test_openmetrics_scrape_parses(start_daemon: Start) -> None:
    _, port = observed(start_daemon)
    status, body = http(port, "GET", "/metrics", accept="application/openmetrics-text")
    assert status == 200 and body.rstrip().endswith("# EOF")
    families = openmetrics_families(body)  # type: ignore[no-untyped-call]
    names = {family.name: family.type for family in families}
    assert names["jarvis_requests"] == "counter"
    assert names["jarvis_build"] == "info"
    assert names["jarvis_request_duration_seconds"] == "histogram"


# ----------------------------------------------------------------------- JSON reports


def test_health_and_json_reports_on_the_metrics_port(start_daemon: Start) -> None:
    daemon, port = observed(start_daemon)
    daemon.client.get("/v1/status")
    status, health = http_json(port, "GET", "/health")
    assert status == 200
    assert health["status"] == "ok" and health["version"] == __version__
    assert health["memory_mode"] in {"FULL", "LITE", "MINIMAL"}

    status, memory = http_json(port, "GET", "/metrics/memory")
    assert status == 200
    assert memory["mode"] == health["memory_mode"]
    assert memory["latest"]["rss"] > 0 and memory["trend"]["samples"] >= 1
    assert set(memory["thresholds"]) >= {"full_min_available", "lite_min_available"}

    status, latency = http_json(port, "GET", "/metrics/latency")
    assert status == 200
    timed = latency["operations"]["request:/v1/status"]
    assert {"count", "p50", "p90", "p95", "p99"} <= timed.keys()
    assert timed["p50"] <= timed["p99"]

    status, requests = http_json(port, "GET", "/metrics/requests")
    assert status == 200
    assert requests["count"] >= 1 and 0 <= requests["error_rate"] <= 1
    assert requests["endpoints"]["/v1/status"]["by_status"]["2xx"] >= 1


def test_latency_and_request_reports_on_the_socket(start_daemon: Start) -> None:
    daemon = start_daemon(**QUIET)  # metrics.listen is null: the socket alone must do
    daemon.client.get("/v1/status")
    latency = daemon.client.get("/v1/metrics/latency")
    assert "request:/v1/status" in latency["operations"]
    requests = daemon.client.get("/v1/metrics/requests")
    assert requests["window_seconds"] == 300 and requests["count"] >= 1
    assert daemon.client.get("/v1/metrics/requests", window=60)["window_seconds"] == 60
    for bad in ("0", "abc", "nan", "100000"):
        with pytest.raises(DaemonError) as caught:
            daemon.client.get("/v1/metrics/requests", window=bad)
        assert caught.value.status == 400 and "window" in caught.value.message


# ------------------------------------------------------------------------- mutations


def test_mutations_are_refused_on_tcp_until_a_reload_allows_them(start_daemon: Start) -> None:
    daemon, port = observed(start_daemon)
    for operation in ("sample", "gc", "reset"):
        status, body = http_json(port, "POST", f"/metrics/{operation}")
        assert status == 403, (operation, body)
        assert "metrics.allow_mutations" in body["error"]["message"]
    # The socket's peer is the daemon's own user: always allowed there.
    assert daemon.client.post("/v1/metrics/gc")["collected"] >= 0

    daemon.rewrite(metrics={"allow_mutations": True})
    outcome = daemon.client.post("/v1/reload")
    assert "metrics.allow_mutations" in outcome["changed"]
    assert outcome["restart_required"] == []
    status, collected = http_json(port, "POST", "/metrics/gc")
    assert status == 200 and collected["collected"] >= 0 and collected["freed_bytes"] >= 0
    status, sample = http_json(port, "POST", "/metrics/sample")
    assert status == 200 and sample["rss"] > 0
    status, reset = http_json(port, "POST", "/metrics/reset")
    assert status == 200 and reset["counters_reset"] is False

    daemon.rewrite(metrics={"allow_mutations": False})
    daemon.client.post("/v1/reload")
    assert http_json(port, "POST", "/metrics/gc")[0] == 403


# ---------------------------------------------------------------------------- alerts


def test_an_alert_fires_and_resolves_after_a_reload(start_daemon: Start) -> None:
    daemon, port = observed(start_daemon, alerts={"rules": [RSS_RULE]})
    fired = daemon.wait_event("alert.fired")[0]
    assert fired["rule"] == "rss_any" and fired["metric"] == "rss_bytes"
    assert fired["value"] > 1 and fired["threshold"] == 1
    assert fired["severity"] == "warning" and fired["level"] == "warning"
    datetime.fromisoformat(fired["since"])
    report = daemon.client.get("/v1/alerts")
    assert [alert["rule"] for alert in report["firing"]] == ["rss_any"]
    assert daemon.client.get("/v1/status")["alerts_firing"] == ["rss_any"]
    families = scrape(port)
    assert value(families, "jarvis_alerts_firing", rule="rss_any") == 1
    assert value(families, "jarvis_alerts_total", rule="rss_any") == 1

    daemon.rewrite(alerts={"rules": [{**RSS_RULE, "threshold": 10**15}]})
    daemon.signal(signal.SIGHUP)
    resolved = daemon.wait_event("alert.resolved")[0]
    assert resolved["rule"] == "rss_any" and resolved["metric"] == "rss_bytes"
    assert resolved["threshold"] == 10**15 and resolved["severity"] == "warning"
    assert resolved["value"] > 1
    report = daemon.client.get("/v1/alerts")
    assert report["firing"] == []
    assert report["recent"][0]["kind"] == "resolved"
    families = scrape(port)
    assert value(families, "jarvis_alerts_firing", rule="rss_any") == 0
    assert value(families, "jarvis_alerts_total", rule="rss_any") == 1
    assert len(daemon.events("alert.fired")) == 1


# ---------------------------------------------------------------------------- reload


def test_reload_gauge_follows_each_sighup(start_daemon: Start) -> None:
    daemon, port = observed(start_daemon)
    families = scrape(port)
    assert value(families, "jarvis_config_last_reload_successful") == 1
    loaded_at = value(families, "jarvis_config_last_reload_success_timestamp_seconds")

    daemon.config_path.write_text("alerts: {rules: [\n", encoding="utf-8")
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("config.reload_failed")
    families = scrape(port)
    assert value(families, "jarvis_config_last_reload_successful") == 0
    assert value(families, "jarvis_config_last_reload_success_timestamp_seconds") == loaded_at
    assert daemon.client.get("/v1/status")["state"] == "running"

    daemon.rewrite()  # the last good file again
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("config.reloaded")
    families = scrape(port)
    assert value(families, "jarvis_config_last_reload_successful") == 1
    assert value(families, "jarvis_config_last_reload_success_timestamp_seconds") >= loaded_at


# ---------------------------------------------------------------------- memory modes


def test_memory_mode_goes_minimal_and_back_to_full_on_reload(start_daemon: Start) -> None:
    unreachable = {"full_min_available": "10TB", "lite_min_available": "9TB"}
    daemon, port = observed(start_daemon, memory={"modes": unreachable})
    assert daemon.client.get("/v1/status")["memory_mode"] == "MINIMAL"
    down = daemon.wait_event("memory.mode_changed")[0]
    assert (down["before"], down["after"]) == ("FULL", "MINIMAL")
    assert "below" in down["reason"]
    assert value(scrape(port), "jarvis_memory_mode", mode="MINIMAL") == 1
    assert daemon.client.get("/v1/memory")["mode"] == "MINIMAL"

    reachable = {"full_min_available": "1MB", "lite_min_available": "1MB", "hysteresis": "1MB"}
    daemon.rewrite(memory={"modes": reachable})
    outcome = daemon.client.post("/v1/reload")
    assert "memory.modes.full_min_available" in outcome["changed"]
    up = daemon.wait_event("memory.mode_changed", count=2)[1]
    assert (up["before"], up["after"]) == ("MINIMAL", "FULL")
    assert "hysteresis" in up["reason"]
    assert daemon.client.get("/v1/status")["memory_mode"] == "FULL"
    families = scrape(port)
    assert value(families, "jarvis_memory_mode", mode="FULL") == 1
    assert value(families, "jarvis_memory_mode", mode="MINIMAL") == 0
