"""The MCP server's one way to the daemon: socket requests off the event loop, errors as text.

`ControlClient` is blocking (http.client over AF_UNIX) and opens a connection
per request, so a daemon that restarts between two calls is simply found
again on the next one: there is no session to repair. Every failure becomes a
`DaemonFailure` whose text says what happened and what to do about it, in
words a model can act on; the tools turn it into an `isError` result.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio.to_thread

from jarvisd.cli.client import ControlClient, DaemonError, DaemonUnreachable

START_HINT = (
    "Start it (`jarvisd`, or `systemctl --user start jarvisd`) and call again: this MCP "
    "server keeps running and reaches the daemon on the next call."
)
BUSY_HINT = (
    "It may be loading its model or busy indexing: call again in a moment (a longer wait: "
    "`jarvisctl --timeout 120 mcp` in the client's configuration)."
)
# What to do after each kind of refusal, by HTTP status; the daemon's message says what.
_HINTS = {
    400: "Fix that argument and call again.",
    403: "Run the MCP client as the user that runs jarvisd.",
    404: "Check the name: `search` finds notes by their words, `vault_status` lists the "
    "vaults, and a note is named by its vault-relative path or its title.",
    409: "Wait for the running work to finish and call again.",
    413: "Send a smaller request.",
    422: "Fix the configuration the message names.",
    429: "Too many calls at once: wait a second and call again.",
    502: "The graph server failed the query; the rest of jarvisd keeps serving. "
    "Call again later, or ask the user to check the graph server.",
    503: "That part of jarvisd is unavailable for now; the rest keeps serving. Call again later.",
}


class DaemonFailure(Exception):
    """A call the daemon could not answer: `text` for the model, `error` for structure."""

    def __init__(self, text: str, error: dict[str, Any]) -> None:
        super().__init__(text)
        self.text = text
        self.error = error


def unreachable(error: DaemonUnreachable) -> DaemonFailure:
    """What to do depends on why: nothing listens, the socket is not ours, or no answer in time."""
    cause = error.__cause__
    if isinstance(cause, PermissionError):
        hint, code = "Run the MCP client as the user that runs jarvisd.", "forbidden"
    elif isinstance(cause, TimeoutError):
        hint, code = BUSY_HINT, "timeout"
    else:
        hint, code = START_HINT, "unreachable"
    text = f"jarvisd is not reachable: {error}. {hint}"
    return DaemonFailure(text, {"status": None, "code": code, "message": str(error)})


def refused(error: DaemonError) -> DaemonFailure:
    hint = _HINTS.get(error.status, "Call again later." if error.status >= 500 else "")
    text = f"jarvisd refused the request ({error.status} {error.code}): {error.message}"
    body = {"status": error.status, "code": error.code, "message": error.message}
    if parameter := (error.body.get("error") or {}).get("parameter"):
        body["parameter"] = parameter
    return DaemonFailure(f"{text}. {hint}".rstrip(), body)


class DaemonBridge:
    """Requests to jarvisd's control socket from async code, in a worker thread each."""

    def __init__(self, client: ControlClient) -> None:
        self.client = client

    async def get(self, route: str, /, **query: Any) -> Any:
        """The decoded reply to `GET route?query` (None values are left out)."""
        call = functools.partial(self.client.request, "GET", route, query=query)
        try:
            return await anyio.to_thread.run_sync(call)
        except DaemonUnreachable as error:
            raise unreachable(error) from error
        except DaemonError as error:
            raise refused(error) from error

    async def post(self, route: str, body: Any, /, timeout: float | None = None) -> Any:
        """The decoded reply to `POST route` with a JSON body."""
        call = functools.partial(self.client.request, "POST", route, body=body, timeout=timeout)
        try:
            return await anyio.to_thread.run_sync(call)
        except DaemonUnreachable as error:
            raise unreachable(error) from error
        except DaemonError as error:
            raise refused(error) from error

    async def capabilities(self) -> frozenset[str]:
        """What the daemon serves (its `/v1/status`); empty when it cannot be reached."""
        try:
            status = await self.get("/v1/status")
        except DaemonFailure:
            return frozenset()
        return frozenset(str(name) for name in status.get("capabilities") or ())
