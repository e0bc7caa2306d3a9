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
from fixtures_store import make_note, storage_config, unit_vectors, vectors_for
from structlog.testing import capture_logs

from jarvisd.search.terms import Stemmer, query_stems
from jarvisd.store import (
    LATEST_VERSION,
    ExtensionMissingError,
    Store,
    VectorTableGoneError,
    vectors,
)
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
    """(note path, chunk text) of the BM25 hits, best first (the store's tables, in SQL)."""
    ids, scores = store.bm25_reference(query_stems(store, Stemmer(), query))
    cursor = store.reader()
    texts = {
        int(chunk): (str(path), str(text))
        for chunk, path, text in cursor.execute(
            "SELECT c.id, n.path, c.text FROM chunks c JOIN notes n ON n.id = c.note_id"
        ).fetchall()
    }
    ranked = sorted(zip(scores.tolist(), ids.tolist(), strict=True))
    return [texts[chunk] for _, chunk in reversed(ranked)]


def fill(store: Store, notes: int, chunks: int = 3, vault: str = "v") -> None:
    for index in range(notes):
        note = make_note(f"n/{index}.md", [f"chunk {index} {part}" for part in range(chunks)])
        store.write_note(vault, note, vectors_for(note, index), 1, 1)


# -------------------------------------------------------------------------- BM25


def test_bm25_finds_the_right_chunk_as_soon_as_it_is_written(store: Store) -> None:
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
    assert bm25(store, "sourdough starter")[0] == (
        "Baking/Sourdough.md",
        "Feed the starter with rye flour every morning.",
    )
    assert bm25(store, "steaming")[0] == ("Coffee/Espresso.md", "Steam the milk to 60 degrees.")
    assert bm25(store, "cafe")[0][0] == "Daily/2024-05-01.md"  # accents stripped
    assert [path for path, _ in bm25(store, "may day")] == ["Daily/2024-05-01.md"]  # the title
    assert [path for path, _ in bm25(store, "28")] == ["Coffee/Espresso.md"]  # digits kept
    assert bm25(store, "nonexistentword") == []


def test_bm25_follows_a_rewrite_at_once(store: Store) -> None:
    note = make_note("a.md", ["espresso shot"])
    store.write_note("v", note, vectors_for(note), 1, 1)
    rewritten = make_note("a.md", ["bread dough"])
    store.write_note("v", rewritten, vectors_for(rewritten), 2, 2)
    # In the same transaction as the chunks: no rebuild owed, nothing stale to see.
    assert bm25(store, "espresso") == []
    assert bm25(store, "bread") == [("a.md", "bread dough")]
    assert [name for name, _ in store.finalize(["v"])] == ["links:v", "vector_index"]


# -------------------------------------------------------------------------- HNSW


def test_hnsw_index_with_cosine_is_used_by_nearest_neighbour_queries(database: Path) -> None:
    store = Store(database, storage_config(enabled=True, m=8, ef_construction=64, ef_search=64))
    try:
        fill(store, 100)
        assert not store.has_vector_index and store.vector_table is None
        assert store.ensure_vector_index()
        table = store.vector_table
        assert table is not None and table.name == "chunk_vectors_1"
        query = unit_vectors(1, 999)[0]
        reader = store.reader()
        sql = vectors.nearest_sql(table.name, vectors.vector_literal(query, 384), 5)
        assert "HNSW_INDEX_SCAN" in reader.execute("EXPLAIN " + sql).fetchall()[0][1]
        found, _ = store.nearest_chunks(table.name, query, 5)
        matrix = store.chunk_matrix()
        exact = matrix.ids[np.argsort(-(matrix.vectors @ query))[:5]]
        assert found.tolist() == exact.tolist()
        setting = reader.execute("SELECT current_setting('hnsw_ef_search')").fetchone()
        assert setting == (64,)
        # The index sits on the copy, never on chunks (vss cannot maintain that safely).
        on = reader.execute("SELECT index_name, table_name FROM duckdb_indexes()").fetchall()
        assert set(on) == {
            ("chunk_vectors_1_hnsw", "chunk_vectors_1"),
            ("chunks_note_id", "chunks"),
        }
        with pytest.raises(ValueError, match="not a vector table"):
            vectors.nearest_sql("chunks; DROP TABLE notes", "'[1]'::FLOAT[1]", 1)
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
        table = again.vector_table
        assert table is not None
        note = make_note("late.md", ["written after reopening"])
        vector = unit_vectors(1, 4242)
        again.write_note("v", note, vector, 1, 1)
        again.delete_note("v", "n/0.md")
        # The copy does not hold the late chunk; the next finalize past the share does.
        assert table.max_chunk_id < again.chunk_matrix().ids.max()
        assert again.ensure_vector_index(rebuild_share=0.0)
        rebuilt = again.vector_table
        assert rebuilt is not None and rebuilt.name == "chunk_vectors_2"
        nearest, _ = again.nearest_chunks(rebuilt.name, vector[0], 1)
        late = "SELECT c.id FROM chunks c JOIN notes n ON n.id = c.note_id WHERE path = 'late.md'"
        stored = again.reader().execute(late).fetchone()
        assert stored is not None and nearest.tolist() == [stored[0]]
        # The old copy is dropped by the next call, once searches moved to the new one.
        assert table_names(again) >= {"chunk_vectors_1", "chunk_vectors_2"}
        again.ensure_vector_index()
        assert "chunk_vectors_1" not in table_names(again)
        # A search still holding the old name hears so in the store's words.
        with pytest.raises(VectorTableGoneError, match="chunk_vectors_1"):
            again.nearest_chunks(table.name, vector[0], 1)
    finally:
        again.close()


