"""A search snapshot patched with each edit equals one built whole from the same store."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fixtures_store import make_note, storage_config, vectors_for
from test_store_bm25 import QUERIES, WORDS

from jarvisd.search.keyword import Stemmer, keyword_scores, query_stems
from jarvisd.search.snapshot import Snapshot, build_snapshot, refresh_snapshot
from jarvisd.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "jarvis.duckdb", storage_config())
    yield opened
    opened.close()


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12)))


def _write(store: Store, rng: random.Random, path: str, step: int) -> None:
    texts = [_text(rng) for _ in range(rng.randint(0, 4))]
    tags = rng.sample(["coffee", "coffee/espresso", "baking", "daily"], rng.randint(0, 2))
    note = make_note(path, texts, tags=tags)
    store.write_note("v", note, vectors_for(note, step), len(path), step)


def _edit(store: Store, rng: random.Random, paths: list[str], step: int) -> None:
    kind = rng.choice(["create", "rewrite", "rewrite", "rename", "delete", "touch"])
    if kind == "create" or len(paths) < 3:
        path = f"{rng.choice(['a', 'b/c'])}/{_text(rng)[:10] or 'n'} {step}.md"
        _write(store, rng, path, step)
        paths.append(path)
    elif kind == "rewrite":
        _write(store, rng, rng.choice(paths), step)
    elif kind == "rename":
        old = rng.choice(paths)
        new = f"moved/{_text(rng)[:8] or 'm'} {step}.md"
        assert store.rename_note("v", old, new, 1, step)
        paths[paths.index(old)] = new
    elif kind == "delete":
        path = rng.choice(paths)
        assert store.delete_note("v", path)
        paths.remove(path)
    else:
        assert store.touch_note("v", rng.choice(paths), 1, 10_000 + step)


def _assert_equal(store: Store, patched: Snapshot, whole: Snapshot) -> None:
    assert patched.notes == whole.notes
    for name in ("starts", "chunk_notes", "chunk_ids", "first_lines", "last_lines"):
        assert np.array_equal(getattr(patched, name), getattr(whole, name)), name
    assert patched.texts.tolist() == whole.texts.tolist()
    assert [list(h) for h in patched.headings] == [list(h) for h in whole.headings]
    assert patched.vectors is not None and whole.vectors is not None
    assert np.array_equal(patched.vectors, whole.vectors)
    cursor = store.reader()
    for query in QUERIES:
        stems = query_stems(cursor, Stemmer(), query)
        ours = keyword_scores(patched, patched.postings.score(stems))
        theirs = keyword_scores(whole, whole.postings.score(stems))
        assert np.array_equal(np.isfinite(ours.scores), np.isfinite(theirs.scores)), query
        finite = np.isfinite(theirs.scores)
        assert np.allclose(ours.scores[finite], theirs.scores[finite], rtol=1e-12), query
        assert np.array_equal(ours.chunks[finite], theirs.chunks[finite]), query
        assert ours.bound == pytest.approx(theirs.bound, rel=1e-12)


def test_patches_through_random_edits_equal_whole_builds(store: Store) -> None:
    rng = random.Random(12)
    paths: list[str] = []
    for step in range(60):  # enough notes that 1-3 edits stay under the patch share
        paths.append(f"start/{step}.md")
        _write(store, rng, paths[-1], step)
    snapshot = refresh_snapshot(store, None, 0, with_vectors=True)
    assert snapshot.patched_notes == 0  # the first one is built whole
    patches = 0
    for generation in range(1, 40):
        for _ in range(rng.randint(1, 3)):
            _edit(store, rng, paths, 100 * generation + _)
        snapshot = refresh_snapshot(store, snapshot, generation, with_vectors=True)
        patches += snapshot.patched_notes > 0
        _assert_equal(store, snapshot, build_snapshot(store, generation, with_vectors=True))
    assert patches > 30  # most generations were patches, not whole builds


def test_a_touch_patches_only_the_modified_time(store: Store) -> None:
    rng = random.Random(1)
    for step in range(20):
        _write(store, rng, f"n{step}.md", step)
    snapshot = refresh_snapshot(store, None, 0, with_vectors=True)
    assert store.touch_note("v", "n3.md", 5, 1_685_577_600_000_000_000)
    patched = refresh_snapshot(store, snapshot, 1, with_vectors=True)
    assert patched.patched_notes == 1
    modified = {note.path: note.mtime_ns for note in patched.notes}
    if "n3.md" in modified:  # a note without chunks is not in the snapshot
        assert modified["n3.md"] == 1_685_577_600_000_000_000
    _assert_equal(store, patched, build_snapshot(store, 1, with_vectors=True))


def test_a_failed_patch_gives_its_changes_back(store: Store) -> None:
    rng = random.Random(2)
    for step in range(20):
        _write(store, rng, f"n{step}.md", step)
    snapshot = refresh_snapshot(store, None, 0, with_vectors=True)
    _write(store, rng, "n1.md", 50)

    class Broken(Exception):
        pass

    def fail(*_args: object) -> None:
        raise Broken

    original = store.read_snapshot_patch
    store.read_snapshot_patch = fail  # type: ignore[method-assign,assignment]
    with pytest.raises(Broken):
        refresh_snapshot(store, snapshot, 1, with_vectors=True)
    store.read_snapshot_patch = original  # type: ignore[method-assign]
    patched = refresh_snapshot(store, snapshot, 2, with_vectors=True)
    assert patched.patched_notes == 1
    _assert_equal(store, patched, build_snapshot(store, 2, with_vectors=True))
