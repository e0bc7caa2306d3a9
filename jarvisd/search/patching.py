"""The next search snapshot after an index change: the last one patched, at the cost of the edit.

A patch reads only the changed notes (`Store.read_snapshot_patch`, one
transaction) and then touches only what they changed:

- their new chunks go after the last row, in place in the shared buffers
  (`search.rows`), with their vectors, text and note rows;
- their old chunks are marked dead in a copy of the live mask (one byte a
  row: a reader of the last snapshot keeps its own mask, nothing it reads
  is overwritten);
- their note rows get the new note info (a new list of references); a new
  note gets a row at the end (note ids only grow, so rows stay in id order);
- the BM25 postings of the new chunks go at the end of their terms' tails
  (`search.postings`), df and the collection statistics come fresh.

So a one-note edit costs the same at 200 notes as at 14,000 (see
`benchmarks/snapshot_patch.py`). Dead rows and tails grow with edits; past
`COMPACT_SHARE` of the rows (or of the postings) the snapshot `wants_compaction`
and the service builds one whole off the hot path, which drops them.
Past `PATCH_LIMIT_SHARE` (compactions kept losing races with edits) or for a
burst touching `PATCH_NOTES_SHARE` of the notes, the next snapshot is built
whole inline. Whatever the store did that a patch cannot express (a reset, ids
below those held) is built whole too.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from jarvisd.search.postings import patch_of
from jarvisd.search.rows import NewRows, SubjectBuffer
from jarvisd.search.snapshot import (
    BoolArray,
    IntArray,
    NoteInfo,
    Snapshot,
    build_snapshot,
    note_info,
    note_rows_in,
    viewing,
)
from jarvisd.store import Changes, SnapshotPatchRead, Store

PATCH_NOTES_SHARE = 0.25  # a burst changing this share of the notes: built whole
COMPACT_SHARE = 0.2  # dead rows (or appended postings) past this share: compact off the path
PATCH_LIMIT_SHARE = 0.5  # past this, built whole inline
MIN_POSTINGS = 10_000  # the postings shares count from at least this many


class NotPatchable(Exception):
    """The store changed in a way a patch cannot express (ids below those held)."""


def refresh_snapshot(
    store: Store, base: Snapshot | None, generation: int, with_vectors: bool
) -> Snapshot:
    """The next snapshot: `base` patched with what the store changed since it was built,
    or a whole build (at start-up, after a reset, with the HNSW index, past the shares
    above). The changes taken are given back if the build fails, so none is lost."""
    changes = store.take_changes()
    try:
        if _patchable(store, base, changes, with_vectors):
            assert base is not None
            try:
                return patch_snapshot(store, base, changes, generation)
            except NotPatchable:
                pass
        return build_snapshot(store, generation, with_vectors)
    except BaseException:
        store.give_back_changes(changes)
        raise


def wants_compaction(snapshot: Snapshot, share: float = COMPACT_SHARE) -> bool:
    """Dead rows, or postings appended by patches, past `share` of what it holds."""
    if snapshot.dead_chunks > share * max(1, snapshot.chunk_count):
        return True
    postings = snapshot.postings
    return postings.patched_postings > share * max(MIN_POSTINGS, postings.csr_postings)


def _patchable(store: Store, base: Snapshot | None, changes: Changes, with_vectors: bool) -> bool:
    if base is None or changes.everything or base.vector_table is not None:
        return False
    if base.buffers is None or (base.vectors is not None) != with_vectors:
        return False
    if len(changes.notes) > PATCH_NOTES_SHARE * max(1, base.note_count):
        return False
    if wants_compaction(base, PATCH_LIMIT_SHARE):
        return False
    return store.vector_table is None


def patch_snapshot(store: Store, base: Snapshot, changes: Changes, generation: int) -> Snapshot:
    """`base` with the changed notes' chunks, vectors, postings and note info replaced by the
    store's, read in one transaction; every other row is shared, nothing is rewritten."""
    started = time.perf_counter()
    changed = np.asarray(sorted(changes.notes), dtype=np.int64)

    def unseen(chunk_ids: IntArray) -> IntArray:
        # A chunk id's indexed text never changes (a retitled note's chunks get new
        # ids), so chunks `base` holds already (touches, renames) have their postings.
        _, known = base.rows_of(chunk_ids)
        return chunk_ids[~known]

    with_vectors = base.vectors is not None
    read = store.read_snapshot_patch(changed.tolist(), changes.terms, with_vectors, unseen)
    chunks = read.chunks
    _, known = base.rows_of(chunks.ids)
    fresh = ~known
    if fresh.any() and base.chunk_count and chunks.ids[fresh][0] <= base.chunk_ids[-1]:
        raise NotPatchable("a new chunk id below those held")
    note_ids, notes, appended = _note_rows(base, read, changed)
    live_notes = np.concatenate((base.live_notes, np.zeros(appended, dtype=np.bool_)))
    changed_rows, had_row = base.note_rows_of(changed)
    changed_rows = changed_rows[had_row]
    live_notes[changed_rows] = False
    new_note_rows = np.searchsorted(note_ids, chunks.note_ids).astype(np.int64)
    live_notes[new_note_rows] = True
    live, killed = _killed(base, changed_rows, chunks.ids)
    rows = base.chunk_count
    new = _new_rows(read, fresh, new_note_rows)
    assert base.buffers is not None
    buffers = base.buffers.appended(rows, new) if len(new) else base.buffers
    snapshot = Snapshot(
        generation=generation,
        notes=notes,
        note_ids=note_ids,
        live_notes=live_notes,
        live=np.concatenate((live, np.ones(len(new), dtype=np.bool_))),
        buffers=buffers,
        dead_chunks=base.dead_chunks + killed,
        text_bytes=base.text_bytes + sum(len(text) for text in new.texts.tolist()),
        postings=base.postings.patched(patch_of(read.bm25)),
        patched_notes=int(changed.shape[0]),
        **viewing(buffers, rows + len(new), with_vectors),  # type: ignore[arg-type]
        **_patched_subjects(base, read, note_ids, changed_rows),
    )
    snapshot.build_seconds = time.perf_counter() - started
    return snapshot


