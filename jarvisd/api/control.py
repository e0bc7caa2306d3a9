"""The control socket: aiohttp on a Unix socket, JSON in and out, versioned paths.

Only the daemon's own uid may talk to it (peer credentials, checked on every
request), bodies are bounded, requests are rate limited, and every error is
`{"error": {"code", "message"}}` with a fitting status. Handlers talk to the
services through the `ControlTarget` Protocol, never to DuckDB.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiohttp import web

from jarvisd.api.errors import (
    HTTP_CODES,
    ApiError,
    bad_request,
    error_response,
    from_domain,
    json_ok,
)
from jarvisd.api.peercred import peer_uid
from jarvisd.config import Config
from jarvisd.errors import DomainError
from jarvisd.jobs import JobError, JobReport, JobState
from jarvisd.logs import bound, get_logger
from jarvisd.observe.latency import MONITOR_HEADER
from jarvisd.observe.metrics import Metrics
from jarvisd.reports import DaemonStatus, ReloadOutcome

log = get_logger("jarvisd.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlTarget(Protocol):
    """What the control API needs from the daemon itself."""

    @property
    def config(self) -> Config: ...

    @property
    def metrics(self) -> Metrics: ...

    def status(self) -> DaemonStatus: ...

    async def reload(self, source: str) -> ReloadOutcome: ...

    def effective_config(self) -> dict[str, Any]: ...


class JobsTarget(Protocol):
    """The job scheduler, as `/v1/jobs` sees it."""

    def describe(self) -> Sequence[JobReport]: ...

    def run_now(self, job_id: str) -> JobState: ...


class ReportsTarget(Protocol):
    """The observer's reports on alerts, memory, latency and requests."""

    def alerts_report(self) -> dict[str, Any]: ...

    def memory_history(self) -> dict[str, Any]: ...

    def latency_report(self) -> dict[str, Any]: ...

    def requests_report(self, window: float | None = None) -> dict[str, Any]: ...

    @property
    def requests_horizon_seconds(self) -> int: ...


TARGET: web.AppKey[ControlTarget] = web.AppKey("target")
JOBS: web.AppKey[JobsTarget] = web.AppKey("jobs")
REPORTS: web.AppKey[ReportsTarget] = web.AppKey("reports")
# aiohttp's own body ceiling; the configured (reloadable) limit is enforced below it.
HARD_BODY_LIMIT = 64 * 1024 * 1024


class TokenBucket:
    """`rate` requests per second with a burst of twice that; rate 0 means no limit."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = rate * 2
        self._updated = time.monotonic()

    def allow(self, rate: float) -> bool:
        if rate != self.rate:
            self.rate = rate
            self._tokens = min(self._tokens, rate * 2)
        if rate <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(rate * 2, self._tokens + (now - self._updated) * rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


def endpoint_of(request: web.Request) -> str:
    """The route template (`/v1/jobs/{id}/run`), never the raw path: bounded labels."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, error JSON, metrics and one log line per request."""
    target = request.app[TARGET]
    request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex[:16]
    started = time.perf_counter()
    with bound(request_id=request_id):
        response = await _respond(request, handler)
    elapsed = time.perf_counter() - started
    response.headers["X-Request-Id"] = request_id
    endpoint = endpoint_of(request)
    monitor = MONITOR_HEADER in request.headers
    target.metrics.observe_request(
        endpoint, request.method, response.status, elapsed, monitor=monitor
    )
    # Reads that succeed are routine (jarvisctl top polls several a second): debug.
    # Changes and errors are what an operator reads the log for.
    quiet = request.method == "GET" and response.status < 400
    (log.debug if quiet else log.info)(
        "request",
        request_id=request_id,
        method=request.method,
        path=request.path,
        status=response.status,
        ms=round(elapsed * 1000, 2),
    )
    return response


