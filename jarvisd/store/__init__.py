"""The DuckDB store: schema and migrations, one transaction per note, reads, BM25/HNSW, upkeep.

`Store` is the facade; the modules beside it hold one concern each:
`connection` (settings, extensions from their wheels), `schema` (migrations,
embedding identity), `writes` (a note's rows), `linking` (bulk link
resolution), `reads`, `columns` (the search snapshot's reads), `indexes`
(BM25 and HNSW), `maintenance`.
"""

from __future__ import annotations

from jarvisd.store.columns import (
    BM25Additions,
    BM25Columns,
    ChunkColumns,
    NoteRow,
    SnapshotPatchRead,
    SnapshotRead,
    SnapshotReads,
)
from jarvisd.store.connection import first_row
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
from jarvisd.store.indexes import VectorTable
from jarvisd.store.records import (
    Backlink,
    Changes,
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
    "BM25Additions",
    "BM25Columns",
    "Backlink",
    "Changes",
    "ChunkColumns",
    "ChunkMatrix",
    "EmbeddingMismatchError",
    "ExtensionMissingError",
    "FileState",
    "LinkKey",
    "NoteDetail",
    "NotePage",
    "NoteRow",
    "NoteSummary",
    "NoteWriteError",
    "OutgoingLink",
    "SchemaTooNewError",
    "SnapshotPatchRead",
    "SnapshotRead",
    "SnapshotReads",
    "StorageFullError",
    "StorageReadOnlyError",
    "Store",
    "StoreClosedError",
    "StoreError",
    "VectorTable",
    "first_row",
    "text_hash",
]