def _patched_subjects(
    base: Snapshot, read: SnapshotPatchRead, note_ids: IntArray, changed_rows: IntArray
) -> dict[str, Any]:
    """The changed notes' subject vectors appended (`search.rows.SubjectBuffer`), their note
    rows pointed at them; a changed note without one now points nowhere."""
    subject_rows = np.full(note_ids.shape[0], -1, dtype=np.int64)
    subject_rows[: base.subject_rows.shape[0]] = base.subject_rows
    subject_rows[changed_rows] = -1
    places, known = note_rows_in(note_ids, read.subjects.note_ids)
    vectors = read.subjects.vectors[known]
    held = 0 if base.subjects is None else int(base.subjects.shape[0])
    if base.subject_buffer is None:  # a snapshot made without subjects: only these have one
        buffer, held = SubjectBuffer.of(vectors), 0
        subject_rows[:] = -1
    else:
        buffer = base.subject_buffer.appended(held, vectors)
    subject_rows[places[known]] = held + np.arange(vectors.shape[0], dtype=np.int64)
    return {
        "subjects": buffer.vectors[: held + vectors.shape[0]],
        "subject_rows": subject_rows,
        "subject_buffer": buffer,
    }


def _new_rows(read: SnapshotPatchRead, fresh: BoolArray, note_rows: IntArray) -> NewRows:
    """The chunks read that `base` lacks, with their vectors and note rows."""
    chunks, vectors = read.chunks, None
    if read.matrix is not None:
        if not np.array_equal(read.matrix.ids, chunks.ids):
            raise RuntimeError("chunk ids differ between two reads of one transaction")
        vectors = read.matrix.vectors[fresh]
    return NewRows(
        chunk_ids=chunks.ids[fresh],
        chunk_notes=note_rows[fresh],
        texts=chunks.texts[fresh],
        headings=chunks.headings[fresh],
        first_lines=chunks.first_lines[fresh],
        last_lines=chunks.last_lines[fresh],
        vectors=vectors,
    )


def _note_rows(
    base: Snapshot, read: SnapshotPatchRead, changed: IntArray
) -> tuple[IntArray, list[NoteInfo], int]:
    """The note ids and infos after the patch, and how many rows it appended."""
    having = np.unique(read.chunks.note_ids)
    _, present = base.note_rows_of(having)
    added = having[~present]
    if added.shape[0] and base.note_count and added[0] <= base.note_ids[-1]:
        # A note that had no chunks (so no row) has some now: a row in the middle.
        raise NotPatchable("a note below the last note row gains its first chunks")
    note_ids = np.concatenate((base.note_ids, added)).astype(np.int64)
    infos = {row.note_id: row for row in read.notes}
    notes = list(base.notes)
    notes.extend(note_info(infos, int(note_id)) for note_id in added.tolist())
    rows, had_row = base.note_rows_of(changed)
    for row, note_id in zip(rows[had_row].tolist(), changed[had_row].tolist(), strict=True):
        if note_id in infos:  # a note gone keeps its (dead) row's last info
            notes[row] = note_info(infos, note_id)
    return note_ids, notes, int(added.shape[0])


def _killed(base: Snapshot, note_rows: IntArray, kept_ids: IntArray) -> tuple[BoolArray, int]:
    """The live mask with the changed notes' rows that are not among `kept_ids` dead."""
    live = base.live.copy()
    if note_rows.shape[0] == 0:
        return live, 0
    if note_rows.shape[0] <= 8:  # a few compares beat np.isin's sort
        owned = base.chunk_notes == note_rows[0]
        for row in note_rows[1:].tolist():
            owned |= base.chunk_notes == row
    else:
        owned = np.isin(base.chunk_notes, note_rows)
    candidates: npt.NDArray[np.int64] = np.flatnonzero(owned & base.live)
    going = candidates[~np.isin(base.chunk_ids[candidates], kept_ids)]
    live[going] = False
    return live, int(going.shape[0])
