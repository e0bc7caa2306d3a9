"""Vector reads answered inside DuckDB: the HNSW nearest chunks, and exact cosines.

Search answers from an in-memory matrix while the store has no HNSW index
(`search.snapshot`). Once it has one (`storage.hnsw`), the matrix is not held
and semantic search asks DuckDB instead:

- `nearest_chunks`: `ORDER BY array_cosine_distance(embedding, <query>) LIMIT k`
  over the HNSW-indexed vector table (see `indexes`), the one query shape
  DuckDB's vss extension answers from the index (a WHERE, a JOIN or
  `array_cosine_similarity ... DESC` turn it into a full scan).
- `chunk_similarities`: exact cosines of the chunks of given notes (or of all),
  for fusion candidates the index did not return and for narrow filters.

The query vector goes into the SQL as a literal: bound as a FLOAT[n] list
parameter it costs ~20-50 ms to convert, as a literal ~0.2 ms. The literal is
built here from finite floats only, and note ids are formatted integers, so
nothing a client sends reaches the SQL text.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import numpy.typing as npt

from jarvisd.store.schema import VECTOR_TABLE_NAME

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def vector_literal(vector: npt.NDArray[np.float32], dimension: int) -> str:
    """`'[x, ...]'::FLOAT[n]` for a finite query vector of the store's dimension."""
    values = np.asarray(vector, dtype=np.float32).reshape(-1)
    if values.shape[0] != dimension:
        raise ValueError(f"query vector has {values.shape[0]} values, the store {dimension}")
    if not np.all(np.isfinite(values)):
        raise ValueError("query vector holds a value that is not finite")
    body = ",".join(format(float(value), ".9g") for value in values)
    return f"'[{body}]'::FLOAT[{dimension}]"


def nearest_chunks(
    cursor: duckdb.DuckDBPyConnection, table: str, literal: str, k: int
) -> tuple[IntArray, FloatArray]:
    """The `k` chunks nearest the query by the HNSW index: ids and cosine similarities."""
    rows = cursor.execute(nearest_sql(table, literal, k)).fetchnumpy()
    ids = np.asarray(rows["id"], dtype=np.int64)
    return ids, 1.0 - np.asarray(rows["distance"], dtype=np.float64)


def nearest_sql(table: str, literal: str, k: int) -> str:
    """The one shape of query DuckDB answers from the HNSW index (a test EXPLAINs it)."""
    if not VECTOR_TABLE_NAME.fullmatch(table):
        raise ValueError(f"not a vector table: {table!r}")
    return (
        f"SELECT id, array_cosine_distance(embedding, {literal}) AS distance "
        f"FROM {table} ORDER BY distance LIMIT {int(k)}"
    )


def chunk_similarities(
    cursor: duckdb.DuckDBPyConnection, literal: str, note_ids: Sequence[int] | None
) -> tuple[IntArray, FloatArray]:
    """Exact cosine of every chunk of the given notes (None: of every note)."""
    where = ""
    if note_ids is not None:
        if not note_ids:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        where = "WHERE note_id IN (" + ",".join(str(int(note)) for note in note_ids) + ")"
    rows = cursor.execute(
        f"SELECT id, array_cosine_similarity(embedding, {literal}) AS similarity "
        f"FROM chunks {where}"
    ).fetchnumpy()
    return (
        np.asarray(rows["id"], dtype=np.int64),
        np.asarray(rows["similarity"], dtype=np.float64),
    )
