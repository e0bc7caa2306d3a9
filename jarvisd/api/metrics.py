"""The metrics port (default 127.0.0.1:8742): Prometheus text, JSON reports, health.

Read-only by default. The POST operations (`sample`, `gc`, `reset`) are
answered 403 on TCP unless `metrics.allow_mutations` is true; the control
socket mounts the same handlers through `add_mutation_routes(..., allowed=True)`
because its peer is already checked to be the daemon's own user.

The app talks only to an `ObservabilityProvider` (the daemon implements it), so
it can be tested with an in-process provider built from the real components.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from jarvisd.api.errors import HTTP_CODES, error_response, json_ok
from jarvisd.logs import get_logger
from jarvisd.observe.metrics import Metrics

_log = get_logger("jarvisd.api.metrics")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HEALTH_CACHE_SECONDS = 5.0


class ObservabilityProvider(Protocol):
    """What the metrics endpoints need from the daemon."""

    @property
    def metrics(self) -> Metrics: ...

    def ready(self) -> bool:
        """True once started (vault opened, sockets bound) and not shutting down."""
        ...

    def status_summary(self) -> dict[str, Any]:
        """Small JSON-able facts for /health: version, uptime, memory mode, firing alerts."""
        ...

    def memory_report(self) -> dict[str, Any]:
        """Process, system and model memory (GPU/Metal where present) and the history trend."""
        ...

    def latency_report(self) -> dict[str, Any]:
        """p50/p90/p95/p99 per operation."""
        ...

    def requests_report(self) -> dict[str, Any]:
        """Recent requests per endpoint by status class, rates and error rate."""
        ...

    async def sample(self) -> dict[str, Any]:
        """Take a memory sample now (and evaluate alerts); the sample as JSON."""
        ...

    async def collect_garbage(self) -> dict[str, Any]:
        """Run a full gc; what it collected and what RSS did."""
        ...

    async def reset_metrics(self) -> dict[str, Any]:
        """Empty the recent windows; Prometheus counters stay (they are monotonic)."""
        ...


PROVIDER: web.AppKey[ObservabilityProvider] = web.AppKey("observability_provider")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as {"error": {"code", "message"}}, including aiohttp's own 404/405."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = HTTP_CODES.get(error.status, "http_error")
        message = f"{request.method} {request.path}: {error.reason}"
        response = error_response(error.status, code, message)
        if error.status == 405:
            allow = error.headers.get("Allow")
            if allow:
                response.headers["Allow"] = allow
        return response
    except Exception as error:
        # Caught here, so aiohttp will not log it: say it once, with the traceback.
        _log.exception("metrics_api.error", method=request.method, path=request.path)
        return error_response(500, "internal", f"{type(error).__name__}: {error}")


# ------------------------------------------------------------------------ read side


async def prometheus(request: web.Request) -> web.Response:
    provider = request.app[PROVIDER]
    # The client library's own negotiation: OpenMetrics when the scraper asks for it.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(provider.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


async def memory(request: web.Request) -> web.Response:
    return json_ok(request.app[PROVIDER].memory_report())


async def latency(request: web.Request) -> web.Response:
    return json_ok(request.app[PROVIDER].latency_report())


async def requests(request: web.Request) -> web.Response:
    return json_ok(request.app[PROVIDER].requests_report())


@dataclass(slots=True)
class HealthCache:
    """The last /health answer, reused for `seconds` so probes cost nothing."""

    seconds: float = HEALTH_CACHE_SECONDS
    clock: Callable[[], float] = time.monotonic
    _expires: float = 0.0
    _answer: tuple[int, dict[str, Any]] | None = None

    def get(self, compute: Callable[[], tuple[int, dict[str, Any]]]) -> tuple[int, dict[str, Any]]:
        now = self.clock()
        if self._answer is None or now >= self._expires:
            self._answer = compute()
            self._expires = now + self.seconds
        return self._answer


HEALTH_CACHE: web.AppKey[HealthCache] = web.AppKey("health_cache", HealthCache)


def _health_answer(provider: ObservabilityProvider) -> tuple[int, dict[str, Any]]:
    ready = provider.ready()
    summary = provider.status_summary()
    state = "ok" if ready else "unhealthy" if "unhealthy_reason" in summary else "starting"
    body = {"status": state, **summary}
    return (200 if ready else 503), body


async def health(request: web.Request) -> web.Response:
    provider = request.app[PROVIDER]
    status, body = request.app[HEALTH_CACHE].get(lambda: _health_answer(provider))
    return json_ok(body, status=status)


# ------------------------------------------------------------------------ mutations


def _forbidden(path: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return error_response(
            403,
            "forbidden",
            f"POST {path} is disabled on the metrics port; set metrics.allow_mutations: true "
            "in jarvis.yaml, or use the control socket (jarvisctl)",
        )

    return handler


def add_mutation_routes(
    app: web.Application,
    provider: ObservabilityProvider,
    prefix: str = "/metrics",
    *,
    allowed: bool | Callable[[], bool] = True,
) -> None:
    """Mount POST {prefix}/sample, {prefix}/gc and {prefix}/reset on `app`.

    With allowed=False the routes exist but answer 403, so a client learns why
    rather than getting a 404. The control socket mounts them with
    allowed=True (e.g. prefix "/v1/metrics"). A callable is asked on every
    request, so `metrics.allow_mutations` changes on reload.
    """
    is_allowed = allowed if callable(allowed) else (lambda: bool(allowed))

    async def sample(request: web.Request) -> web.Response:
        return json_ok(await provider.sample())

    async def collect_garbage(request: web.Request) -> web.Response:
        return json_ok(await provider.collect_garbage())

    async def reset(request: web.Request) -> web.Response:
        return json_ok(await provider.reset_metrics())

    handlers: dict[str, Handler] = {"sample": sample, "gc": collect_garbage, "reset": reset}
    base = prefix.rstrip("/")
    for name, handler in handlers.items():
        path = f"{base}/{name}"
        app.router.add_post(path, _guarded(handler, is_allowed, _forbidden(path)))


def _guarded(handler: Handler, is_allowed: Callable[[], bool], refuse: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        return await (handler if is_allowed() else refuse)(request)

    return guarded


def create_metrics_app(
    provider: ObservabilityProvider,
    *,
    allow_mutations: bool | Callable[[], bool],
    health_cache: HealthCache | None = None,
) -> web.Application:
    """The metrics-port application; the daemon binds it to `metrics.listen`."""
    app = web.Application(middlewares=[error_middleware])
    app[PROVIDER] = provider
    app[HEALTH_CACHE] = health_cache or HealthCache()
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/metrics/memory", memory)
    app.router.add_get("/metrics/latency", latency)
    app.router.add_get("/metrics/requests", requests)
    app.router.add_get("/health", health)
    add_mutation_routes(app, provider, "/metrics", allowed=allow_mutations)
    return app