def table_names(store: Store) -> set[str]:
    rows = store.reader().execute("SELECT table_name FROM duckdb_tables()").fetchall()
    return {str(row[0]) for row in rows}


def test_hnsw_follows_the_config(database: Path) -> None:
    store = Store(database, storage_config(enabled="auto", min_chunks=30))
    try:
        fill(store, 5)  # 15 chunks
        assert not store.ensure_vector_index()
        fill(store, 10)  # 30 chunks
        assert store.ensure_vector_index() and store.has_vector_index
        assert index_names(store) == {"chunk_vectors_1_hnsw", "chunks_note_id"}
        assert store.ensure_vector_index()  # nothing changed: no rebuild
        assert store.vector_table is not None and store.vector_table.name == "chunk_vectors_1"
        store.configure(storage_config(enabled="auto", min_chunks=30, m=8))
        assert store.ensure_vector_index()  # rebuilt with the new M
        meta = store.reader().execute("SELECT value FROM meta WHERE key = 'hnsw.parameters'")
        assert meta.fetchone() == ("metric=cosine,m=8,ef_construction=200",)
        assert store.vector_table is not None and store.vector_table.name == "chunk_vectors_2"
        store.configure(storage_config(enabled=False))
        assert not store.ensure_vector_index()
        assert not store.has_vector_index
        store.ensure_vector_index()
        assert index_names(store) == set()
        assert not {name for name in table_names(store) if name.startswith("chunk_vectors")}
    finally:
        store.close()


def index_names(store: Store) -> set[str]:
    rows = store.reader().execute("SELECT index_name FROM duckdb_indexes()").fetchall()
    return {str(row[0]) for row in rows}


def test_vector_reads_by_index_and_exact_agree_and_survive_rewrites(database: Path) -> None:
    """nearest_chunks (HNSW copy) and chunk_similarities (exact, by note, on chunks) while
    notes are rewritten and deleted."""
    store = Store(database, storage_config(enabled=True))
    try:
        fill(store, 30)
        store.ensure_vector_index()
        for number in range(0, 30, 3):  # rewrite every third note, delete one
            note = make_note(f"n/{number}.md", [f"rewritten {number}", f"again {number}"])
            store.write_note("v", note, unit_vectors(2, 5000 + number), 2, 2)
        store.delete_note("v", "n/1.md")
        store.ensure_vector_index(rebuild_share=0.0)
        table = store.vector_table
        assert table is not None
        matrix = store.chunk_matrix()
        query = unit_vectors(1, 77)[0]
        exact = matrix.vectors @ query
        ids, similarities = store.nearest_chunks(table.name, query, 5)
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


