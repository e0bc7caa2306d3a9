"""Control-socket route for reading one note: `GET /v1/notes?path=` or `?title=`.

The reply is the stored note (title, frontmatter, aliases, tags, headings,
links out with where each resolves, backlinks) plus its content read from
disk. A path that leaves the vault (`..`, absolute, a symlink out) is refused
with 400; an unknown note or vault is 404. A title lookup says which note it
chose and why (`match`), and lists the others when several match.
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
    try:
        vault = notes.vault(request.query.get("vault") or None)
        if path is not None:
            view = await notes.read(vault, path)
        else:
            view = await notes.read_by_title(vault, title or "")
    except NoteError as error:
        raise ApiError(error.status, error.code, str(error)) from error
    return json_ok({"vault": vault.name, **view.as_dict()})


def add_notes_routes(app: web.Application, notes: NotesService) -> None:
    app[NOTES] = notes
    app.add_routes(routes)
