"""A search snapshot patched with each edit equals one built whole from the same store."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures_store import make_note, storage_config, unit_vectors, vectors_for
from test_store_bm25 import QUERIES, WORDS

from jarvisd.search.hits import NoteScores
from jarvisd.search.keyword import keyword_scores
from jarvisd.search.patching import refresh_snapshot, wants_compaction
from jarvisd.search.semantic import credit_subjects, semantic_scores
from jarvisd.search.snapshot import Snapshot, build_snapshot
from jarvisd.search.terms import Stemmer, query_stems
from jarvisd.store import Changes, Store


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
    # Most notes with a subject vector, some without (as before the index run encodes it).
    subject = (f"s{step}", unit_vectors(1, 5000 + step)[0]) if rng.random() < 0.8 else None
    store.write_note("v", note, vectors_for(note, step), len(path), step, subject)


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


def _live(snapshot: Snapshot) -> dict[str, Any]:
    """What a snapshot holds, whatever its layout: live notes and rows, in id order."""
    rows = np.flatnonzero(snapshot.live)
    return {
        "notes": snapshot.listed_notes(),
        "chunk_ids": snapshot.chunk_ids[rows].tolist(),
        "chunk_notes": [snapshot.notes[row].note_id for row in snapshot.chunk_notes[rows]],
        "texts": snapshot.texts[rows].tolist(),
        "headings": [list(heading) for heading in snapshot.headings[rows]],
        "lines": (snapshot.first_lines[rows].tolist(), snapshot.last_lines[rows].tolist()),
        "sizes": snapshot.chunk_sizes[snapshot.live_notes].tolist(),
    }


def _by_note(snapshot: Snapshot, scores: NoteScores) -> dict[int, tuple[float, int]]:
    """Each found note's score and the chunk id that earned it, by note id."""
    return {
        snapshot.notes[row].note_id: (
            float(scores.scores[row]),
            int(snapshot.chunk_ids[scores.chunks[row]]),
        )
        for row in np.flatnonzero(np.isfinite(scores.scores)).tolist()
    }


def _assert_equal(store: Store, patched: Snapshot, whole: Snapshot) -> None:
    assert _live(patched) == _live(whole)
    assert patched.vectors is not None and whole.vectors is not None
    assert np.array_equal(patched.vectors[patched.live], whole.vectors)
    assert patched.live_chunk_count == whole.chunk_count and whole.dead_chunks == 0
    for query in QUERIES:
        stems = query_stems(store, Stemmer(), query)
        ours = keyword_scores(patched, patched.postings.score(stems))
        theirs = keyword_scores(whole, whole.postings.score(stems))
        mine, reference = _by_note(patched, ours), _by_note(whole, theirs)
        assert mine.keys() == reference.keys(), query
        for note_id, (score, chunk) in reference.items():
            assert mine[note_id][0] == pytest.approx(score, rel=1e-12), query
            assert mine[note_id][1] == chunk, query
        assert ours.bound == pytest.approx(theirs.bound, rel=1e-12)
    for seed in range(3):
        query = unit_vectors(1, 1000 + seed)[0]
        mine = _by_note(patched, semantic_scores(patched, query))
        reference = _by_note(whole, semantic_scores(whole, query))
        assert mine.keys() == reference.keys() and len(mine) == len(whole.listed_notes())
        for note_id, (score, chunk) in reference.items():
            # float32 BLAS sums a row differently by where it sits in the matrix: ~1e-7.
            assert mine[note_id][0] == pytest.approx(score, abs=1e-6), note_id
            assert mine[note_id][1] == chunk, note_id
        # The subjects: the same vector per live note, so the same credit.
        credited = _by_note(patched, credit_subjects(patched, query, _scores(patched, query), 1))
        expected = _by_note(whole, credit_subjects(whole, query, _scores(whole, query), 1))
        assert credited.keys() == expected.keys()
        for note_id, (score, _) in expected.items():
            assert credited[note_id][0] == pytest.approx(score, abs=1e-6), note_id
    assert _subjects(patched) == _subjects(whole)