VSS_DEFECTS = """
import sys, threading
sys.path.insert(0, {tests!r})
from pathlib import Path
from fixtures_store import make_note, storage_config, unit_vectors
from jarvisd.store import Store
store = Store(Path({database!r}), storage_config(enabled=True))
for i in range(200):
    store.write_note("v", make_note(f"n/{{i}}.md", [f"t {{i}} {{k}}" for k in range(4)]),
                     unit_vectors(4, i), 1, 1)
store.ensure_vector_index()
table = store.vector_table.name
# Rewrites well past two doublings of the index size: with HNSW on chunks itself this
# hung for good at the second one, or failed with duplicate keys (vss issue #81).
for r in range(14):
    for i in range(0, 200, 7):
        note = make_note(f"n/{{i}}.md", [f"r{{r}} {{i}} {{k}}" for k in range(4)])
        store.write_note("v", note, unit_vectors(4, 1000 * r + i), 1, 2 + r)
    store.ensure_vector_index()
    table = store.vector_table.name
# Eight threads scanning the index at once: three or more segfaulted in vss.
vectors = store.chunk_matrix().vectors
def scan(seed):
    for n in range(100):
        store.nearest_chunks(table, vectors[(seed * 100 + n) % len(vectors)], 64)
threads = [threading.Thread(target=scan, args=(k,)) for k in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
store.close()
print("survived", table)
"""


@pytest.mark.heavy
def test_the_vss_defects_measured_here_cannot_reach_the_store(database: Path) -> None:
    """Rewrites past index growth and concurrent index scans, in a child process so
    that a hang or a segfault fails this test instead of killing the suite."""
    tests = str(Path(__file__).parent)
    script = VSS_DEFECTS.format(tests=tests, database=str(database))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "survived chunk_vectors_" in result.stdout


def test_a_legacy_hnsw_index_on_chunks_is_dropped_on_open(database: Path) -> None:
    store = Store(database, storage_config(enabled=False))
    fill(store, 10)
    store._writer.execute(
        "CREATE INDEX chunks_embedding_hnsw ON chunks USING HNSW (embedding) "
        "WITH (metric = 'cosine')"
    )
    store.close()
    again = Store(database, storage_config(enabled=True))
    try:
        assert "chunks_embedding_hnsw" not in index_names(again)
        assert not again.has_vector_index
        assert again.ensure_vector_index() and again.has_vector_index
    finally:
        again.close()


# ------------------------------------------------------------------- maintenance


def test_maintenance_runs_and_times_its_steps(database: Path) -> None:
    store = Store(database, storage_config(enabled=True))
    try:
        fill(store, 10)
        names = ["analyze", "vector_index", "checkpoint"]
        assert [name for name, _ in store.maintenance()] == names
        store.ensure_vector_index()
        store.delete_note("v", "n/1.md")
        steps = store.maintenance()
        assert [name for name, _ in steps] == names
        # The deleted note's vector went: maintenance rebuilt the vector table.
        assert store.vector_table is not None and store.vector_table.name == "chunk_vectors_2"
        assert all(seconds >= 0 for _, seconds in steps)
        # BM25 owes nothing (each write kept it); link resolution is finalize's job.
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
        assert again.stats()["pending_work"] == 1
        names = [name for name, _ in again.finalize(["v"])]
        assert names == ["links:v", "vector_index"]
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
    store.configure(storage_config(ef_search=50).model_copy(update={"threads": 2}))
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


