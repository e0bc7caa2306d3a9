"""Control-socket routes for indexing and maintenance, with streamed progress.

`POST /v1/index?wait=1` streams JSON lines (progress events, then one `done`
event with the run's report) so `jarvisctl index --wait` can draw a progress
bar; without `wait` it answers 202 at once and the run goes on in the daemon.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from aiohttp import web

from jarvisd.api.errors import ApiError, json_ok
from jarvisd.indexing.indexer import Indexer, IndexEvent, RunReport
from jarvisd.reports import MaintenanceReport


class IndexTarget(Protocol):
    """The knowledge component: its indexer, its runs and its maintenance."""

    @property
    def indexer(self) -> Indexer: ...

    def start_index_run(self, full: bool, trigger: str) -> asyncio.Task[RunReport]: ...

    async def run_maintenance(self) -> MaintenanceReport: ...


HEARTBEAT_SECONDS = 1.0
INDEX_TARGET: web.AppKey[IndexTarget] = web.AppKey("index_target")
routes = web.RouteTableDef()


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "0").lower()
    if value not in {"0", "1", "true", "false", "yes", "no", ""}:
        raise ApiError(400, "bad_request", f"{name} must be 0 or 1, got {value!r}")
    return value in {"1", "true", "yes", ""} and name in request.query


@routes.get("/v1/index")
async def get_index(request: web.Request) -> web.Response:
    indexer = request.app[INDEX_TARGET].indexer
    current = indexer.current
    return json_ok(
        {
            "running": indexer.running,
            "current": current.progress().as_dict() if current else None,
            "last_run": indexer.last.as_dict() if indexer.last else None,
            "index": indexer.stats,
        }
    )


@routes.post("/v1/index")
async def post_index(request: web.Request) -> web.StreamResponse:
    target = request.app[INDEX_TARGET]
    full, wait = _flag(request, "full"), _flag(request, "wait")
    if not wait:
        already = target.indexer.running
        target.start_index_run(full, "request")
        return json_ok({"started": True, "queued_after_current": already, "full": full}, status=202)
    return await _stream_run(request, target, full)


async def _stream_run(request: web.Request, target: IndexTarget, full: bool) -> web.StreamResponse:
    events: asyncio.Queue[IndexEvent] = asyncio.Queue()
    unsubscribe = target.indexer.subscribe(events.put_nowait)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    try:
        task = target.start_index_run(full, "request")
        while not task.done():
            getter = asyncio.ensure_future(events.get())
            done, _ = await asyncio.wait(
                {getter, task}, timeout=HEARTBEAT_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
                current = target.indexer.current
                if not done and current is not None:
                    # A window of long chunks can take a minute to encode: keep the
                    # client's bar (elapsed, ETA) moving and the connection alive.
                    await response.write(_line(current.progress().as_dict()))
                continue
            event = getter.result()
            # The final report comes from our own task (a `done` seen here may be the
            # end of a run that was already going when we asked).
            if not isinstance(event, RunReport):
                await response.write(_line(event.as_dict()))
        await response.write(_line(_finished(task.result())))
    finally:
        unsubscribe()
    await response.write_eof()
    return response


def _finished(report: RunReport) -> dict[str, Any]:
    """The stream's last line: the run's report."""
    return {"type": "done", "run": report.as_dict()}


def _line(event: dict[str, Any]) -> bytes:
    return (json.dumps(event, default=str) + "\n").encode()


@routes.post("/v1/maintenance")
async def post_maintenance(request: web.Request) -> web.Response:
    return json_ok((await request.app[INDEX_TARGET].run_maintenance()).as_dict())


def add_index_routes(app: web.Application, target: IndexTarget) -> None:
    app[INDEX_TARGET] = target
    app.add_routes(routes)
