"""The store: migrations, per-note transactions and their semantics, reads, link targets.

Real DuckDB files in tmp_path; vectors are random unit vectors (the model is
not needed to test storage).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest
from fixtures_store import DIMENSION, link, make_note, storage_config, unit_vectors, vectors_for

from jarvisd.indexing.parsed import Chunk
from jarvisd.store import (
    LATEST_VERSION,
    EmbeddingMismatchError,
    FileState,
    LinkKey,
    NoteWriteError,
    SchemaTooNewError,
    Store,
    StoreClosedError,
    text_hash,
)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "data" / "jarvis.duckdb"


@pytest.fixture
def store(database: Path) -> Iterator[Store]:
    opened = Store(database, storage_config(), DIMENSION, "all-MiniLM-L6-v2")
    yield opened
    opened.close()


def chunk_rows(store: Store, vault: str, path: str) -> list[tuple[int, str, str]]:
    return [
        (int(row[0]), str(row[1]), str(row[2]))
        for row in store.reader()
        .execute(
            "SELECT c.id, c.text, c.embed_text_hash FROM chunks c JOIN notes n ON n.id = c.note_id "
            "WHERE n.vault = ? AND n.path = ? ORDER BY c.ordinal",
            [vault, path],
        )
        .fetchall()
    ]


# ------------------------------------------------------------------------ schema


def test_a_new_database_is_migrated_to_the_latest_version(database: Path, store: Store) -> None:
    assert database.exists()
    assert store.schema_version == LATEST_VERSION
    tables = {
        row[0]
        for row in store.reader().execute("SELECT table_name FROM duckdb_tables()").fetchall()
    }
    assert {"schema_version", "meta", "notes", "chunks", "tags", "links"} <= tables
    meta = dict(store.reader().execute("SELECT key, value FROM meta").fetchall())
    assert meta["embedding.dimension"] == "384"
    assert meta["embedding.model"] == "all-MiniLM-L6-v2"
    foreign = (
        store.reader()
        .execute("SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'FOREIGN KEY'")
        .fetchone()
    )
    assert foreign == (0,)


def test_reopening_keeps_everything_and_close_is_idempotent(database: Path) -> None:
    store = Store(database, storage_config())
    note = make_note("a.md", ["alpha", "beta"])
    store.write_note("v", note, vectors_for(note), 10, 20)
    store.close()
    store.close()
    with pytest.raises(StoreClosedError):
        store.file_states("v")
    again = Store(database, storage_config())
    try:
        assert again.schema_version == LATEST_VERSION
        assert again.file_states("v") == {"a.md": FileState(10, 20, note.content_hash)}
        assert [text for _, text, _ in chunk_rows(again, "v", "a.md")] == ["alpha", "beta"]
    finally:
        again.close()


def test_a_database_from_a_newer_jarvisd_is_refused(database: Path) -> None:
    Store(database, storage_config()).close()
    with duckdb.connect(str(database)) as connection:
        connection.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    with pytest.raises(SchemaTooNewError, match=r"schema version 99.*upgrade jarvisd"):
        Store(database, storage_config())


def test_another_dimension_needs_a_reindex_or_a_reset(database: Path) -> None:
    store = Store(database, storage_config(enabled=True), 384, "all-MiniLM-L6-v2")
    note = make_note("a.md", ["alpha"])
    store.write_note("v", note, vectors_for(note), 10, 20)
    assert store.ensure_vector_index()  # its copy of the vectors must go with them
    store.close()
    with pytest.raises(EmbeddingMismatchError, match=r"384-dimensional.*768.*re-indexed"):
        Store(database, storage_config(), 768, "other-model")
    with pytest.raises(EmbeddingMismatchError, match="reset_vectors=True"):
        Store(database, storage_config(), 384, "another-384-model")

    reset = Store(database, storage_config(), 768, "other-model", reset_vectors=True)
    try:
        assert reset.stats()["chunks"] == 0
        assert reset.vector_table is None
        tables = reset.reader().execute("SELECT table_name FROM duckdb_tables()").fetchall()
        assert not [name for (name,) in tables if str(name).startswith("chunk_vectors")]
        # The note stays listed but can match no stat or hash: the next run re-indexes it.
        assert reset.file_states("v")["a.md"].mtime_ns == -1
        wide = np.ones((1, 768), dtype=np.float32) / np.sqrt(768)
        reset.write_note("v", note, wide, 10, 20)
        assert reset.chunk_matrix().vectors.shape == (1, 768)
    finally:
        reset.close()


# ------------------------------------------------------------------------ writes


def test_write_then_rewrite_replaces_everything_and_keeps_the_id(store: Store) -> None:
    first = make_note(
        "notes/a.md",
        ["one", "two", "three"],
        tags=["x", "y"],
        links=[link("B")],
        frontmatter={"status": "draft"},
    )
    identifier = store.write_note("v", first, vectors_for(first), 100, 1)
    detail = store.get_note("v", "notes/a.md")
    assert detail is not None
    assert (detail.title, detail.chunk_count, detail.tags) == ("a", 3, ("x", "y"))
    assert detail.frontmatter == {"status": "draft"}
    assert [item.target for item in detail.links] == ["B"]

    second = make_note("notes/a.md", ["only"], tags=["z"], links=[link("C"), link("D")])
    assert store.write_note("v", second, vectors_for(second, 1), 200, 2) == identifier
    detail = store.get_note("v", "notes/a.md")
    assert detail is not None
    assert (detail.chunk_count, detail.tags, detail.size) == (1, ("z",), 200)
    assert [item.target for item in detail.links] == ["C", "D"]
    assert store.stats()["chunks"] == 1


def test_touch_changes_only_the_stat(store: Store) -> None:
    note = make_note("a.md", ["alpha"])
    store.write_note("v", note, vectors_for(note), 10, 20)
    before = chunk_rows(store, "v", "a.md")
    assert store.touch_note("v", "a.md", 11, 21)
    assert store.file_states("v")["a.md"] == FileState(11, 21, note.content_hash)
    assert chunk_rows(store, "v", "a.md") == before
    assert not store.touch_note("v", "missing.md", 1, 1)


def test_rename_keeps_chunks_vectors_and_backlinks(store: Store) -> None:
    target = make_note("old/Target.md", ["target text"])
    source = make_note("Source.md", ["points at it"], links=[link("Target")])
    titled = make_note("Titled.md", ["x"], title="Kept Title", frontmatter={"title": "Kept Title"})
    for seed, note in enumerate((target, source, titled)):
        store.write_note("v", note, vectors_for(note, seed), 10, 20)
    store.finalize(["v"])
    before = chunk_rows(store, "v", "old/Target.md")
    titled_before = chunk_rows(store, "v", "Titled.md")
    vectors_before = store.chunk_matrix()

    assert store.rename_note("v", "old/Target.md", "new/Renamed.md", 10, 30)
    assert store.rename_note("v", "Titled.md", "Moved.md", 10, 30)
    assert not store.rename_note("v", "nowhere.md", "elsewhere.md", 1, 1)
    after = chunk_rows(store, "v", "new/Renamed.md")
    # The title changed, and BM25 indexes it with every chunk: same chunks, new ids (a
    # chunk id's indexed text never changes). A frontmatter title keeps them.
    assert [row[1:] for row in after] == [row[1:] for row in before]
    assert after[0][0] > max(vectors_before.ids)
    assert chunk_rows(store, "v", "Moved.md") == titled_before
    vectors_after = store.chunk_matrix()
    moved_vector = vectors_after.vectors[list(vectors_after.ids).index(after[0][0])]
    old_vector = vectors_before.vectors[list(vectors_before.ids).index(before[0][0])]
    assert np.array_equal(moved_vector, old_vector)
    moved = store.get_note("v", "new/Renamed.md")
    assert moved is not None and moved.title == "Renamed"  # the title came from the file name
    kept = store.get_note("v", "Moved.md")
    assert kept is not None and kept.title == "Kept Title"
    assert [b.source_path for b in moved.backlinks] == ["Source.md"]
    assert store.paths_by_hash("v", target.content_hash) == ["new/Renamed.md"]


def test_rename_onto_an_indexed_path_replaces_that_note(store: Store) -> None:
    first, second = make_note("a.md", ["first"]), make_note("b.md", ["second"])
    store.write_note("v", first, vectors_for(first), 1, 1)
    store.write_note("v", second, vectors_for(second), 1, 1)
    assert store.rename_note("v", "a.md", "b.md", 1, 2)
    assert set(store.file_states("v")) == {"b.md"}
    assert [text for _, text, _ in chunk_rows(store, "v", "b.md")] == ["first"]


def test_delete_removes_what_the_note_owns_and_unresolves_links_to_it(store: Store) -> None:
    target = make_note("Target.md", ["t"], tags=["gone"], links=[link("Source")])
    source = make_note("Source.md", ["s"], links=[link("Target")])
    store.write_note("v", target, vectors_for(target), 1, 1)
    store.write_note("v", source, vectors_for(source), 1, 1)
    store.finalize(["v"])
    assert store.stats()["unresolved_links"] == 0

    assert store.delete_note("v", "Target.md")
    assert not store.delete_note("v", "Target.md")
    stats = store.stats()
    assert (stats["notes"], stats["chunks"], stats["tags"], stats["links"]) == (1, 1, 0, 1)
    assert stats["unresolved_links"] == 1
    detail = store.get_note("v", "Source.md")
    assert detail is not None and detail.links[0].resolved_path is None


def test_delete_notes_removes_many_in_one_go(store: Store) -> None:
    for index in range(5):
        note = make_note(f"folder/{index}.md", [f"text {index}"])
        store.write_note("v", note, vectors_for(note), 1, 1)
    paths = ["folder/0.md", "folder/1.md", "folder/2.md", "not-there.md"]
    assert store.delete_notes("v", paths) == 3
    assert set(store.file_states("v")) == {"folder/3.md", "folder/4.md"}
    assert store.delete_notes("v", []) == 0


def test_vaults_are_separate(store: Store) -> None:
    note = make_note("same.md", ["alpha"])
    store.write_note("one", note, vectors_for(note), 1, 1)
    store.write_note("two", note, vectors_for(note), 2, 2)
    store.delete_note("one", "same.md")
    assert store.file_states("one") == {}
    assert set(store.file_states("two")) == {"same.md"}


def test_file_states_of_some_paths_and_folders(store: Store) -> None:
    """What a watcher-scoped run reads: the named paths and the notes below named folders
    (a folder name is a prefix of whole path parts only), of that vault alone."""
    for path in ("a.md", "f/b.md", "f/g/c.md", "fx.md", "other.md", "a%.md"):
        note = make_note(path, [f"text of {path}"])
        store.write_note("v", note, vectors_for(note), 1, 1)
    note = make_note("f/elsewhere.md", ["another vault"])
    store.write_note("w", note, vectors_for(note), 1, 1)
    some = store.file_states("v", {"a.md", "missing.md"}, ["f/"])
    assert set(some) == {"a.md", "f/b.md", "f/g/c.md"}
    assert some["a.md"] == store.file_states("v")["a.md"]
    assert set(store.file_states("v", {"a%.md"})) == {"a%.md"}
    assert set(store.file_states("v", set(), ["f/g/", "nothing/"])) == {"f/g/c.md"}
    assert store.file_states("v", set()) == {}


# --------------------------------------------------------------------- atomicity


def test_vectors_of_the_wrong_shape_change_nothing(store: Store) -> None:
    old = make_note("a.md", ["old one", "old two"])
    store.write_note("v", old, vectors_for(old), 10, 20)
    new = make_note("a.md", ["new one", "new two", "new three"])
    with pytest.raises(
        NoteWriteError,
        match=r"v:a.md: got vectors of shape \(2, 384\), "
        r"expected \(3, 384\).*nothing was written",
    ):
        store.write_note("v", new, vectors_for(old), 11, 21)
    with pytest.raises(NoteWriteError, match="NaN"):
        store.write_note("v", new, np.full((3, DIMENSION), np.nan, dtype=np.float32), 11, 21)
    assert [text for _, text, _ in chunk_rows(store, "v", "a.md")] == ["old one", "old two"]
    assert store.file_states("v")["a.md"] == FileState(10, 20, old.content_hash)


def test_a_failure_midway_through_a_write_leaves_the_old_version_intact(store: Store) -> None:
    old = make_note("a.md", ["old one", "old two"], tags=["old"], links=[link("Old")])
    store.write_note("v", old, vectors_for(old), 10, 20)
    before = store.get_note("v", "a.md")
    # The links go in last, after the note row, chunks and tags were rewritten; a
    # negative line number breaks the links table's CHECK constraint right there.
    broken = make_note("a.md", ["new text"], tags=["new"], links=[link("New", line=-1)])
    kept = r"could not write v:a\.md, its previous version is kept"
    with pytest.raises(NoteWriteError, match=kept):
        store.write_note("v", broken, vectors_for(broken), 11, 21)
    after = store.get_note("v", "a.md")
    assert after is not None and before is not None
    assert (after.tags, after.chunk_count, after.size, after.content_hash) == (
        ("old",),
        2,
        10,
        old.content_hash,
    )
    assert [item.target for item in after.links] == ["Old"]
    assert [text for _, text, _ in chunk_rows(store, "v", "a.md")] == ["old one", "old two"]
    # The writer is usable again afterwards.
    store.write_note("v", make_note("b.md", ["fine"]), unit_vectors(1), 1, 1)
    assert store.stats()["notes"] == 2


def test_a_bad_chunk_fails_the_whole_note(store: Store) -> None:
    old = make_note("a.md", ["old"])
    store.write_note("v", old, vectors_for(old), 10, 20)
    bad_chunk = Chunk(0, (), "bad", "bad", token_count=-5, start_line=1, end_line=1)
    bad = make_note("a.md", [])
    bad = type(bad)(path=bad.path, title="a", content_hash="new", chunks=(bad_chunk,))
    with pytest.raises(NoteWriteError):
        store.write_note("v", bad, unit_vectors(1), 11, 21)
    assert store.file_states("v")["a.md"].content_hash == old.content_hash


# ----------------------------------------------------------------- vector reuse


def test_vectors_for_hashes_returns_stored_vectors_from_any_note(store: Store) -> None:
    first = make_note("a.md", ["shared text", "only in a"])
    second = make_note("b.md", ["shared text"])
    vectors = vectors_for(first, 7)
    store.write_note("v", first, vectors, 1, 1)
    store.write_note("w", second, vectors[:1], 1, 1)
    found = store.vectors_for_hashes(
        [text_hash("shared text"), text_hash("only in a"), text_hash("never stored")]
    )
    assert set(found) == {text_hash("shared text"), text_hash("only in a")}
    assert np.array_equal(found[text_hash("shared text")], vectors[0])
    assert np.array_equal(found[text_hash("only in a")], vectors[1])
    assert found[text_hash("only in a")].dtype == np.float32
    assert store.vectors_for_hashes([]) == {}
    stored_hash = chunk_rows(store, "v", "a.md")[0][2]
    assert stored_hash == text_hash("shared text")


# ------------------------------------------------------------------------- reads


def test_chunk_matrix_and_stats(store: Store) -> None:
    assert len(store.chunk_matrix()) == 0
    assert store.chunk_matrix().vectors.shape == (0, DIMENSION)
    note = make_note(
        "a.md",
        ["x", "y", "z"],
        tags=["t1", "t2"],
        links=[link("Nowhere"), link("picture.png", kind="embed")],
    )
    vectors = vectors_for(note)
    store.write_note("v", note, vectors, 1, 1)
    matrix = store.chunk_matrix()
    assert matrix.vectors.dtype == np.float32 and matrix.ids.dtype == np.int64
    assert np.array_equal(matrix.vectors, vectors)
    ids = [identifier for identifier, _, _ in chunk_rows(store, "v", "a.md")]
    assert matrix.ids.tolist() == ids
    stats = store.stats()
    assert {key: stats[key] for key in ("notes", "chunks", "links", "tags", "vaults")} == {
        "notes": 1,
        "chunks": 3,
        "links": 2,
        "tags": 2,
        "vaults": 1,
    }
    # The attachment link is not a note link, so it is never "unresolved".
    store.finalize(["v"])
    assert store.stats()["unresolved_links"] == 1
    assert store.stats()["database_bytes"] > 0


def test_get_note_of_an_unknown_path_is_none(store: Store) -> None:
    assert store.get_note("v", "nope.md") is None
    assert store.paths_by_hash("v", "0" * 64) == []


# ------------------------------------------------------------------------- links


def test_finalize_resolves_links_with_obsidian_rules(store: Store) -> None:
    notes = [
        make_note("Projects/Plan.md", ["plan"], aliases=["The Plan"]),
        make_note("Archive/Plan.md", ["old plan"]),
        make_note(
            "Projects/Today.md",
            ["today"],
            links=[
                link("Plan"),
                link("The Plan"),
                link("Missing"),
                link("photo.jpg", kind="embed"),
            ],
        ),
    ]
    for note in notes:
        store.write_note("v", note, vectors_for(note), 1, 1)
    assert store.stats()["unresolved_links"] == 3  # nothing resolved before finalize
    steps = dict(store.finalize(["v"]))
    assert {"links:v", "vector_index"} <= set(steps)
    detail = store.get_note("v", "Projects/Today.md")
    assert detail is not None
    resolved = {item.target: item.resolved_path for item in detail.links}
    assert resolved == {
        "Plan": "Projects/Plan.md",
        "The Plan": "Projects/Plan.md",
        "Missing": None,
        "photo.jpg": None,
    }
    assert store.stats()["unresolved_links"] == 1
    # Nothing pending any more: a second finalize only checks the vector index.
    assert [name for name, _ in store.finalize(["v"])] == ["vector_index"]


def test_a_new_note_resolves_links_that_were_dangling(store: Store) -> None:
    source = make_note("Source.md", ["s"], links=[link("Later")])
    store.write_note("v", source, vectors_for(source), 1, 1)
    store.finalize(["v"])
    assert store.stats()["unresolved_links"] == 1
    later = make_note("Later.md", ["l"])
    store.write_note("v", later, vectors_for(later), 1, 1)
    store.finalize(["v"])
    assert store.stats()["unresolved_links"] == 0
    detail = store.get_note("v", "Later.md")
    assert detail is not None and [b.source_path for b in detail.backlinks] == ["Source.md"]


def test_a_rewrite_keeps_resolved_targets_until_the_next_finalize(store: Store) -> None:
    target = make_note("Target.md", ["t"])
    source = make_note("Source.md", ["s"], links=[link("Target")])
    store.write_note("v", target, vectors_for(target), 1, 1)
    store.write_note("v", source, vectors_for(source), 1, 1)
    store.finalize(["v"])
    edited = make_note("Source.md", ["s2"], links=[link("Target", line=3), link("Other")])
    store.write_note("v", edited, vectors_for(edited), 2, 2)
    detail = store.get_note("v", "Source.md")
    assert detail is not None
    assert [item.resolved_path for item in detail.links] == ["Target.md", None]


def test_link_keys_and_set_link_targets(store: Store) -> None:
    notes = [
        make_note("A.md", ["a"], links=[link("B"), link("B", line=2), link("x.png")]),
        make_note("B.md", ["b"], aliases=["Bee"]),
        make_note("C.md", ["c"]),
    ]
    for note in notes:
        store.write_note("v", note, vectors_for(note), 1, 1)
    assert store.link_keys("v") == [LinkKey("A.md", "b")]
    assert store.note_paths_and_aliases("v") == [("A.md", ()), ("B.md", ("Bee",)), ("C.md", ())]
    assert store.set_link_targets("v", {LinkKey("A.md", "b"): "C.md"}) == 2
    detail = store.get_note("v", "A.md")
    assert detail is not None
    assert [item.resolved_path for item in detail.links] == ["C.md", "C.md", None]
    assert store.set_link_targets("v", {LinkKey("A.md", "b"): "C.md"}) == 0  # no change
    assert store.set_link_targets("v", {LinkKey("A.md", "b"): "gone.md"}) == 2
    assert store.stats()["unresolved_links"] == 2


def test_set_link_targets_handles_a_large_vault_in_bulk(store: Store) -> None:
    links = [link(f"Note {index % 500}", line=index) for index in range(2000)]
    hub = make_note("Hub.md", ["hub"], links=links)
    store.write_note("v", hub, vectors_for(hub), 1, 1)
    for index in range(0, 500, 2):
        note = make_note(f"Note {index}.md", ["n"])
        store.write_note("v", note, unit_vectors(1, index), 1, 1)
    store.resolve_links("v")
    stats = store.stats()
    assert stats["links"] == 2000
    assert stats["unresolved_links"] == 1000


def test_checkpoint_after_bm25_rebuild_with_an_idle_reader(tmp_path: Path) -> None:
    """An idle thread's reader must never hold a transaction that blocks CHECKPOINT."""
    import numpy as np

    from jarvisd.config import Config
    from jarvisd.indexing.markdown import parse_note

    store = Store(tmp_path / "idle.duckdb", Config().storage, 384)
    note = parse_note("a.md", b"# A\n\nhello world [[b]]")
    store.write_note("v", note, np.full((len(note.chunks), 384), 0.05, np.float32), 10, 10)
    store.stats()  # this thread's reader has run a query and gone idle
    store.get_note("v", "a.md")
    store.rebuild_bm25()
    store.checkpoint()
    assert [step for step, _seconds in store.maintenance()][-1] == "checkpoint"
    store.close()
