"""What an indexing run has to do, and the parse stage of its pipeline.

`plan_vault` compares a scan of the vault with what the store holds: an
unchanged stat costs nothing more; a changed stat costs a read and a hash, which
tells a touch (same content) and a rename (known content, new path) from a
real change. `read_and_parse` turns a window of changed files into parsed notes
plus the list of chunk texts that actually need the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jarvisd.config import IndexingConfig, VaultConfig
from jarvisd.indexing.markdown import NoteError, parse_note
from jarvisd.indexing.parsed import ParsedNote
from jarvisd.indexing.vault import (
    FileInfo,
    NoteFileError,
    PathOutsideVault,
    Skipped,
    open_note,
    read_note_bytes,
    scan_paths,
    scan_vault,
)
from jarvisd.store import Store, Subject, text_hash

HASH_BLOCK = 1 << 20


@dataclass
class Plan:
    files_seen: int = 0
    hashed: int = 0
    unchanged: list[FileInfo] = field(default_factory=list)
    touched: list[FileInfo] = field(default_factory=list)
    renamed: list[tuple[str, FileInfo]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    to_index: list[FileInfo] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def changes(self) -> int:
        """Changes to what the index holds (a touch changes only a stat)."""
        return len(self.renamed) + len(self.deleted) + len(self.to_index)


def file_digest(path_on_disk: Path, rel_path: str, limit: int) -> str | None:
    """The file's SHA-256; None past `limit` bytes (it grew since the scan: the read
    that follows skips it), so a file that keeps growing is not hashed for ever.
    Opened by `open_note`: a FIFO in its place since the scan hung the run here."""
    digest = hashlib.sha256()
    read = 0
    with open_note(path_on_disk, rel_path) as handle:
        while block := handle.read(HASH_BLOCK):
            read += len(block)
            if read > limit:
                return None
            digest.update(block)
    return digest.hexdigest()


def plan_vault(
    store: Store,
    vault: VaultConfig,
    max_file_bytes: int,
    full: bool,
    paths: Collection[str] | None = None,
) -> Plan:
    """What changed in the vault; with `paths` (vault-relative, as a watcher reported
    them), only at those paths and in those folders: a stat each, not one per note, and
    only their notes' stored states read."""
    if paths is None or full:
        scan = scan_vault(vault.root, vault.exclude, max_file_bytes)
        states = store.file_states(vault.name)
        scope: Callable[[str], bool] = lambda _path: True  # noqa: E731
    else:
        scan, covered = scan_paths(vault.root, vault.exclude, max_file_bytes, paths)
        folders = tuple(path + "/" for path in covered)
        scope = lambda path: path in covered or path.startswith(folders)  # noqa: E731
        # What the plan compares: the files found, and the notes stored where the scan
        # covered (those it did not find are gone); the rest of the vault is not read.
        found = {info.path for info in scan.files} | {item.path for item in scan.skipped}
        states = store.file_states(vault.name, found | covered, folders)
    plan = Plan(files_seen=len(scan.files) + len(scan.skipped), skipped=list(scan.skipped))
    # A skipped file is still there: its indexed version stays rather than vanish.
    present = {info.path for info in scan.files} | {item.path for item in scan.skipped}
    gone = {path: known for path, known in states.items() if path not in present and scope(path)}
    gone_by_hash: dict[str, list[str]] = {}
    for path, known in gone.items():
        gone_by_hash.setdefault(known.content_hash, []).append(path)
    for info in scan.files:
        state = states.get(info.path)
        if (
            state is not None
            and not full
            and (state.size, state.mtime_ns)
            == (
                info.size,
                info.mtime_ns,
            )
        ):
            plan.unchanged.append(info)
            continue
        if full:
            plan.to_index.append(info)
            continue
        plan.hashed += 1
        try:
            digest = file_digest(vault.root / info.path, info.path, max_file_bytes)
        except NoteFileError as error:
            plan.skipped.append(Skipped(info.path, error.reason, error.detail))
            continue
        except OSError as error:
            plan.skipped.append(Skipped(info.path, "unreadable", error.strerror or str(error)))
            continue
        if digest is None:
            plan.to_index.append(info)
        elif state is not None and digest == state.content_hash:
            plan.touched.append(info)
        elif state is None and gone_by_hash.get(digest):
            old_path = gone_by_hash[digest].pop()
            del gone[old_path]
            plan.renamed.append((old_path, info))
        else:
            plan.to_index.append(info)
    plan.deleted = sorted(gone)
    return plan