async def _respond(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        response = error_response(error.status, error.code, error.message, **error.details)
        if error.status in (408, 413):
            # The rest of that body is not worth reading: close instead of draining it.
            response.force_close()
        return response
    except DomainError as error:
        mapped = from_domain(error)
        return error_response(mapped.status, mapped.code, mapped.message, **mapped.details)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = HTTP_CODES.get(error.status, "error")
        return error_response(error.status, code, error.reason or code)
    except Exception as error:
        log.error("request.failed", path=request.path, exc_info=True)
        return error_response(500, "internal", f"{type(error).__name__}: {error}")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Peer uid, rate limit and body size, before any handler runs."""
    target = request.app[TARGET]
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None and sock.family == socket.AF_UNIX:
        try:
            uid = peer_uid(sock)
        except OSError as error:
            raise ApiError(403, "forbidden", f"cannot verify the peer: {error}") from error
        if uid != os.getuid():
            log.warning("control.peer_refused", peer_uid=uid)
            raise ApiError(403, "forbidden", f"uid {uid} may not use this socket")
    if not request.app[BUCKET].allow(target.config.control.rate_limit):
        raise ApiError(429, "rate_limited", "too many requests; slow down")
    limit = target.config.control.max_request_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            413, "request_too_large", f"request body over {limit} bytes (control.max_request_bytes)"
        )
    return await handler(request)


BUCKET: web.AppKey[TokenBucket] = web.AppKey("bucket")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body ({} when empty), bounded by control.max_request_bytes
    and, in time, by control.request_timeout (a body that stalls is a 408)."""
    control = request.app[TARGET].config.control
    timeout = control.request_timeout or None
    try:
        async with asyncio.timeout(timeout):
            raw = await _read_body(request, control.max_request_bytes)
    except TimeoutError:
        raise ApiError(
            408,
            "request_timeout",
            f"the request body did not arrive within {timeout:g}s (control.request_timeout)",
        ) from None
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise bad_request(f"body is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise bad_request("body must be a JSON object")
    try:
        # A `\ud800` escape decodes to a lone surrogate, which is not text: the
        # tokenizer raised TypeError on one in a question and /v1/ask answered 500
        # (found by benchmarks/reliability.py's requests section).
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        raise bad_request(
            "body holds a lone UTF-16 surrogate escape (such as \\ud800), which is not text"
        ) from error
    return value


async def _read_body(request: web.Request, limit: int) -> bytes:
    # StreamReader.read(n) returns what has arrived, not n bytes: read to the end.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(
                413,
                "request_too_large",
                f"request body over {limit} bytes (control.max_request_bytes)",
            )
        chunks.append(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------ routes

routes = web.RouteTableDef()


@routes.get("/v1/status")
async def get_status(request: web.Request) -> web.Response:
    return json_ok(request.app[TARGET].status().as_dict())


@routes.post("/v1/reload")
async def post_reload(request: web.Request) -> web.Response:
    outcome = await request.app[TARGET].reload("request")
    if not outcome.ok:
        raise ApiError(
            422, "invalid_config", outcome.error or "invalid config", result=outcome.as_dict()
        )
    return json_ok(outcome.as_dict())


@routes.get("/v1/config")
async def get_config(request: web.Request) -> web.Response:
    return json_ok(request.app[TARGET].effective_config())


jobs_routes = web.RouteTableDef()


@jobs_routes.get("/v1/jobs")
async def get_jobs(request: web.Request) -> web.Response:
    return json_ok({"jobs": [job.as_dict() for job in request.app[JOBS].describe()]})


@jobs_routes.post("/v1/jobs/{job_id}/run")
async def post_job_run(request: web.Request) -> web.Response:
    try:
        job = request.app[JOBS].run_now(request.match_info["job_id"])
    except JobError as error:
        raise from_domain(error) from error
    return json_ok({"id": job.id, "started": True}, status=202)


report_routes = web.RouteTableDef()


@report_routes.get("/v1/alerts")
async def get_alerts(request: web.Request) -> web.Response:
    return json_ok(request.app[REPORTS].alerts_report())


@report_routes.get("/v1/memory")
async def get_memory(request: web.Request) -> web.Response:
    return json_ok(request.app[REPORTS].memory_history())


# The metrics port's latency and request reports, also on the socket: the port may be
# off (metrics.listen: null) and `jarvisctl top` must still see them.
@report_routes.get("/v1/metrics/latency")
async def get_latency(request: web.Request) -> web.Response:
    return json_ok(request.app[REPORTS].latency_report())


@report_routes.get("/v1/metrics/requests")
async def get_requests(request: web.Request) -> web.Response:
    """Recent requests per endpoint; `?window=SECONDS` narrows the 300 s default."""
    reports = request.app[REPORTS]
    horizon = reports.requests_horizon_seconds
    raw = request.query.get("window", "300")
    try:
        window = float(raw)
    except ValueError:
        window = 0.0
    if not 1 <= window <= horizon:
        raise bad_request(f"window must be seconds between 1 and {horizon}, got {raw!r}")
    return json_ok(reports.requests_report(window))


def create_control_app(target: ControlTarget) -> web.Application:
    app = web.Application(middlewares=[observe, guard], client_max_size=HARD_BODY_LIMIT)
    app[TARGET] = target
    app[BUCKET] = TokenBucket(target.config.control.rate_limit)
    app.add_routes(routes)
    return app


def add_jobs_routes(app: web.Application, jobs: JobsTarget) -> None:
    app[JOBS] = jobs
    app.add_routes(jobs_routes)


def add_report_routes(app: web.Application, reports: ReportsTarget) -> None:
    app[REPORTS] = reports
    app.add_routes(report_routes)
