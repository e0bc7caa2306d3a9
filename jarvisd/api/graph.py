"""Control-socket routes for the link graph: `/v1/graph/...`, all GET, all JSON.

A note is named by `path=` (vault-relative, `.md` optional) or, when no
stored note has that path, by its title or an alias. `vault=` picks a vault;
without it every vault is looked in, a reply's `match` lists the vaults a name
was found in, and the reports (unresolved, orphans) come one per vault.
Errors: 404 unknown note or vault, 400 bad depth, direction or limit, 503 the
graph server cannot be reached, 502 it answered with a failure; every error
names what to fix.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from jarvisd.api.errors import bad_request, from_domain, json_ok
from jarvisd.graph import GraphError
from jarvisd.graph.service import DEFAULT_LIMIT, GraphService
from jarvisd.notes.service import NoteError

GRAPH: web.AppKey[GraphService] = web.AppKey("graph")
routes = web.RouteTableDef()


def required(request: web.Request, name: str) -> str:
    value = request.query.get(name, "").strip()
    if not value:
        raise bad_request(f"the {name}= parameter is required (a note path or title)")
    return value


def integer(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a whole number, got {raw!r}") from None


def vault_of(request: web.Request) -> str | None:
    return request.query.get("vault") or None


async def answer(work: Callable[[], Awaitable[Any]]) -> web.Response:
    """Run a query; graph and note errors become `{"error": ...}` with their status."""
    try:
        result = await work()
    except (GraphError, NoteError) as error:
        raise from_domain(error) from error
    return json_ok(result.as_dict() if hasattr(result, "as_dict") else result)


@routes.get("/v1/graph/links")
async def get_links(request: web.Request) -> web.Response:
    graph, note = request.app[GRAPH], required(request, "path")
    return await answer(lambda: graph.links(vault_of(request), note))


@routes.get("/v1/graph/backlinks")
async def get_backlinks(request: web.Request) -> web.Response:
    graph, note = request.app[GRAPH], required(request, "path")
    return await answer(lambda: graph.backlinks(vault_of(request), note))


@routes.get("/v1/graph/neighbours")
async def get_neighbours(request: web.Request) -> web.Response:
    graph, note = request.app[GRAPH], required(request, "path")
    depth = integer(request, "depth", 1)
    limit = integer(request, "limit", DEFAULT_LIMIT)
    direction = request.query.get("direction", "both")
    return await answer(lambda: graph.neighbours(vault_of(request), note, depth, direction, limit))


@routes.get("/v1/graph/path")
async def get_path(request: web.Request) -> web.Response:
    graph = request.app[GRAPH]
    source, target = required(request, "from"), required(request, "to")
    direction = request.query.get("direction", "both")
    return await answer(lambda: graph.path(vault_of(request), source, target, direction))


@routes.get("/v1/graph/unresolved")
async def get_unresolved(request: web.Request) -> web.Response:
    graph = request.app[GRAPH]
    return await answer(lambda: graph.unresolved(vault_of(request)))


@routes.get("/v1/graph/orphans")
async def get_orphans(request: web.Request) -> web.Response:
    graph = request.app[GRAPH]
    return await answer(lambda: graph.orphans(vault_of(request)))


@routes.get("/v1/graph")
async def get_graph(request: web.Request) -> web.Response:
    return json_ok(request.app[GRAPH].status())


@routes.post("/v1/graph/sync")
async def post_sync(request: web.Request) -> web.Response:
    return await answer(request.app[GRAPH].sync_now)


def add_graph_routes(app: web.Application, graph: GraphService) -> None:
    app[GRAPH] = graph
    app.add_routes(routes)