# Issue #9: each sequence ends with committed work only in the WAL (no checkpoint after
# it) and a killed process; the next open must replay it. Before the fix, the first two
# failed every time with "Cannot drop entry "fts_main_chunk_documents" because there are
# entries that depend on it" (create_fts_index's overwrite logs a DROP SCHEMA that replay
# refuses).
_KILL_SEQUENCES = {
    "after_maintenance_then_edit": """
fill(0, 6)
store.finalize(["v"])
store.maintenance()
fill(6, 7, "appended line zebra")
store.finalize(["v"])
""",
    "two_finalizes_without_checkpoint": """
fill(0, 6)
store.finalize(["v"])
fill(6, 7, "appended line zebra")
store.finalize(["v"])
""",
    "hnsw_rebuilt_and_retired": """
fill(0, 6)
store.finalize(["v"])
store.checkpoint()
fill(6, 7, "appended line zebra")
store.ensure_vector_index(0.0)
store.ensure_vector_index(0.0)
""",
    # What migration 2 does to a database of an earlier build (its DuckDB fts index).
    "fts_of_an_earlier_build_dropped": """
fill(0, 6)
store.finalize(["v"])
store._writer.execute(
    "CREATE TABLE chunk_documents AS SELECT id AS chunk_id, 'title' AS title, text FROM chunks"
)
store._writer.execute("PRAGMA create_fts_index('chunk_documents', 'chunk_id', 'title', 'text')")
store.checkpoint()
from jarvisd.store import bm25
bm25.drop_fts(store._writer, "fts_main_chunk_documents", "chunk_documents")
fill(6, 7, "appended line zebra")
""",
    "fresh_database_first_index": """
fill(0, 7, "appended line zebra")
store.finalize(["v"])
""",
    "legacy_hnsw_dropped_on_open": """
fill(0, 6)
store._writer.execute(
    "CREATE INDEX chunks_embedding_hnsw ON chunks USING HNSW (embedding) WITH (metric = 'cosine')"
)
store.close()
store = Store(DATABASE, storage_config(enabled=True), model="m")
fill(6, 7, "appended line zebra")
store.finalize(["v"])
""",
    # Migration 3 (the subject table) committed to the WAL only, then subjects written both
    # ways: with a note, and for notes that had none (what the indexer does after it).
    "subjects_migration_replayed": """
fill(0, 6)
store.checkpoint()
store._writer.execute("BEGIN TRANSACTION")
store._writer.execute("DROP TABLE note_subjects")
store._writer.execute("DELETE FROM schema_version WHERE version = 3")
store._writer.execute("COMMIT")
store.checkpoint()
from jarvisd.store import schema
store._writer.execute("BEGIN TRANSACTION")
schema.MIGRATIONS[2].apply(store._writer, schema.MigrationContext(store.dimension))
store._writer.execute("INSERT INTO schema_version VALUES (3, 'subjects', 0)")
store._writer.execute("COMMIT")
missing = store.notes_without_subject()
store.write_subjects([row[0] for row in missing], [f"h{row[0]}" for row in missing],
                     unit_vectors(len(missing), 300))
fill(6, 7, "appended line zebra")
""",
    "vectors_reset_for_a_new_model": """
fill(0, 6)
store.finalize(["v"])
store.maintenance()
store.close()
store = Store(DATABASE, storage_config(enabled=True), model="other", reset_vectors=True)
fill(0, 7, "appended line zebra")
store.finalize(["v"])
""",
}


@pytest.mark.parametrize("sequence", sorted(_KILL_SEQUENCES))
def test_the_wal_of_every_index_step_replays_after_a_kill(database: Path, sequence: str) -> None:
    script = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from fixtures_store import make_note, storage_config, unit_vectors
from jarvisd.store import Store
DATABASE = {str(database)!r}
store = Store(DATABASE, storage_config(enabled=True), model="m")
def fill(start, stop, extra=""):
    for index in range(start, stop):
        text = f"note {{index}} text" + (" " + extra if index == stop - 1 else "")
        store.write_note("v", make_note(f"n/{{index}}.md", [text, "more"]),
                         unit_vectors(2, index), 1, 1, (f"s{{index}}", unit_vectors(1, index)[0]))
{_KILL_SEQUENCES[sequence]}
os._exit(9)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 9, result.stderr
    assert database.with_name(database.name + ".wal").exists()  # the WAL is what is tested
    model = "other" if "reset" in sequence else "m"
    store = Store(database, storage_config(enabled=True), model=model)
    try:
        assert len(store.file_states("v")) == 7
        assert [path for path, _ in bm25(store, "zebra")] == ["n/6.md"]
        assert store.stats()["chunks"] == 14
        assert store.schema_version == LATEST_VERSION and not store.notes_without_subject()
        subjects = store.read_snapshot(False).subjects
        assert len(subjects) == 7 and np.isfinite(subjects.vectors).all()
    finally:
        store.close()


def test_an_hnsw_build_is_logged_before_it_starts_and_only_when_one_runs(database: Path) -> None:
    # A build reads every chunk (31 s for 22k on 2 cores): the log says when one begins,
    # so a slow run or catch-up can be told apart (the reliability benchmark kills in it).
    store = Store(database, storage_config(enabled=True, m=8, ef_construction=64))
    try:
        fill(store, 10)
        with capture_logs() as logs:
            assert store.ensure_vector_index()
            assert store.ensure_vector_index()  # nothing changed: no build, no line
        events = [entry for entry in logs if entry["event"].startswith("store.vector_index")]
        assert [entry["event"] for entry in events] == [
            "store.vector_index_building",
            "store.vector_index",
        ]
        assert events[0]["table"] == "chunk_vectors_1" and events[0]["chunks"] == 30
        assert events[1]["built"] is True and events[1]["seconds"] >= 0
    finally:
        store.close()
