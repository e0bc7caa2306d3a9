"""Control-socket routes for notes: read one (`GET /v1/notes?path=` or `?title=`),
list a vault's (`GET /v1/notes/list?vault=&cursor=&limit=`).

The reply is the stored note (title, frontmatter, aliases, tags, headings,
links out with where each resolves, backlinks) plus its content read from
disk. A path that leaves the vault (`..`, absolute, a symlink out) is refused
with 400; an unknown note or vault is 404. Without `vault=` every vault is
looked in. A title lookup says which note it chose and why (`match`), and lists
the others when several match; so does any lookup that finds the note in
several vaults (`match.vaults`).
A listing is in path order, `limit` notes a page (1..1000, default 100; 400 past it), and
`next_cursor` is what to pass as `cursor=` for the next page (null on the last).
"""

from __future__ import annotations

from aiohttp import web

from jarvisd.api.errors import bad_request, from_domain, json_ok
from jarvisd.notes.service import DEFAULT_LIST_LIMIT, NoteError, NotesService

NOTES: web.AppKey[NotesService] = web.AppKey("notes")
routes = web.RouteTableDef()


@routes.get("/v1/notes")
async def get_note(request: web.Request) -> web.Response:
    notes = request.app[NOTES]
    path, title = request.query.get("path"), request.query.get("title")
    if (path is None) == (title is None):
        raise bad_request("give exactly one of path= (vault-relative) or title=")
    vault = request.query.get("vault") or None
    try:
        if path is not None:
            view = await notes.lookup(vault, path, "path")
        else:
            view = await notes.lookup(vault, title or "", "title")
    except NoteError as error:
        raise from_domain(error) from error
    return json_ok(view.as_dict())


@routes.get("/v1/notes/list")
async def get_note_list(request: web.Request) -> web.Response:
    notes = request.app[NOTES]
    raw = request.query.get("limit") or str(DEFAULT_LIST_LIMIT)
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request(f"limit must be a whole number, got {raw!r}") from None
    try:
        vault = notes.vault(request.query.get("vault") or None)
        page = await notes.list_notes(vault, request.query.get("cursor") or None, limit)
    except NoteError as error:
        raise from_domain(error) from error
    return json_ok(
        {
            "vault": vault.name,
            "total": page.total,
            "limit": limit,
            "notes": [note.as_dict() for note in page.notes],
            "next_cursor": page.next_after,
        }
    )


def add_notes_routes(app: web.Application, notes: NotesService) -> None:
    app[NOTES] = notes
    app.add_routes(routes)
