"""The indexing pipeline in-process: real model, real DuckDB file, real files on disk."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jarvisd.config import Config, VaultConfig, diff_configs
from jarvisd.indexing.indexer import Indexer, RunReport
from jarvisd.indexing.planner import plan_vault, read_and_parse
from jarvisd.model.embedder import Embedder
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools
from jarvisd.store import Store

EXAMPLE = Path(__file__).resolve().parents[1] / "jarvisd" / "example_vault"


@pytest.fixture(scope="module")
def embedder() -> Iterator[Embedder]:
    model = Embedder(Config().embedding)
    model.load()
    yield model
    model.unload()


class Harness:
    def __init__(self, root: Path, embedder: Embedder, **indexing: Any) -> None:
        self.vault = root / "vault"
        self.config = Config.model_validate({
            "vaults": [{"name": "v", "path": str(self.vault),
                        "exclude": [".obsidian/**", "drafts/**"]}],
            "storage": {"database": str(root / "db" / "j.duckdb")},
            "indexing": {"watch": False, "max_file_bytes": "20KB", **indexing},
        })  # fmt: skip
        self.pools = Pools(self.config.threads)
        self.store = Store(self.config.database_path, self.config.storage, 384)
        self.metrics = Metrics()
        self.indexer = Indexer(self.config, self.store, embedder, self.pools, self.metrics)

    def run(self, full: bool = False) -> RunReport:
        return asyncio.run(self.indexer.run(full=full))

    def write(self, path: str, text: str) -> Path:
        target = self.vault / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return target

    def chunk_vectors(self, path: str) -> list[bytes]:
        rows = (
            self.store.reader()
            .execute(
                "SELECT c.embedding::VARCHAR FROM chunks c JOIN notes n ON n.id = c.note_id "
                "WHERE n.path = ? ORDER BY c.ordinal",
                [path],
            )
            .fetchall()
        )
        return [row[0] for row in rows]

    def paths(self) -> set[str]:
        return {row[0] for row in self.store.reader().execute("SELECT path FROM notes").fetchall()}

    def close(self) -> None:
        self.store.close()
        self.pools.shutdown()


@pytest.fixture
def harness(tmp_path: Path, embedder: Embedder) -> Iterator[Harness]:
    shutil.copytree(EXAMPLE, tmp_path / "vault")
    made = Harness(tmp_path, embedder)
    yield made
    made.close()


def test_first_run_indexes_everything_and_resolves_links(harness: Harness) -> None:
    report = harness.run()
    assert report.state == "done", report.error
    notes = len(list(EXAMPLE.rglob("*.md")))
    assert report.files_changed == notes and report.files_skipped == 0
    stats = harness.store.stats()
    assert stats["notes"] == notes
    assert stats["chunks"] == report.chunks > notes
    assert stats["note_links"] > 20
    assert stats["unresolved_links"] == 1  # the example vault has one deliberate dangling link


def test_unchanged_files_cost_a_stat_only(harness: Harness) -> None:
    harness.run()
    again = harness.run()
    assert again.files_unchanged == again.files_seen > 0
    assert again.files_hashed == 0 and again.chunks_encoded == 0 and again.files_changed == 0


def test_touch_without_change_is_not_reembedded(harness: Harness) -> None:
    harness.run()
    note = next(harness.vault.rglob("*.md"))
    os.utime(note, ns=(note.stat().st_atime_ns, note.stat().st_mtime_ns + 10**9))
    report = harness.run()
    assert report.files_touched == 1 and report.files_hashed == 1
    assert report.chunks_encoded == 0 and report.files_changed == 0
    assert harness.run().files_unchanged == report.files_seen


def test_edit_reembeds_only_changed_text(harness: Harness) -> None:
    path = "Notes/Long.md"
    sections = "\n\n".join(
        f"## Part {i}\n\nParagraph {i} about grinders and burrs." for i in range(5)
    )
    harness.write(path, f"# Long\n\n{sections}\n")
    harness.run()
    before = harness.chunk_vectors(path)
    harness.write(path, f"# Long\n\n{sections}\n\n## Part 9\n\nA brand new section on milk.\n")
    report = harness.run()
    assert report.files_changed == 1
    assert report.chunks_encoded == 1  # only the new section; the others reuse stored vectors
    assert report.chunks_reused == len(before)
    assert harness.chunk_vectors(path)[: len(before)] == before


def test_delete_removes_the_note_its_chunks_and_links(harness: Harness) -> None:
    harness.run()
    stats = harness.store.stats()
    victim = next(p for p in harness.vault.rglob("*.md") if "[[" in p.read_text(encoding="utf-8"))
    relative = victim.relative_to(harness.vault).as_posix()
    chunks = len(harness.chunk_vectors(relative))
    victim.unlink()
    report = harness.run()
    assert report.files_deleted == 1
    after = harness.store.stats()
    assert relative not in harness.paths()
    assert after["notes"] == stats["notes"] - 1
    assert after["chunks"] == stats["chunks"] - chunks
    assert after["links"] < stats["links"]


def test_rename_and_move_keep_vectors_without_encoding(harness: Harness) -> None:
    harness.run()
    source = next(harness.vault.rglob("*.md"))
    relative = source.relative_to(harness.vault).as_posix()
    vectors = harness.chunk_vectors(relative)
    moved = harness.vault / "Archive" / "Renamed note.md"
    moved.parent.mkdir()
    source.rename(moved)
    report = harness.run()
    assert report.files_renamed == 1 and report.chunks_encoded == 0
    assert report.files_deleted == 0 and report.files_changed == 0
    assert relative not in harness.paths()
    assert harness.chunk_vectors("Archive/Renamed note.md") == vectors


def test_a_run_over_named_paths_stats_only_them_and_ends_as_a_whole_run(
    harness: Harness,
) -> None:
    harness.run()
    root = harness.vault.resolve()
    harness.write("Home.md", "# Home\n\nRewritten: see [[Fresh]].\n")
    harness.write("New/Fresh.md", "# Fresh\n\nA fresh note on grinders.\n")
    (root / "Coffee" / "Beans.md").rename(root / "Coffee" / "Green beans.md")
    shutil.move(root / "Baking", root / "Bread")  # a folder moved: its old path and new
    (root / "Reading" / "Reading list.md").unlink()
    harness.write("Daily/Unnamed.md", "# Unnamed\n\nNot named to the run.\n")
    named = ["Home.md", "New/Fresh.md", "Coffee/Beans.md", "Coffee/Green beans.md"]
    named += ["Baking", "Bread", "Reading/Reading list.md", "Elsewhere/Never.md"]
    report = asyncio.run(harness.indexer.run(paths=[str(root / path) for path in named]))
    assert report.state == "done" and report.scope == "paths", report.error
    assert report.files_seen == 3 + len(list((root / "Bread").rglob("*.md")))
    assert report.files_renamed == 1 + len(list((root / "Bread").rglob("*.md")))
    assert report.files_deleted == 1 and report.files_changed == 2
    stored = harness.paths()
    assert "Daily/Unnamed.md" not in stored, "a path nobody named waits for a whole scan"
    assert not any(path.startswith(("Baking/", "Reading/Reading list")) for path in stored)
    links = dict(harness.store.reader().execute(
        "SELECT l.key, t.path FROM links l JOIN notes n ON n.id = l.note_id "
        "LEFT JOIN notes t ON t.id = l.target_note_id WHERE n.path = 'Home.md'"
    ).fetchall())  # fmt: skip
    assert links == {"fresh": "New/Fresh.md"}
    whole = harness.run()
    assert whole.scope == "vaults" and whole.files_changed == 1  # only Daily/Unnamed.md
    assert whole.files_renamed == whole.files_deleted == 0


def test_excludes_and_bad_files_are_skipped_with_reasons(harness: Harness, tmp_path: Path) -> None:
    harness.write(".obsidian/workspace.md", "# not a note")
    harness.write("drafts/secret.md", "# draft")
    (harness.vault / "binary.md").write_bytes(b"\x00\x01\x02PNG\x00" * 100)
    (harness.vault / "latin1.md").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    harness.write("huge.md", "# Huge\n\n" + "word " * 10_000)
    outside = tmp_path / "outside.md"
    outside.write_text("# outside", encoding="utf-8")
    (harness.vault / "escape.md").symlink_to(outside)
    # Issue 16: broken note links (to itself, a pair) were left out with no reason.
    (harness.vault / "self.md").symlink_to(harness.vault / "self.md")
    (harness.vault / "ping.md").symlink_to(harness.vault / "pong.md")
    (harness.vault / "pong.md").symlink_to(harness.vault / "ping.md")
    report = harness.run()
    assert report.state == "done"
    assert report.skipped_reasons == {
        "binary": 1, "not_utf8": 1, "too_large": 1, "symlink_outside": 1, "symlink_broken": 3,
    }  # fmt: skip
    paths = harness.paths()
    assert not {".obsidian/workspace.md", "drafts/secret.md", "binary.md", "latin1.md",
                "huge.md", "escape.md"} & paths  # fmt: skip
    assert len(paths) == len(list(EXAMPLE.rglob("*.md")))
    assert {item["reason"] for item in report.skipped} == set(report.skipped_reasons)


def test_a_skipped_file_keeps_its_indexed_version(harness: Harness) -> None:
    harness.write("flaky.md", "# Flaky\n\nGood content first.")
    harness.run()
    (harness.vault / "flaky.md").write_bytes(b"\xff\xfe broken \x00")
    report = harness.run()
    assert report.files_skipped == 1
    assert "flaky.md" in harness.paths()  # nothing is lost to a bad write


def test_full_run_reembeds_everything(harness: Harness) -> None:
    first = harness.run()
    full = harness.run(full=True)
    assert full.files_changed == first.files_changed
    assert full.chunks_encoded == full.chunks == first.chunks


def test_a_new_note_resolves_links_that_pointed_nowhere(harness: Harness) -> None:
    harness.write("Source.md", "# Source\n\nSee [[Not Yet Written]].")
    harness.run()
    unresolved = harness.store.stats()["unresolved_links"]
    harness.write("Later/Not Yet Written.md", "# Finally")
    harness.run()
    assert harness.store.stats()["unresolved_links"] == unresolved - 1


def test_metrics_are_counted(harness: Harness) -> None:
    harness.run()
    harness.run()
    value = harness.metrics.registry.get_sample_value
    notes = len(list(EXAMPLE.rglob("*.md")))
    assert value("jarvis_index_files_total", {"result": "indexed"}) == notes
    assert value("jarvis_index_files_total", {"result": "unchanged"}) == notes
    assert value("jarvis_index_notes") == notes
    assert (value("jarvis_index_chunks_total") or 0) > notes
    assert (value("jarvis_index_last_success_timestamp_seconds") or 0) > 0
    assert value("jarvis_index_duration_seconds_count") == 2


def test_new_chunking_reparses_every_note_and_reuses_vectors(harness: Harness) -> None:
    first = harness.run()
    same = harness.config.model_copy()
    harness.indexer.reconfigure(same, diff_configs(harness.config, same)[1])
    report = asyncio.run(harness.indexer.run(reparse=True))
    assert report.files_changed == first.files_changed  # every note parsed again
    assert report.chunks_encoded == 0 and report.chunks_reused == first.chunks
    smaller = harness.config.model_copy(
        update={"indexing": harness.config.indexing.model_copy(
            update={"chunk_tokens": 64, "chunk_overlap": 8})}
    )  # fmt: skip
    harness.indexer.reconfigure(smaller, diff_configs(harness.config, smaller)[1])
    rechunked = asyncio.run(harness.indexer.run(reparse=True))
    assert rechunked.chunks > first.chunks  # smaller chunks, more of them
    assert rechunked.chunks_encoded > 0
    assert harness.store.stats()["chunks"] == rechunked.chunks


def test_a_vault_taken_out_of_the_config_leaves_the_index(harness: Harness, tmp_path: Path) -> None:
    """`vaults:` naming your own vault replaces the example: its notes stop being found."""
    harness.run()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "Mine.md").write_text("# Mine\n\nMy own note.\n", encoding="utf-8")
    replaced = harness.config.model_copy(update={"vaults": [VaultConfig(name="mine", path=mine)]})
    harness.indexer.reconfigure(replaced, diff_configs(harness.config, replaced)[1])
    report = harness.run()
    assert report.state == "done"
    assert report.files_deleted == len(list(EXAMPLE.rglob("*.md")))
    assert harness.store.vault_names() == ["mine"]
    assert harness.paths() == {"Mine.md"}
    assert harness.store.stats()["pending_work"] == 0
    assert (harness.vault / "Coffee" / "Espresso.md").is_file()  # the files are untouched


def test_notes_changed_between_scan_and_read_are_skipped_with_their_reason(
    harness: Harness,
) -> None:
    """Issue 16, files that change while being read: the plan saw two small notes; before
    the read one grew to 50 MB and one became a FIFO (which blocked the read for ever)."""
    harness.write("grows.md", "# Grows\n\nSmall for now.")
    harness.write("piped.md", "# Piped\n\nSmall for now.")
    vault, indexing = harness.config.vaults[0], harness.config.indexing
    plan = plan_vault(harness.store, vault, indexing.max_file_bytes, full=False)
    window = [info for info in plan.to_index if info.path in ("grows.md", "piped.md")]
    assert len(window) == 2
    with (harness.vault / "grows.md").open("r+b") as file:
        file.truncate(50_000_000)
    (harness.vault / "piped.md").unlink()
    os.mkfifo(harness.vault / "piped.md")
    batch = read_and_parse(harness.store, vault, window, indexing, None, reuse_vectors=False)
    assert sorted(reason for _path, reason, _detail in batch.failed) == ["not_a_file", "too_large"]
    assert batch.notes == []
    # The next run's plan hashes at most the limit of the grown file, then the read skips it.
    report = harness.run()
    assert report.state == "done"
    assert report.skipped_reasons == {"too_large": 1, "not_a_file": 1}, report.skipped


def _subjects(harness: Harness) -> dict[str, tuple[str, list[float]]]:
    rows = (
        harness.store.reader()
        .execute(
            "SELECT n.path, s.text_hash, s.embedding FROM note_subjects s "
            "JOIN notes n ON n.id = s.note_id"
        )
        .fetchall()
    )
    return {str(path): (str(digest), list(vector)) for path, digest, vector in rows}


def _encoded(embedder: Embedder, text: str) -> list[float]:
    return [float(value) for value in embedder.encode([text])[0]]


def test_each_note_gets_a_subject_vector_that_follows_its_title_aliases_and_description(
    harness: Harness, embedder: Embedder
) -> None:
    """Encoded with the chunks, reused while title, aliases and description stay, encoded
    again when one changes or a rename retitles the note, gone with the note; a database
    without them (just migrated) gets them from the next run without re-encoding chunks."""
    path = "Notes/Grinders.md"
    front = "---\naliases: [burr mill]\ndescription: {}\n---\n"
    body = "# Grinders\n\nBurrs crush beans evenly.\n"
    harness.write(path, front.format("How to choose a coffee grinder") + body)
    report = harness.run()
    subjects = _subjects(harness)
    assert len(subjects) == harness.store.stats()["notes"] == report.files_changed
    subject = "Grinders. burr mill. How to choose a coffee grinder"
    assert subjects[path][1] == pytest.approx(_encoded(embedder, subject), abs=1e-5)

    def batch_for(relative: str) -> Any:
        plan = plan_vault(harness.store, harness.config.vaults[0], 10**6, False, {relative})
        return read_and_parse(
            harness.store, harness.config.vaults[0], plan.to_index,
            harness.config.indexing, None, reuse_vectors=True,
        )  # fmt: skip

    # The body changes, the subject does not: its stored vector is reused.
    harness.write(path, front.format("How to choose a coffee grinder") + body + "\nMore.\n")
    assert batch_for(path).subjects == 0
    harness.run()
    assert _subjects(harness)[path] == subjects[path]
    # The description changes: encoded again, in the same batch as the chunks.
    harness.write(path, front.format("Blade or burr, and what to pay") + body)
    assert batch_for(path).subjects == 1
    harness.run()
    changed = "Grinders. burr mill. Blade or burr, and what to pay"
    assert _subjects(harness)[path][1] == pytest.approx(_encoded(embedder, changed), abs=1e-5)
    # A rename takes the title from the new file name: the subject follows.
    (harness.vault / path).rename(harness.vault / "Notes" / "Mills.md")
    report = harness.run()
    assert report.files_renamed == 1 and report.chunks_encoded == 0
    after = _subjects(harness)
    renamed = "Mills. burr mill. Blade or burr, and what to pay"
    assert path not in after
    assert after["Notes/Mills.md"][1] == pytest.approx(_encoded(embedder, renamed), abs=1e-5)
    # Deleted with the note.
    (harness.vault / "Notes" / "Mills.md").unlink()
    harness.run()
    assert "Notes/Mills.md" not in _subjects(harness)
    assert not harness.store.notes_without_subject()
    # As after the migration that added them: none stored; the next run encodes only them.
    before = _subjects(harness)
    harness.store._writer.execute("DELETE FROM note_subjects")
    assert len(harness.store.notes_without_subject()) == len(before)
    report = harness.run()
    assert report.chunks_encoded == 0 and report.state == "done"
    restored = _subjects(harness)
    assert restored.keys() == before.keys()
    for name, (digest, vector) in before.items():
        assert restored[name][0] == digest
        assert restored[name][1] == pytest.approx(vector, abs=1e-5)
