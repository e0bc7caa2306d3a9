"""Control-socket routes for questions.

    POST /v1/ask            {"question": "...", "stream": false}
    GET  /v1/ask/stats      template cache, LLM state, answers per path
    POST /v1/models/unload  free the LLM now (`jarvisctl gc --models`)

With `"stream": true` the reply is JSON lines: `{"type": "token", "text"}` as
the LLM writes (the llm path only), then one `{"type": "done", ...}` holding
the same object a plain request gets. A client that goes away mid-stream
stops the generation within one token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from aiohttp import web

from jarvisd.api.control import read_json
from jarvisd.api.errors import json_ok
from jarvisd.ask import AskReply, AskRequest, Token
from jarvisd.logs import get_logger

log = get_logger("jarvisd.api.ask")


class Asker(Protocol):
    def parse(self, body: Mapping[str, Any]) -> AskRequest: ...

    def ask(self, request: AskRequest) -> AsyncIterator[Token | AskReply]: ...

    def stats(self) -> dict[str, Any]: ...

    async def unload_models(self) -> dict[str, Any]: ...


ASKER: web.AppKey[Asker] = web.AppKey("asker")
routes = web.RouteTableDef()


@routes.post("/v1/ask")
async def post_ask(request: web.Request) -> web.StreamResponse:
    asker = request.app[ASKER]
    question = asker.parse(await read_json(request))
    events = asker.ask(question)
    # The first event before any byte is sent: a refusal (busy, bad question) is a
    # plain error reply with its status, not a broken stream.
    first = await anext(events)
    if question.stream:
        return await _stream(request, first, events)
    return await _collect(request, first, events)


async def _collect(
    request: web.Request, event: Token | AskReply, events: AsyncIterator[Token | AskReply]
) -> web.StreamResponse:
    while not isinstance(event, AskReply):
        transport = request.transport
        if transport is None or transport.is_closing():
            await _close(events)  # nobody is waiting for this answer: stop generating it
            return web.Response(status=499)
        event = await anext(events)
    await _close(events)
    return json_ok(event.as_dict())


async def _stream(
    request: web.Request, event: Token | AskReply, events: AsyncIterator[Token | AskReply]
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    try:
        while True:
            if isinstance(event, AskReply):
                await _close(events)
                await response.write(_line({"type": "done", **event.as_dict()}))
                break
            await response.write(_line(event.as_dict()))
            event = await anext(events)
    except ConnectionError:
        await _close(events)
        log.info("ask.client_gone")
        return response
    except Exception as error:  # headers are sent: say it in the stream, then end it
        await _close(events)
        log.error("ask.stream_failed", exc_info=True)
        failure = {"code": "internal", "message": f"{type(error).__name__}: {error}"}
        await response.write(_line({"type": "error", "error": failure}))
    await response.write_eof()
    return response


async def _close(events: AsyncIterator[Token | AskReply]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


def _line(event: dict[str, Any]) -> bytes:
    return (json.dumps(event, default=str) + "\n").encode()


@routes.get("/v1/ask/stats")
async def get_ask_stats(request: web.Request) -> web.Response:
    return json_ok(request.app[ASKER].stats())


@routes.post("/v1/models/unload")
async def post_unload(request: web.Request) -> web.Response:
    return json_ok(await request.app[ASKER].unload_models())


def add_ask_routes(app: web.Application, asker: Asker) -> None:
    app[ASKER] = asker
    app.add_routes(routes)
