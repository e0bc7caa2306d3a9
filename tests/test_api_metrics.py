"""The metrics port over a real aiohttp test client and an in-process provider."""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from jarvisd import __version__
from jarvisd.api.metrics import (
    HealthCache,
    ObservabilityProvider,
    add_mutation_routes,
    create_metrics_app,
)
from jarvisd.config import AlertsConfig, MemoryConfig
from jarvisd.observe.alerts import AlertEngine, AlertInputs
from jarvisd.observe.memory import MemoryMonitor, accelerator_memory, gc_collect
from jarvisd.observe.metrics import Metrics

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


class InProcessProvider:
    """The ObservabilityProvider shape, from the real components (what the daemon does)."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.monitor = MemoryMonitor(MemoryConfig(), self.metrics)
        self.alerts = AlertEngine(AlertsConfig(), self.metrics)
        self.inputs = AlertInputs(self.metrics)
        self.is_ready = True
        self.fail_memory_report = False

    def ready(self) -> bool:
        return self.is_ready

    def status_summary(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "uptime_seconds": self.metrics.uptime_seconds(),
            "memory_mode": self.monitor.mode.value,
            "alerts_firing": [alert["rule"] for alert in self.alerts.firing()],
        }

    def memory_report(self) -> dict[str, Any]:
        if self.fail_memory_report:
            raise RuntimeError("psutil went away")
        latest = self.monitor.latest()
        return {
            "mode": self.monitor.mode.value,
            "latest": latest.as_dict() if latest else None,
            "trend": self.monitor.trend(),
            "accelerators": accelerator_memory(),
        }

    def latency_report(self) -> dict[str, Any]:
        return {"operations": self.metrics.latency.percentiles()}

    def requests_report(self) -> dict[str, Any]:
        return self.metrics.request_stats.summary()

    async def sample(self) -> dict[str, Any]:
        sample = self.monitor.sample()
        events = self.alerts.evaluate(self.inputs.collect(sample))
        return {"sample": sample.as_dict(), "alerts": [event.as_dict() for event in events]}

    async def collect_garbage(self) -> dict[str, Any]:
        return await asyncio.to_thread(gc_collect)

    async def reset_metrics(self) -> dict[str, Any]:
        return self.metrics.reset()


def _typed(provider: ObservabilityProvider) -> ObservabilityProvider:
    """mypy checks here that InProcessProvider satisfies the Protocol."""
    return provider


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def provider() -> InProcessProvider:
    return InProcessProvider()


async def test_prometheus_scrape(aiohttp_client: MakeClient, provider: InProcessProvider) -> None:
    provider.metrics.observe_search("semantic", 0.03)
    client = await aiohttp_client(create_metrics_app(_typed(provider), allow_mutations=False))
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    assert families["jarvis_search_duration_seconds"].type == "histogram"
    assert families["jarvis_memory_mode"].type == "gauge"


async def test_prometheus_scrape_negotiates_openmetrics(
    aiohttp_client: MakeClient, provider: InProcessProvider
) -> None:
    client = await aiohttp_client(create_metrics_app(provider, allow_mutations=False))
    response = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await response.text()).endswith("# EOF\n")


async def test_json_reports(aiohttp_client: MakeClient, provider: InProcessProvider) -> None:
    provider.monitor.sample()
    provider.metrics.observe_search("hybrid", 0.2)
    provider.metrics.observe_request("/v1/search", "GET", 200, 0.2)
    client = await aiohttp_client(create_metrics_app(provider, allow_mutations=False))

    memory = await (await client.get("/metrics/memory")).json()
    assert memory["mode"] in {"FULL", "LITE", "MINIMAL"}
    assert memory["latest"]["rss"] > 0
    assert memory["trend"]["samples"] == 1

    latency = await (await client.get("/metrics/latency")).json()
    assert latency["operations"]["search"]["p95"] == pytest.approx(0.2)

    requests = await (await client.get("/metrics/requests")).json()
    assert requests["endpoints"]["/v1/search"]["by_status"] == {"2xx": 1}


@pytest.mark.parametrize("operation", ["sample", "gc", "reset"])
async def test_mutations_are_forbidden_on_tcp_by_default(
    aiohttp_client: MakeClient, provider: InProcessProvider, operation: str
) -> None:
    client = await aiohttp_client(create_metrics_app(provider, allow_mutations=False))
    response = await client.post(f"/metrics/{operation}")
    assert response.status == 403
    error = (await response.json())["error"]
    assert error["code"] == "forbidden"
    assert "metrics.allow_mutations: true" in error["message"]
    assert provider.monitor.latest() is None  # nothing was sampled


async def test_mutations_when_allowed(
    aiohttp_client: MakeClient, provider: InProcessProvider
) -> None:
    provider.metrics.observe_search("keyword", 0.1)
    client = await aiohttp_client(create_metrics_app(provider, allow_mutations=True))

    sampled = await client.post("/metrics/sample")
    assert sampled.status == 200
    body = await sampled.json()
    assert body["sample"]["rss"] > 0
    assert provider.monitor.latest() is not None

    collected = await (await client.post("/metrics/gc")).json()
    assert {"collected", "rss_before_bytes", "rss_after_bytes", "freed_bytes"} <= set(collected)

    reset = await (await client.post("/metrics/reset")).json()
    assert reset["counters_reset"] is False
    assert provider.metrics.latency.percentiles() == {}


async def test_mutation_routes_mount_on_another_app(
    aiohttp_client: MakeClient, provider: InProcessProvider
) -> None:
    control = web.Application()
    add_mutation_routes(control, provider, "/v1/metrics/")
    client = await aiohttp_client(control)
    response = await client.post("/v1/metrics/sample")
    assert response.status == 200
    assert (await response.json())["sample"]["rss"] > 0
    assert provider.monitor.latest() is not None


async def test_health_ok_when_ready(
    aiohttp_client: MakeClient, provider: InProcessProvider
) -> None:
    client = await aiohttp_client(create_metrics_app(provider, allow_mutations=False))
    response = await client.get("/health")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert body["version"] == __version__


async def test_health_503_while_starting_and_cached(
    aiohttp_client: MakeClient, provider: InProcessProvider
) -> None:
    clock = Clock()
    app = create_metrics_app(provider, allow_mutations=False, health_cache=HealthCache(clock=clock))
    client = await aiohttp_client(app)
    provider.is_ready = False
    response = await client.get("/health")
    assert response.status == 503
    assert (await response.json())["status"] == "starting"

    provider.is_ready = True
    clock.now += 4.9  # within the cache time: the old answer
    assert (await client.get("/health")).status == 503
    clock.now += 0.1  # 5 s after the first answer: asked again
    response = await client.get("/health")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"


async def test_errors_are_json(aiohttp_client: MakeClient, provider: InProcessProvider) -> None:
    client = await aiohttp_client(create_metrics_app(provider, allow_mutations=False))
    missing = await client.get("/metrics/nothing")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"

    wrong_method = await client.get("/metrics/gc")
    assert wrong_method.status == 405
    assert (await wrong_method.json())["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong_method.headers["Allow"]

    provider.fail_memory_report = True
    broken = await client.get("/metrics/memory")
    assert broken.status == 500
    error = (await broken.json())["error"]
    assert error == {"code": "internal", "message": "RuntimeError: psutil went away"}


@pytest.mark.skipif(platform.system() != "Linux", reason="process_* series come from /proc")
async def test_scrape_includes_process_collector(
    aiohttp_client: MakeClient, provider: InProcessProvider
) -> None:
    client = await aiohttp_client(create_metrics_app(provider, allow_mutations=False))
    text = await (await client.get("/metrics")).text()
    assert "process_resident_memory_bytes" in text


async def test_health_503_with_the_reason_while_the_store_recovers(
    aiohttp_client: MakeClient,
) -> None:
    """The daemon's real Observer: unhealthy (a damaged database) answers 503 and says why."""
    from jarvisd.config import Config
    from jarvisd.observe.observer import Observer
    from jarvisd.pools import Pools

    config = Config()
    reason: list[str | None] = ["the database is damaged, recovering: IO Error: checksum"]
    pools = Pools(config.threads)
    try:
        observer = Observer(config, Metrics(), pools, ready=lambda: reason[0] is None)
        observer.unhealthy = lambda: reason[0]
        app = create_metrics_app(
            observer, allow_mutations=False, health_cache=HealthCache(seconds=0.0)
        )
        client = await aiohttp_client(app)
        response = await client.get("/health")
        assert response.status == 503
        body = await response.json()
        assert body["status"] == "unhealthy" and "checksum" in body["unhealthy_reason"]
        reason[0] = None
        response = await client.get("/health")
        assert response.status == 200 and "unhealthy_reason" not in await response.json()
    finally:
        pools.shutdown(wait=True)


def test_an_event_alert_writes_the_alert_line_and_is_counted() -> None:
    metrics = Metrics()
    engine = AlertEngine(AlertsConfig(), metrics)
    event = engine.event("store_recovered", "garbage; files kept: a.broken", files=["a.broken"])
    assert event.kind == "fired" and event.severity == "critical"
    assert engine.recent()[0]["rule"] == "store_recovered"
    assert "garbage" in engine.recent()[0]["reason"]
    assert engine.firing() == []  # nothing stays firing: there is nothing to resolve
    assert metrics.alerts.labels("store_recovered")._value.get() == 1
