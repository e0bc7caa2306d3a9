"""The DuckDB store: schema and migrations, one transaction per note, reads, BM25/HNSW, upkeep.

`Store` is the facade; the modules beside it hold one concern each:
`connection` (settings, extensions from their wheels), `schema` (migrations,
embedding identity), `writes` (a note's rows), `linking` (bulk link
resolution), `reads`, `indexes` (BM25 and HNSW), `maintenance`.
"""

from __future__ import annotations

from jarvisd.store.errors import (
    EmbeddingMismatchError,
    ExtensionMissingError,
    NoteWriteError,
    SchemaTooNewError,
    StorageFullError,
    StorageReadOnlyError,
    StoreClosedError,
    StoreError,
)
from jarvisd.store.facade import Store
from jarvisd.store.records import (
    Backlink,
    ChunkMatrix,
    FileState,
    LinkKey,
    NoteDetail,
    NotePage,
    NoteSummary,
    OutgoingLink,
)
from jarvisd.store.schema import LATEST_VERSION
from jarvisd.store.writes import text_hash

__all__ = [
    "LATEST_VERSION",
    "Backlink",
    "ChunkMatrix",
    "EmbeddingMismatchError",
    "ExtensionMissingError",
    "FileState",
    "LinkKey",
    "NoteDetail",
    "NotePage",
    "NoteSummary",
    "NoteWriteError",
    "OutgoingLink",
    "SchemaTooNewError",
    "StorageFullError",
    "StorageReadOnlyError",
    "Store",
    "StoreClosedError",
    "StoreError",
    "text_hash",
]
