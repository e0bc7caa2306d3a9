"""Control-socket route for reading one note: `GET /v1/notes?path=` or `?title=`.

The reply is the stored note (title, frontmatter, aliases, tags, headings,
links out with where each resolves, backlinks) plus its content read from
disk. A path that leaves the vault (`..`, absolute, a symlink out) is refused
with 400; an unknown note or vault is 404. Without `vault=` every vault is
looked in. A title lookup says which note it chose and why (`match`), and lists
the others when several match; so does any lookup that finds the note in
several vaults (`match.vaults`).
"""

from __future__ import annotations

from aiohttp import web

from jarvisd.api.errors import ApiError, bad_request, json_ok
from jarvisd.notes.service import NoteError, NotesService

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
        raise ApiError(error.status, error.code, str(error)) from error
    return json_ok(view.as_dict())


def add_notes_routes(app: web.Application, notes: NotesService) -> None:
    app[NOTES] = notes
    app.add_routes(routes)
