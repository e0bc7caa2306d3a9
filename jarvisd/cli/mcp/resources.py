"""Each note as a resource, `note://{vault}/{+path}`, for clients that attach notes to a chat.

`{+path}` is RFC 6570's reserved expansion: the vault-relative path keeps its
slashes (`note://example/Coffee/Beans.md`); spaces and other reserved
characters are percent-encoded. The listing is paged through the daemon's
`/v1/notes/list` (vault after vault, in path order), so its size is bounded
whatever the vault's; the cursor is opaque to the client and names the vault
and the last path given.

Resources have no `isError` result: a note that is not there is a JSON-RPC
error (invalid params, as the SDK's own servers answer), whose message says
what happened and what to do.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import quote

import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import UriTemplate

from jarvisd.cli.mcp.bridge import DaemonBridge, DaemonFailure

TEMPLATE = "note://{vault}/{+path}"
# Notes per resources/list page: the SDK's clients fetch page after page, and 100
# notes (~20 kB of JSON) answers in a few ms through the socket.
PAGE_SIZE = 100
MARKDOWN = "text/markdown"
_TEMPLATE = UriTemplate.parse(TEMPLATE)


def note_uri(vault: str, path: str) -> str:
    return f"note://{quote(vault, safe='')}/{quote(path, safe='/')}"


def template() -> types.ResourceTemplate:
    return types.ResourceTemplate(
        name="note",
        title="A note of the vault",
        uri_template=TEMPLATE,
        description="One markdown note by vault name and vault-relative path, e.g. "
        "note://example/Coffee/Espresso.md (the vault_status tool lists the vaults).",
        mime_type=MARKDOWN,
    )


def _encode(vault: str, after: str | None) -> str:
    raw = json.dumps({"vault": vault, "after": after}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode(cursor: str) -> tuple[str, str | None]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        vault, after = value["vault"], value["after"]
    except (binascii.Error, ValueError, TypeError, KeyError) as error:
        raise MCPError(
            types.INVALID_PARAMS,
            "this cursor did not come from this server's resources/list; "
            "list again without a cursor",
        ) from error
    if not isinstance(vault, str) or not (after is None or isinstance(after, str)):
        raise MCPError(types.INVALID_PARAMS, "malformed cursor; list again without a cursor")
    return vault, after


async def _get(daemon: DaemonBridge, route: str, /, **query: Any) -> Any:
    """A daemon reply; a refusal as the JSON-RPC error resources answer with."""
    try:
        return await daemon.get(route, **query)
    except DaemonFailure as failure:
        status = failure.error.get("status")
        code = types.INVALID_PARAMS if status in (400, 404) else types.INTERNAL_ERROR
        raise MCPError(code, failure.text, failure.error) from failure


async def list_page(
    daemon: DaemonBridge, cursor: str | None, limit: int = PAGE_SIZE
) -> types.ListResourcesResult:
    """One page of notes (at most `limit`), vault after vault; `next_cursor` when more follow."""
    config = await _get(daemon, "/v1/config")
    vaults = [str(vault["name"]) for vault in config["config"].get("vaults") or []]
    if not vaults:
        return types.ListResourcesResult(resources=[])
    vault, after = _decode(cursor) if cursor else (vaults[0], None)
    if vault not in vaults:
        raise MCPError(
            types.INVALID_PARAMS,
            f"vault {vault!r} of this cursor is no longer configured; list again without a cursor",
        )
    page = await _get(daemon, "/v1/notes/list", vault=vault, cursor=after, limit=limit)
    resources = [
        types.Resource(
            uri=note_uri(vault, note["path"]),
            name=note["path"],
            title=note["title"],
            description=f"note in vault {vault}, modified {note['modified']}",
            mime_type=MARKDOWN,
            size=note["size"],
        )
        for note in page["notes"]
    ]
    following = vaults.index(vault) + 1
    next_cursor = None
    if page.get("next_cursor"):
        next_cursor = _encode(vault, page["next_cursor"])
    elif following < len(vaults):
        next_cursor = _encode(vaults[following], None)
    return types.ListResourcesResult(resources=resources, next_cursor=next_cursor)


async def read(daemon: DaemonBridge, uri: str) -> types.ReadResourceResult:
    match = _TEMPLATE.match(uri)
    vault, path = (match or {}).get("vault"), (match or {}).get("path")
    if not isinstance(vault, str) or not isinstance(path, str) or not vault or not path:
        raise MCPError(
            types.INVALID_PARAMS,
            f"no such resource {uri!r}: notes are note://VAULT/PATH, "
            "e.g. note://example/Coffee/Espresso.md",
        )
    note = await _get(daemon, "/v1/notes", vault=vault, path=path)
    if note.get("content") is None:
        raise MCPError(
            types.INTERNAL_ERROR,
            f"{path} in vault {vault} cannot be read: {note.get('content_error')}; "
            "jarvisd re-indexes it when the file changes",
        )
    contents = types.TextResourceContents(uri=uri, text=note["content"], mime_type=MARKDOWN)
    return types.ReadResourceResult(contents=[contents])
