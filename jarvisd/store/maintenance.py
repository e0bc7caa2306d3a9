"""Periodic upkeep, each step timed.

- ANALYZE refreshes the optimizer's statistics after many writes.
- BM25 needs nothing: each note write changes its postings (`store.bm25`).
- With an HNSW index, its vector table is rebuilt if anything changed since it
  was built (index runs wait for 20 %), so the chunks search scores exactly
  stay few.
- CHECKPOINT writes the WAL into the file and frees blocks of deleted rows for
  reuse. A plain CHECKPOINT runs beside open read transactions in DuckDB 1.5,
  so FORCE CHECKPOINT (which aborts them: searches would fail) is never used.

VACUUM is left out on purpose: in DuckDB it does nothing (VACUUM ANALYZE is
ANALYZE), and the file does not shrink short of copying the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import duckdb

Step = tuple[str, float]


def timed(name: str, action: Callable[[], object]) -> Step:
    started = time.perf_counter()
    action()
    return (name, time.perf_counter() - started)


def maintenance(
    connection: duckdb.DuckDBPyConnection,
    refresh_vector_index: Callable[[], object],
) -> list[Step]:
    """Every step with its duration in seconds; the caller holds the write lock."""
    steps = [timed("analyze", lambda: connection.execute("ANALYZE"))]
    steps.append(timed("vector_index", refresh_vector_index))
    steps.append(timed("checkpoint", lambda: connection.execute("CHECKPOINT")))
    return steps
