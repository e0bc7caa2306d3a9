"""The store's search indexes (BM25, HNSW), maintenance, extensions and threads."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures_store import DIMENSION, make_note, storage_config, unit_vectors, vectors_for

from jarvisd.store import FTS_SCHEMA, ExtensionMissingError, Store
from jarvisd.store.connection import extension_path


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "jarvis.duckdb"


@pytest.fixture
def store(database: Path) -> Iterator[Store]:
    opened = Store(database, storage_config())
    yield opened
    opened.close()


def bm25(store: Store, query: str) -> list[tuple[str, str]]:
    """(note path, chunk text) of the BM25 hits, best first."""
    rows = (
        store.reader()
        .execute(
            f"""
        SELECT n.path, c.text FROM (
            SELECT id, {FTS_SCHEMA}.match_bm25(id, ?) AS score FROM chunks
        ) hits JOIN chunks c ON c.id = hits.id JOIN notes n ON n.id = c.note_id
        WHERE hits.score IS NOT NULL ORDER BY hits.score DESC
        """,
            [query],
        )
        .fetchall()
    )
    return [(str(path), str(text)) for path, text in rows]


def fill(store: Store, notes: int, chunks: int = 3, vault: str = "v") -> None:
    for index in range(notes):
        note = make_note(f"n/{index}.md", [f"chunk {index} {part}" for part in range(chunks)])
        store.write_note(vault, note, vectors_for(note, index), 1, 1)


def nearest_sql(limit: int) -> str:
    return (
        f"SELECT id FROM chunks ORDER BY array_cosine_distance(embedding, "
        f"?::FLOAT[{DIMENSION}]) LIMIT {limit}"
    )


# -------------------------------------------------------------------------- BM25


def test_bm25_finds_the_right_chunk_after_a_rebuild(store: Store) -> None:
    notes = [
        make_note(
            "Coffee/Espresso.md",
            [
                "Dial in the grinder until the shot runs 28 seconds.",
                "Steam the milk to 60 degrees.",
            ],
        ),
        make_note("Baking/Sourdough.md", ["Feed the starter with rye flour every morning."]),
        make_note("Daily/2024-05-01.md", ["Met Anna about the café budget."], title="May Day"),
    ]
    for seed, note in enumerate(notes):
        store.write_note("v", note, vectors_for(note, seed), 1, 1)
    assert not store.has_fts_index
    store.rebuild_fts()
    assert store.has_fts_index
    assert bm25(store, "sourdough starter")[0] == (
        "Baking/Sourdough.md",
        "Feed the starter with rye flour every morning.",
    )
    assert bm25(store, "steaming")[0] == ("Coffee/Espresso.md", "Steam the milk to 60 degrees.")
    assert bm25(store, "cafe")[0][0] == "Daily/2024-05-01.md"  # accents stripped
    assert [path for path, _ in bm25(store, "may day")] == ["Daily/2024-05-01.md"]  # the title
    assert [path for path, _ in bm25(store, "28")] == ["Coffee/Espresso.md"]  # digits kept
    assert bm25(store, "nonexistentword") == []


def test_a_stale_bm25_index_never_returns_wrong_text(store: Store) -> None:
    note = make_note("a.md", ["espresso shot"])
    store.write_note("v", note, vectors_for(note), 1, 1)
    store.finalize(["v"])
    rewritten = make_note("a.md", ["bread dough"])
    store.write_note("v", rewritten, vectors_for(rewritten), 2, 2)
    # Until the next rebuild the old chunk's id matches nothing, the new one is missing.
    assert bm25(store, "espresso") == []
    assert bm25(store, "bread") == []
    assert "fts_rebuild" in dict(store.finalize(["v"]))
    assert bm25(store, "bread") == [("a.md", "bread dough")]


# -------------------------------------------------------------------------- HNSW


def test_hnsw_index_with_cosine_is_used_by_nearest_neighbour_queries(database: Path) -> None:
    store = Store(database, storage_config(enabled=True, m=8, ef_construction=64, ef_search=64))
    try:
        fill(store, 100)
        assert not store.has_vector_index
        assert store.ensure_vector_index()
        assert store.has_vector_index
        query = unit_vectors(1, 999)[0].tolist()
        reader = store.reader()
        plan = reader.execute("EXPLAIN " + nearest_sql(5), [query]).fetchall()[0][1]
        assert "HNSW_INDEX_SCAN" in plan
        found = [row[0] for row in reader.execute(nearest_sql(5), [query]).fetchall()]
        matrix = store.chunk_matrix()
        exact = matrix.ids[np.argsort(-(matrix.vectors @ np.asarray(query)))[:5]]
        assert found == exact.tolist()
        setting = reader.execute("SELECT current_setting('hnsw_ef_search')").fetchone()
        assert setting == (64,)
        sql = reader.execute(
            "SELECT sql FROM duckdb_indexes() WHERE index_name = ?", ["chunks_embedding_hnsw"]
        ).fetchone()
        assert sql is not None and "HNSW" in sql[0]
    finally:
        store.close()


def test_reopening_a_database_with_an_hnsw_index_then_writing_works(database: Path) -> None:
    config = storage_config(enabled=True)
    store = Store(database, config)
    fill(store, 20)
    store.ensure_vector_index()
    store.close()

    again = Store(database, config)
    try:
        assert again.has_vector_index
        note = make_note("late.md", ["written after reopening"])
        vector = unit_vectors(1, 4242)
        again.write_note("v", note, vector, 1, 1)
        again.delete_note("v", "n/0.md")
        reader = again.reader()
        query = vector[0].tolist()
        plan = reader.execute("EXPLAIN " + nearest_sql(1), [query]).fetchall()[0][1]
        assert "HNSW_INDEX_SCAN" in plan
        nearest = reader.execute(nearest_sql(1), [query]).fetchone()
        stored = reader.execute(
            "SELECT c.id FROM chunks c JOIN notes n ON n.id = c.note_id WHERE n.path = 'late.md'"
        ).fetchone()
        assert nearest == stored
    finally:
        again.close()


def test_hnsw_follows_the_config(database: Path) -> None:
    store = Store(database, storage_config(enabled="auto", min_chunks=30))
    try:
        fill(store, 5)  # 15 chunks
        assert not store.ensure_vector_index()
        fill(store, 10)  # 30 chunks
        assert store.ensure_vector_index() and store.has_vector_index
        assert index_names(store) == {"chunks_embedding_hnsw", "chunks_note_id"}
        store.reconfigure(storage_config(enabled="auto", min_chunks=30, m=8))
        assert store.ensure_vector_index()  # rebuilt with the new M
        meta = store.reader().execute("SELECT value FROM meta WHERE key = 'hnsw.parameters'")
        assert meta.fetchone() == ("metric=cosine,m=8,ef_construction=200",)
        store.reconfigure(storage_config(enabled=False))
        assert not store.ensure_vector_index()
        assert not store.has_vector_index
        assert index_names(store) == set()
    finally:
        store.close()


def index_names(store: Store) -> set[str]:
    rows = store.reader().execute("SELECT index_name FROM duckdb_indexes()").fetchall()
    return {str(row[0]) for row in rows}


def test_vector_reads_by_index_and_exact_agree_and_survive_rewrites(database: Path) -> None:
    """nearest_chunks (HNSW) and chunk_similarities (exact, by note) over notes rewritten
    and deleted while both indexes exist."""
    store = Store(database, storage_config(enabled=True))
    try:
        fill(store, 30)
        store.ensure_vector_index()
        for number in range(0, 30, 3):  # rewrite every third note, delete one
            note = make_note(f"n/{number}.md", [f"rewritten {number}", f"again {number}"])
            store.write_note("v", note, unit_vectors(2, 5000 + number), 2, 2)
        store.delete_note("v", "n/1.md")
        matrix = store.chunk_matrix()
        query = unit_vectors(1, 77)[0]
        exact = matrix.vectors @ query
        ids, similarities = store.nearest_chunks(query, 5)
        assert ids.tolist() == matrix.ids[np.argsort(-exact)[:5]].tolist()
        assert np.allclose(similarities, np.sort(exact)[::-1][:5], atol=1e-5)
        note_ids = [
            int(row[0])
            for row in store.reader().execute("SELECT id FROM notes ORDER BY id").fetchall()
        ][::4]
        chunk_ids, cosines = store.chunk_similarities(query, note_ids)
        listed = ",".join(map(str, note_ids))
        sql = f"SELECT id FROM chunks WHERE note_id IN ({listed}) ORDER BY id"
        wanted = store.reader().execute(sql).fetchall()
        assert sorted(chunk_ids.tolist()) == [int(row[0]) for row in wanted]
        by_id = dict(zip(matrix.ids.tolist(), exact.tolist(), strict=True))
        assert np.allclose(cosines, [by_id[int(i)] for i in chunk_ids], atol=1e-5)
        everything, _ = store.chunk_similarities(query, None)
        assert sorted(everything.tolist()) == sorted(matrix.ids.tolist())
        assert store.chunk_similarities(query, [])[0].shape == (0,)
    finally:
        store.close()


# ------------------------------------------------------------------- maintenance


def test_maintenance_runs_and_times_its_steps(database: Path) -> None:
    store = Store(database, storage_config(enabled=True))
    try:
        fill(store, 10)
        assert [name for name, _ in store.maintenance()] == ["analyze", "fts_rebuild", "checkpoint"]
        store.ensure_vector_index()
        store.delete_note("v", "n/1.md")
        steps = store.maintenance()
        assert [name for name, _ in steps] == [
            "analyze",
            "hnsw_compact",
            "fts_rebuild",
            "checkpoint",
        ]
        assert all(seconds >= 0 for _, seconds in steps)
        # The rebuild settled the BM25 debt; link resolution is finalize's job.
        pending = store.reader().execute("SELECT task FROM pending_work").fetchall()
        assert pending == [("links:v",)]
    finally:
        store.close()


def test_pending_work_survives_a_restart(database: Path) -> None:
    store = Store(database, storage_config())
    fill(store, 2)
    store.close()  # no finalize: the derived work is still owed
    again = Store(database, storage_config())
    try:
        assert again.stats()["pending_work"] == 2
        names = [name for name, _ in again.finalize(["v"])]
        assert names == ["links:v", "fts_rebuild", "vector_index"]
        assert again.stats()["pending_work"] == 0
    finally:
        again.close()


# ------------------------------------------------------ extensions and settings


def test_extensions_come_from_the_wheels_with_autoloading_off(store: Store) -> None:
    reader = store.reader()
    loaded = dict(
        reader.execute(
            "SELECT extension_name, loaded FROM duckdb_extensions() "
            "WHERE extension_name IN ('fts', 'vss')"
        ).fetchall()
    )
    assert loaded == {"fts": True, "vss": True}
    settings = reader.execute(
        "SELECT current_setting('autoinstall_known_extensions'), "
        "current_setting('autoload_known_extensions')"
    ).fetchone()
    assert settings == (False, False)
    for name, package in (("fts", "duckdb_extension_fts"), ("vss", "duckdb_extension_vss")):
        assert extension_path(name, package).is_file()


def test_a_missing_extension_package_is_named(store: Store) -> None:
    with pytest.raises(ExtensionMissingError, match="install the Python package `no-such-pkg=="):
        extension_path("fts", "no_such_pkg")


def test_settings_apply_live(store: Store) -> None:
    store.reconfigure(storage_config(ef_search=50).model_copy(update={"threads": 2}))
    row = (
        store.reader()
        .execute("SELECT current_setting('threads'), current_setting('hnsw_ef_search')")
        .fetchone()
    )
    assert row == (2, 50)


# ----------------------------------------------------------------------- threads


def in_thread(work: Any) -> Any:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join()
    return result[0]


def test_cursors_of_other_threads_share_the_loaded_extensions(store: Store) -> None:
    """A cursor is another connection to the same instance: no LOAD needed on it."""
    store.reader().execute("CREATE TABLE scratch (vector FLOAT[3])")
    store.reader().execute("CREATE INDEX scratch_hnsw ON scratch USING HNSW (vector)")

    def insert_elsewhere() -> object:
        cursor = store.reader()
        cursor.execute("INSERT INTO scratch VALUES ([1, 2, 3])")
        return cursor.execute("SELECT count(*) FROM scratch").fetchone()

    assert in_thread(insert_elsewhere) == (1,)


def test_each_thread_reads_on_its_own_cursor_while_one_writes(store: Store) -> None:
    fill(store, 5)
    assert in_thread(store.reader) is not store.reader()
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                states = store.file_states("v")
                matrix = store.chunk_matrix()
                assert len(matrix) >= 3 * len(states) - 3  # a snapshot, never torn
        except BaseException as error:  # the assertion or a DuckDB error
            errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    for index in range(5, 40):
        note = make_note(f"n/{index}.md", ["a", "b", "c"])
        store.write_note("v", note, vectors_for(note, index), 1, 1)
    done.set()
    for thread in readers:
        thread.join()
    assert errors == []
    assert store.stats()["chunks"] == 120


def test_committed_writes_survive_a_killed_process(database: Path) -> None:
    """No close, no checkpoint: what was committed comes back from the WAL, HNSW included."""
    script = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from fixtures_store import make_note, storage_config, unit_vectors
from jarvisd.store import Store
store = Store({str(database)!r}, storage_config(enabled=True))
for index in range(10):
    store.write_note("v", make_note(f"n/{{index}}.md", ["a", "b"]), unit_vectors(2, index), 1, 1)
store.ensure_vector_index()
store.checkpoint()
for index in range(10, 20):
    store.write_note("v", make_note(f"n/{{index}}.md", ["a", "b"]), unit_vectors(2, index), 1, 1)
store.delete_note("v", "n/0.md")
os._exit(9)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 9, result.stderr
    store = Store(database, storage_config(enabled=True))
    try:
        assert len(store.file_states("v")) == 19
        assert store.has_vector_index
        store.write_note("v", make_note("after.md", ["c"]), unit_vectors(1, 77), 1, 1)
        assert store.stats()["chunks"] == 39
    finally:
        store.close()
