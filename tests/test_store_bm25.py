"""BM25 kept per note (`store.bm25`): equal to DuckDB fts over the same text after any edits."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from fixtures_bm25 import FTS_OPTIONS, FtsReference, store_index
from fixtures_store import make_note, storage_config, vectors_for

from jarvisd.search.postings import ChunkScores, postings_of
from jarvisd.search.terms import Stemmer, query_stems, tokenize
from jarvisd.store import LATEST_VERSION, Store
from jarvisd.store.connection import extension_path
from jarvisd.store.schema import FTS_SCHEMA, FTS_SOURCE

# Stopwords, accents, digits, punctuation, stems shared by several words, and case.
WORDS = " ".join(
    (
        "espresso Espresso espressos grind grinding grinder sour bitter the a of and is",
        "café cafe naïve RE-USE re_use V60 2024-05-01 ISO-9001 milk steamed steaming",
        "sourdough starter rye flour feeding fed bread dough über Straße 93°C flat white",
        "running runs ran coffee's it's x y z 0 00 42",
    )
).split(" ")
QUERIES = ("espresso grind", "café 2024", "the sourdough starter", "running steamed milk", "42")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "jarvis.duckdb", storage_config())
    yield opened
    opened.close()


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 14)))


def _note(rng: random.Random, path: str, seed: int) -> object:
    texts = [_text(rng) for _ in range(rng.randint(0, 4))]
    if rng.random() < 0.3:
        title = _text(rng) or "untitled"
        note = make_note(path, texts, title=title, frontmatter={"title": title})
    else:
        note = make_note(path, texts)
    return note


def _edit(store: Store, rng: random.Random, paths: list[str], step: int) -> None:
    kind = rng.choice(["create", "create", "rewrite", "rewrite", "rename", "delete", "touch"])
    if kind == "create" or not paths:
        path = f"{rng.choice(['a', 'b/c', 'Café'])}/{_text(rng)[:12] or 'note'} {step}.md"
        note = _note(rng, path, step)
        store.write_note("v", note, vectors_for(note, step), 1, step)  # type: ignore[arg-type]
        if path not in paths:
            paths.append(path)
    elif kind == "rewrite":
        path = rng.choice(paths)
        note = _note(rng, path, step)
        store.write_note("v", note, vectors_for(note, step), 2, step)  # type: ignore[arg-type]
    elif kind == "rename":
        old = rng.choice(paths)
        new = f"moved/{_text(rng)[:10] or 'x'} {step}.md"
        assert store.rename_note("v", old, new, 3, step)
        paths[paths.index(old)] = new
    elif kind == "delete":
        path = rng.choice(paths)
        assert store.delete_note("v", path)
        paths.remove(path)
    else:
        assert store.touch_note("v", rng.choice(paths), 4, step)


def _check_against_fts(store: Store) -> None:
    ours = store_index(store)
    reference = FtsReference(store)
    try:
        postings = reference.postings()
        lengths = reference.lengths()
        assert ours["postings"] == postings
        assert ours["lengths"] == lengths
        frequencies = Counter(term for _, term in postings)
        assert ours["df"] == dict(frequencies)
        assert ours["stats"] == (len(lengths), sum(lengths.values()))
        assert ours["negative_df"] == 0 and ours["duplicate_terms"] == 0
        in_memory = postings_of(store.read_bm25())
        for query in QUERIES:
            theirs = reference.scores(query)
            stems = query_stems(store, Stemmer(), query)
            for scores, tolerance in (
                (in_memory.score(stems), 1e-6),
                (ChunkScores(*store.bm25_reference(stems), 0.0), 1e-9),
            ):
                got = dict(zip(scores.chunk_ids.tolist(), scores.scores.tolist(), strict=True))
                assert got.keys() == theirs.keys(), query
                for chunk, score in theirs.items():
                    assert got[chunk] == pytest.approx(score, rel=tolerance, abs=1e-9), query
    finally:
        reference.close()


def test_postings_through_random_edits_equal_fts_and_a_rebuild(store: Store) -> None:
    rng = random.Random(10)
    paths: list[str] = []
    for step in range(1, 121):
        _edit(store, rng, paths, step)
        if step % 30 == 0:
            _check_against_fts(store)
    maintained = store_index(store)
    store.rebuild_bm25()
    assert store_index(store) == maintained
    assert maintained["stats"][0] > 20  # type: ignore[index]


def test_a_search_finds_an_edit_without_any_finalize(store: Store) -> None:
    cursor = store.reader()

    def hits(query: str) -> list[str]:
        ids, scores = store.bm25_reference(query_stems(store, Stemmer(), query))
        order = sorted(zip(scores.tolist(), ids.tolist(), strict=True))
        texts = dict(cursor.execute("SELECT id, text FROM chunks").fetchall())
        return [str(texts[chunk]) for _, chunk in reversed(order)]

    note = make_note("a.md", ["espresso shot", "steamed milk"])
    store.write_note("v", note, vectors_for(note), 1, 1)
    assert hits("espresso") == ["espresso shot"]
    rewritten = make_note("a.md", ["bread dough"])
    store.write_note("v", rewritten, vectors_for(rewritten), 2, 2)
    assert hits("espresso") == [] and hits("bread") == ["bread dough"]
    assert store.rename_note("v", "a.md", "Sourdough.md", 2, 3)  # the title is indexed too
    assert hits("sourdough") == ["bread dough"]
    assert store.delete_note("v", "Sourdough.md")
    assert hits("bread") == [] and store_index(store)["stats"] == (0, 0)


def test_a_failed_write_leaves_the_index_as_it_was(store: Store) -> None:
    note = make_note("a.md", ["espresso shot"])
    store.write_note("v", note, vectors_for(note), 1, 1)
    before = store_index(store)
    broken = make_note("a.md", ["bread dough", "rye"])
    with pytest.raises(Exception, match="shape"):
        store.write_note("v", broken, vectors_for(make_note("a.md", ["one"])), 2, 2)
    assert store_index(store) == before


def test_the_tokenizer_is_the_fts_tokenizer(store: Store) -> None:
    text = "Café au lait, 93 °C; naïve RE-USE of the_V60 (2024-05-01) Straße"
    reference = FtsReference(store)
    try:
        assert tokenize(text) == reference.tokenize(text)
    finally:
        reference.close()


def test_migration_from_fts_builds_the_postings_and_drops_fts(tmp_path: Path) -> None:
    """A schema-1 database (fts index, pending fts rebuild) opens as schema 2."""
    database = tmp_path / "old.duckdb"
    store = Store(database, storage_config())
    rng = random.Random(3)
    for step in range(1, 25):
        note = _note(rng, f"n{step}.md", step)
        store.write_note("v", note, vectors_for(note, step), 1, step)  # type: ignore[arg-type]
    expected = store_index(store)
    store.close()
    # Back to schema 1 as earlier builds left it: fts built, a rebuild still pending.
    connection = duckdb.connect(str(database))
    connection.execute(f"LOAD '{extension_path('fts', 'duckdb_extension_fts')}'")
    for table in ("bm25_postings", "bm25_docs", "bm25_terms", "bm25_stats", "bm25_stopwords"):
        connection.execute(f"DROP TABLE {table}")
    connection.execute("DROP SEQUENCE bm25_term_ids")
    connection.execute("DELETE FROM schema_version WHERE version >= 2")
    connection.execute("DROP TABLE note_subjects")  # migration 3's, made again after 2
    connection.execute(f"""
        CREATE TABLE {FTS_SOURCE} AS SELECT c.id AS chunk_id, n.title, c.text
        FROM chunks c JOIN notes n ON n.id = c.note_id
    """)
    connection.execute(
        f"PRAGMA create_fts_index('{FTS_SOURCE}', 'chunk_id', 'title', 'text', {FTS_OPTIONS})"
    )
    connection.execute(f"DELETE FROM {FTS_SOURCE}")
    connection.execute("INSERT INTO pending_work VALUES ('fts')")
    connection.close()

    migrated = Store(database, storage_config())
    try:
        assert migrated.schema_version == LATEST_VERSION
        assert len(migrated.notes_without_subject()) == 24  # the index run encodes them
        assert store_index(migrated) == expected
        cursor = migrated.reader()
        schemas = cursor.execute(
            "SELECT count(*) FROM duckdb_schemas() WHERE schema_name = ?", [FTS_SCHEMA]
        ).fetchall()
        tables = cursor.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [FTS_SOURCE]
        ).fetchall()
        pending = cursor.execute("SELECT count(*) FROM pending_work WHERE task = 'fts'").fetchall()
        assert schemas[0][0] == 0 and tables[0][0] == 0 and pending[0][0] == 0
        _check_against_fts(migrated)
    finally:
        migrated.close()