@dataclass
class ParsedItem:
    info: FileInfo
    note: ParsedNote
    # Per chunk: >= 0 is a row of the window's encoded texts; < 0 is -1 - a reused vector.
    slots: list[int]
    # The note's subject text (`ParsedNote.subject`): its hash and slot; None: it has none.
    subject_hash: str = ""
    subject_slot: int | None = None


@dataclass
class ParsedBatch:
    notes: list[ParsedItem] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    reused_vectors: list[np.ndarray] = field(default_factory=list)
    reused: int = 0
    subjects: int = 0  # of `texts`, how many are subjects (the rest are chunks)

    def subject_for(self, item: ParsedItem, encoded: np.ndarray) -> Subject | None:
        """(text hash, vector) of the item's subject, or None."""
        slot = item.subject_slot
        if slot is None:
            return None
        vector = encoded[slot] if slot >= 0 else self.reused_vectors[-1 - slot]
        return item.subject_hash, np.asarray(vector, dtype=np.float32)

    def vectors_for(self, item: ParsedItem, encoded: np.ndarray) -> np.ndarray:
        rows = [
            encoded[slot] if slot >= 0 else self.reused_vectors[-1 - slot] for slot in item.slots
        ]
        return np.vstack(rows).astype(np.float32, copy=False)


def read_and_parse(
    store: Store,
    vault: VaultConfig,
    window: Sequence[FileInfo],
    indexing: IndexingConfig,
    count_tokens: Callable[[str], int] | None,
    *,
    reuse_vectors: bool,
) -> ParsedBatch:
    batch = ParsedBatch()
    parsed: list[tuple[FileInfo, ParsedNote]] = []
    for info in window:
        try:
            raw = read_note_bytes(vault.root, info.path, indexing.max_file_bytes)
            note = parse_note(
                info.path,
                raw,
                chunk_tokens=indexing.chunk_tokens,
                chunk_overlap=indexing.chunk_overlap,
                count_tokens=count_tokens,
            )
        except NoteError as error:
            batch.failed.append((info.path, error.reason, str(error)))
            continue
        except NoteFileError as error:
            batch.failed.append((info.path, error.reason, error.detail))
            continue
        except (OSError, PathOutsideVault) as error:
            batch.failed.append((info.path, "unreadable", str(error)))
            continue
        # The stat that goes with these bytes: the file may have changed since the scan.
        parsed.append((FileInfo(info.path, len(raw), info.mtime_ns), note))
    hashes = [text_hash(chunk.embed_text) for _, note in parsed for chunk in note.chunks]
    known = store.vectors_for_hashes(sorted(set(hashes))) if reuse_vectors and hashes else {}
    # Subjects are encoded in the same batch as the chunks; a stored one is reused.
    subjects = {text_hash(note.subject): note.subject for _, note in parsed if note.subject}
    if reuse_vectors and subjects:
        known |= store.subject_vectors_for_hashes(sorted(set(subjects) - set(known)))
    _assign_slots(batch, parsed, hashes, known)
    return batch


def _assign_slots(
    batch: ParsedBatch,
    parsed: list[tuple[FileInfo, ParsedNote]],
    hashes: list[str],
    known: dict[str, np.ndarray],
) -> None:
    """Each chunk gets a stored vector, or a row of the texts to encode (deduplicated)."""
    text_rows: dict[str, int] = {}
    reused_rows: dict[str, int] = {}
    position = 0
    for info, note in parsed:
        slots = []
        for chunk in note.chunks:
            digest = hashes[position]
            position += 1
            if digest in known:
                if digest not in reused_rows:
                    reused_rows[digest] = len(batch.reused_vectors)
                    batch.reused_vectors.append(known[digest])
                slots.append(-1 - reused_rows[digest])
                batch.reused += 1
            else:
                if digest not in text_rows:
                    text_rows[digest] = len(batch.texts)
                    batch.texts.append(chunk.embed_text)
                slots.append(text_rows[digest])
        item = ParsedItem(info, note, slots)
        if note.subject:
            item.subject_hash = digest = text_hash(note.subject)
            if digest in known:
                if digest not in reused_rows:
                    reused_rows[digest] = len(batch.reused_vectors)
                    batch.reused_vectors.append(known[digest])
                item.subject_slot = -1 - reused_rows[digest]
            else:
                if digest not in text_rows:
                    text_rows[digest] = len(batch.texts)
                    batch.texts.append(note.subject)
                    batch.subjects += 1
                item.subject_slot = text_rows[digest]
        batch.notes.append(item)
