"""Control-socket routes for search.

    GET /v1/search?q=...&mode=&limit=&offset=&threshold=&tag=&folder=&vault=&since=&before=
    GET /v1/search/stats

A request past a bound (query length, limit, offset, threshold, a bad date or
one out of range) is a 400 whose message names the bound and the config key
that sets it; a `vault=` that names no configured vault is a 404.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from jarvisd.api.errors import json_ok
from jarvisd.search import SearchService


class SearchTarget(Protocol):
    @property
    def search(self) -> SearchService: ...


SEARCH_TARGET: web.AppKey[SearchTarget] = web.AppKey("search_target")
routes = web.RouteTableDef()


@routes.get("/v1/search")
async def get_search(request: web.Request) -> web.Response:
    service = request.app[SEARCH_TARGET].search
    return json_ok((await service.search_params(request.query)).as_dict())


@routes.get("/v1/search/stats")
async def get_search_stats(request: web.Request) -> web.Response:
    return json_ok(request.app[SEARCH_TARGET].search.stats())


def add_search_routes(app: web.Application, target: SearchTarget) -> None:
    app[SEARCH_TARGET] = target
    app.add_routes(routes)