def _scores(snapshot: Snapshot, query: np.ndarray[Any, Any]) -> NoteScores:
    return semantic_scores(snapshot, query)


def _subjects(snapshot: Snapshot) -> dict[int, list[float]]:
    """Each live note's subject vector (rounded), by note id."""
    assert snapshot.subjects is not None
    return {
        snapshot.notes[row].note_id: np.round(
            snapshot.subjects[snapshot.subject_rows[row]], 6
        ).tolist()
        for row in np.flatnonzero(snapshot.live_notes & (snapshot.subject_rows >= 0)).tolist()
    }


def test_patches_through_random_edits_equal_whole_builds(store: Store) -> None:
    """Many edits: dead rows pile up until compaction (a whole build) drops them, and
    every patch in between, from the compacted one or not, equals a whole build."""
    rng = random.Random(12)
    paths: list[str] = []
    for step in range(60):  # enough notes that 1-3 edits stay under the patch share
        paths.append(f"start/{step}.md")
        _write(store, rng, paths[-1], step)
    snapshot = refresh_snapshot(store, None, 0, with_vectors=True)
    assert snapshot.patched_notes == 0  # the first one is built whole
    patches = compactions = 0
    most_dead = 0
    for generation in range(1, 90):
        for _ in range(rng.randint(1, 3)):
            _edit(store, rng, paths, 100 * generation + _)
        snapshot = refresh_snapshot(store, snapshot, generation, with_vectors=True)
        patches += snapshot.patched_notes > 0
        most_dead = max(most_dead, snapshot.dead_chunks)
        _assert_equal(store, snapshot, build_snapshot(store, generation, with_vectors=True))
        if wants_compaction(snapshot):  # what the service does off the hot path
            snapshot = build_snapshot(store, generation, with_vectors=True)
            compactions += 1
    assert patches > 70  # most generations were patches, not whole builds
    assert compactions >= 2 and most_dead > 0


def test_a_patch_changes_nothing_an_older_snapshot_reads(store: Store) -> None:
    """Readers of the last snapshot keep their generation; patching it twice (a branch)
    copies instead of writing over what the other patch appended."""
    rng = random.Random(5)
    for step in range(30):
        _write(store, rng, f"n{step}.md", step)
    base = refresh_snapshot(store, None, 0, with_vectors=True)
    before = _live(base)
    vectors = np.array(base.vectors)
    for step in range(3):
        _write(store, rng, f"n{step}.md", 50 + step)
    taken = store.take_changes()
    store.give_back_changes(Changes(notes=set(taken.notes), terms=set(taken.terms)))
    first = refresh_snapshot(store, base, 1, with_vectors=True)
    assert first.patched_notes == 3 and first.buffers is base.buffers  # appended in place
    assert _live(base) == before and np.array_equal(base.vectors, vectors)
    _assert_equal(store, first, build_snapshot(store, 1, with_vectors=True))
    first_holds, first_vectors = _live(first), np.array(first.vectors)
    _write(store, rng, "n7.md", 60)
    _write(store, rng, "n1.md", 61)
    # Patched again from `base`: the changes since `base` are the first patch's and these.
    store.give_back_changes(taken)
    branch = refresh_snapshot(store, base, 2, with_vectors=True)
    assert branch.patched_notes == 4 and branch.buffers is not first.buffers
    _assert_equal(store, branch, build_snapshot(store, 2, with_vectors=True))
    assert _live(first) == first_holds and np.array_equal(first.vectors, first_vectors)
    assert _live(base) == before


def test_a_touch_patches_only_the_modified_time(store: Store) -> None:
    rng = random.Random(1)
    for step in range(20):
        _write(store, rng, f"n{step}.md", step)
    snapshot = refresh_snapshot(store, None, 0, with_vectors=True)
    assert store.touch_note("v", "n3.md", 5, 1_685_577_600_000_000_000)
    patched = refresh_snapshot(store, snapshot, 1, with_vectors=True)
    assert patched.patched_notes == 1
    modified = {note.path: note.mtime_ns for note in patched.listed_notes()}
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
