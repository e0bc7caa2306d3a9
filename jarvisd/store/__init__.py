"""The DuckDB store: schema and migrations, one transaction per note, reads, BM25/HNSW, upkeep.

The only home of SQL in jarvisd (issue #13). Services import from
`jarvisd.store` only: `Store`, the records and arrays it hands back, its
errors and the recovery helpers below. The modules behind it are the store's
own and may change shape.

`Store` is the facade (`facade`: connections, writes, upkeep) with its reads
in `reading.StoreReads`; the modules beside them hold one concern each:
`connection` (settings, extensions from their wheels), `schema` (migrations,
embedding identity), `writes` (a note's rows), `linking` (bulk link
resolution), `reads` and `graph_reads` (the read statements), `columns` (the
search snapshot's reads), `bm25` (the keyword index, query stems, the SQL
reference scorer), `vectors` and `indexes` (HNSW), `maintenance`, `recovery`.
"""

from __future__ import annotations

from jarvisd.store.bm25 import K1 as BM25_K1
from jarvisd.store.bm25 import B as BM25_B
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
    VectorTableGoneError,
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
    SubjectMatrix,
)
from jarvisd.store.recovery import Recovery, damage_text, first_line, is_damage_while_serving
from jarvisd.store.schema import LATEST_VERSION
from jarvisd.store.writes import Subject, text_hash

__all__ = [
    "BM25_B",
    "BM25_K1",
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
    "Recovery",
    "SchemaTooNewError",
    "SnapshotPatchRead",
    "SnapshotRead",
    "SnapshotReads",
    "StorageFullError",
    "StorageReadOnlyError",
    "Store",
    "StoreClosedError",
    "StoreError",
    "Subject",
    "SubjectMatrix",
    "VectorTable",
    "VectorTableGoneError",
    "damage_text",
    "first_line",
    "first_row",
    "is_damage_while_serving",
    "text_hash",
]
