"""Reading one note for a client: by path or title, its links both ways, its text from disk."""

from jarvisd.notes.service import (
    BadNoteRequest,
    NoteError,
    NoteNotFoundError,
    NotesService,
    NoteView,
    TitleMatch,
)

__all__ = [
    "BadNoteRequest",
    "NoteError",
    "NoteNotFoundError",
    "NoteView",
    "NotesService",
    "TitleMatch",
]
