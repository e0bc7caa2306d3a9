"""Walking a vault and reading notes from it, on real folders in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jarvisd.config import example_vault_path
from jarvisd.indexing.vault import (
    FileInfo,
    NoteFileError,
    PathOutsideVault,
    Skipped,
    VaultError,
    compile_excludes,
    read_note_bytes,
    resolve_in_vault,
    scan_paths,
    scan_vault,
)

DEFAULT_EXCLUDES = [".obsidian/**", ".trash/**", ".git/**"]
RUNS_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def write(root: Path, relative: str, text: str = "note\n") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def paths(root: Path, exclude: list[str] | None = None, limit: int = 1_000_000) -> list[str]:
    return [info.path for info in scan_vault(root, exclude or [], limit).files]


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    root = tmp_path / "vault"
    root.mkdir()
    return root


# ---------------------------------------------------------------------- scanning


def test_every_markdown_file_with_relative_posix_paths_and_stat_data(vault: Path) -> None:
    write(vault, "Top.md", "top")
    write(vault, "A/B/Deep note.md", "deep")
    write(vault, "Upper.MD", "upper")
    write(vault, "A/image.png", "not a note")
    write(vault, "A/notes.md.bak", "not a note")
    (vault / "Folder.md").mkdir()  # a folder named like a note is not a note
    result = scan_vault(vault, [], 1_000_000)
    assert [info.path for info in result.files] == ["A/B/Deep note.md", "Top.md", "Upper.MD"]
    deep = os.stat(vault / "A/B/Deep note.md")
    assert result.files[0] == FileInfo("A/B/Deep note.md", deep.st_size, deep.st_mtime_ns)
    assert result.skipped == []


def test_the_default_excludes_prune_obsidian_trash_and_git(vault: Path) -> None:
    write(vault, "Keep.md")
    write(vault, ".obsidian/workspace.md")
    write(vault, ".trash/Old.md")
    write(vault, ".git/Deep/x.md")
    write(vault, "Sub/.obsidian.md")  # only the folder is excluded, not a look-alike name
    assert paths(vault, DEFAULT_EXCLUDES) == ["Keep.md", "Sub/.obsidian.md"]


def test_excluded_folders_are_pruned_not_walked(vault: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (vault / ".obsidian").mkdir()
    (vault / ".obsidian" / "escape").symlink_to(outside)
    result = scan_vault(vault, DEFAULT_EXCLUDES, 1_000_000)
    # Walking .obsidian would have reported its symlink; pruning never sees it.
    assert result.skipped == []


@pytest.mark.parametrize(
    ("pattern", "excluded", "kept"),
    [
        ("drafts/*.md", ["drafts/a.md"], ["drafts/sub/b.md", "other/drafts/c.md"]),
        ("**/private/**", ["private/a.md", "x/private/y/b.md"], ["privateer.md", "x/y.md"]),
        ("*.excalidraw.md", ["a.excalidraw.md", "x/y/b.excalidraw.md"], ["excalidraw.md"]),
        ("Daily/2023-??-??.md", ["Daily/2023-01-02.md"], ["Daily/2024-01-02.md"]),
        ("Archive", ["Archive/a.md", "Archive/b/c.md"], ["Archives/a.md"]),
        ("Archive/", ["Archive/a.md"], ["x/Archive.md"]),
        ("[ab]*.md", ["apple.md", "sub/banana.md"], ["cherry.md"]),
        ("[!ab]*.md", ["cherry.md"], ["apple.md"]),
        ("/rooted/*.md", ["rooted/a.md"], ["x/rooted/a.md"]),
    ],
)
def test_exclude_globs(vault: Path, pattern: str, excluded: list[str], kept: list[str]) -> None:
    for relative in excluded + kept:
        write(vault, relative)
    assert paths(vault, [pattern]) == sorted(kept)


def test_compile_excludes_without_patterns_is_none() -> None:
    assert compile_excludes([]) is None
    assert compile_excludes(["  "]) is None


def test_too_large_notes_are_skipped_with_sizes(vault: Path) -> None:
    write(vault, "Small.md", "x" * 100)
    write(vault, "Big.md", "x" * 2_500)
    result = scan_vault(vault, [], 2_000)
    assert [info.path for info in result.files] == ["Small.md"]
    (skipped,) = result.skipped
    assert skipped.path == "Big.md"
    assert skipped.reason == "too_large"
    assert "2.5 KB" in skipped.detail
    assert "2.0 KB" in skipped.detail
    assert "max_file_bytes" in skipped.detail


def test_symlinks_leading_outside_are_skipped(vault: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "Secret.md", "secret")
    write(vault, "Real.md")
    (vault / "Linked file.md").symlink_to(outside / "Secret.md")
    (vault / "Linked folder").symlink_to(outside)
    (vault / "Up").symlink_to(vault.parent)
    result = scan_vault(vault, [], 1_000_000)
    assert [info.path for info in result.files] == ["Real.md"]
    assert [(item.path, item.reason) for item in result.skipped] == [
        ("Linked file.md", "symlink_outside"),
        ("Linked folder", "symlink_outside"),
        ("Up", "symlink_outside"),
    ]
    assert str(outside) in result.skipped[0].detail


def test_symlinks_inside_the_vault_are_not_followed(vault: Path) -> None:
    write(vault, "Notes/Real.md")
    (vault / "Alias.md").symlink_to(vault / "Notes" / "Real.md")
    (vault / "Notes again").symlink_to(vault / "Notes")
    (vault / "Notes" / "Self").symlink_to(vault)
    result = scan_vault(vault, [], 1_000_000)
    assert [info.path for info in result.files] == ["Notes/Real.md"]
    assert [(item.path, item.reason) for item in result.skipped] == [
        ("Alias.md", "symlink_inside"),
        ("Notes again", "symlink_inside"),
        ("Notes/Self", "symlink_inside"),
    ]
    assert "Notes/Real.md" in result.skipped[0].detail


def test_symlink_loops_and_dangling_links_do_not_hang(vault: Path) -> None:
    write(vault, "Real.md")
    (vault / "loop-a").symlink_to(vault / "loop-b")
    (vault / "loop-b").symlink_to(vault / "loop-a")
    (vault / "Dangling.md").symlink_to(vault / "nowhere.md")
    (vault / "Self.md").symlink_to(vault / "Self.md")
    (vault / "Ping.md").symlink_to(vault / "Pong.md")
    (vault / "Pong.md").symlink_to(vault / "Ping.md")
    result = scan_vault(vault, [], 1_000_000)
    assert [info.path for info in result.files] == ["Real.md"]
    # A broken link named like a note is skipped with its reason, as every other
    # skip is; one named like nothing we index (loop-a, loop-b) is not a note.
    loop = "a symlink loop: following it comes back to it"
    assert [(item.path, item.reason, item.detail) for item in result.skipped] == [
        (
            "Dangling.md",
            "symlink_broken",
            f"points to {vault / 'nowhere.md'}, which does not exist",
        ),
        ("Ping.md", "symlink_broken", loop),
        ("Pong.md", "symlink_broken", loop),
        ("Self.md", "symlink_broken", loop),
    ]


def test_special_files_are_never_opened(vault: Path) -> None:
    write(vault, "Real.md")
    os.mkfifo(vault / "Pipe.md")  # opening a FIFO for reading would block the scan
    assert paths(vault) == ["Real.md"]


def test_the_vault_root_may_itself_be_a_symlink(vault: Path, tmp_path: Path) -> None:
    write(vault, "A.md")
    link = tmp_path / "link-to-vault"
    link.symlink_to(vault)
    assert paths(link) == ["A.md"]


@pytest.mark.skipif(RUNS_AS_ROOT, reason="root can read every file and folder")
def test_unreadable_notes_and_folders_are_skipped(vault: Path) -> None:
    write(vault, "Open.md")
    write(vault, "Closed.md").chmod(0o000)
    write(vault, "Locked/Inside.md")
    (vault / "Locked").chmod(0o000)
    try:
        result = scan_vault(vault, [], 1_000_000)
    finally:
        (vault / "Locked").chmod(0o755)
    assert [info.path for info in result.files] == ["Open.md"]
    assert [(item.path, item.reason) for item in result.skipped] == [
        ("Closed.md", "unreadable"),
        ("Locked", "unreadable"),
    ]


def test_a_missing_vault_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match=r"does not exist; check vaults\[\]\.path"):
        scan_vault(tmp_path / "missing", [], 1_000)
    write(tmp_path, "file.md")
    with pytest.raises(VaultError, match="is a file, not a folder"):
        scan_vault(tmp_path / "file.md", [], 1_000)


def test_a_scan_of_named_paths_finds_what_a_whole_scan_finds_there(vault: Path) -> None:
    write(vault, "Top.md")
    write(vault, "A/One.md")
    write(vault, "A/B/Two.md")
    write(vault, "A/image.png")
    write(vault, ".obsidian/workspace.md")
    write(vault, "Elsewhere/Three.md")
    (vault / "Linked").symlink_to(vault / "A")
    named = ["Top.md", "A", "Gone.md", "Old folder", ".obsidian/workspace.md", "Linked/One.md"]
    result, covered = scan_paths(vault, DEFAULT_EXCLUDES, 1_000_000, named)
    whole = scan_vault(vault, DEFAULT_EXCLUDES, 1_000_000)
    # The folder named is walked; a note through a symlinked folder is not one
    # (the walk does not follow it either), an excluded one is left out.
    assert [info.path for info in result.files] == ["A/B/Two.md", "A/One.md", "Top.md"]
    assert result.files == [info for info in whole.files if not info.path.startswith("Else")]
    assert result.skipped == []
    # Where nothing is, and the folders walked whole: what is stored below is gone.
    assert covered == {"A", "Gone.md", "Old folder"}


def test_a_scan_of_named_paths_reports_a_symlink_as_a_whole_scan_does(vault: Path) -> None:
    write(vault, "Real.md")
    (vault / "Alias.md").symlink_to(vault / "Real.md")
    result, covered = scan_paths(vault, [], 1_000_000, ["Alias.md", "Real.md"])
    assert result.skipped == scan_vault(vault, [], 1_000_000).skipped
    assert [info.path for info in result.files] == ["Real.md"] and covered == set()


def test_the_example_vault_scans_to_its_notes() -> None:
    result = scan_vault(example_vault_path(), DEFAULT_EXCLUDES, 5_000_000)
    assert 12 <= len(result.files) <= 15
    assert result.skipped == []
    assert {info.path.split("/")[0] for info in result.files} >= {"Coffee", "Baking", "Home.md"}


# ---------------------------------------------------------------- reading a note


def test_read_note_bytes_reads_inside_the_vault(vault: Path) -> None:
    write(vault, "Folder/Note.md", "hello")
    assert read_note_bytes(vault, "Folder/Note.md") == b"hello"
    assert read_note_bytes(vault, "Folder/../Folder/./Note.md") == b"hello"
    with pytest.raises(FileNotFoundError):
        read_note_bytes(vault, "Folder/Missing.md")


@pytest.mark.parametrize(
    ("relative", "fragment"),
    [
        ("../outside.md", "climbs out of the vault"),
        ("Folder/../../outside.md", "climbs out of the vault"),
        ("/etc/passwd", "absolute path"),
        ("C:\\Windows\\win.ini", "absolute path"),
        ("", "not a usable note path"),
        ("bad\x00name.md", "not a usable note path"),
        (".", "the vault folder itself"),
    ],
)
def test_paths_that_leave_the_vault_are_refused(vault: Path, relative: str, fragment: str) -> None:
    with pytest.raises(PathOutsideVault, match=fragment) as caught:
        read_note_bytes(vault, relative)
    assert isinstance(caught.value, ValueError)


def test_a_symlink_out_of_the_vault_is_refused(vault: Path, tmp_path: Path) -> None:
    write(tmp_path / "outside", "Secret.md", "secret")
    (vault / "Linked.md").symlink_to(tmp_path / "outside" / "Secret.md")
    (vault / "Door").symlink_to(tmp_path / "outside")
    for relative in ("Linked.md", "Door/Secret.md"):
        with pytest.raises(PathOutsideVault, match="symlink that leads outside the vault"):
            read_note_bytes(vault, relative)


def test_a_symlink_within_the_vault_resolves(vault: Path) -> None:
    write(vault, "Real/Note.md", "real")
    (vault / "Shortcut").symlink_to(vault / "Real")
    assert resolve_in_vault(vault, "Shortcut/Note.md") == (vault / "Real" / "Note.md").resolve()
    assert read_note_bytes(vault, "Shortcut/Note.md") == b"real"


def test_skipped_is_a_plain_value() -> None:
    assert Skipped("a.md", "too_large", "big") == Skipped("a.md", "too_large", "big")


# Issue 16, files that change while being read: between the scan and the read a note
# became a FIFO (the read blocked its thread until a writer came, holding every later
# index run) or grew past the limit (50 MB were read whole behind a 100-byte limit).
def test_a_note_turned_into_a_fifo_after_the_scan_is_refused_at_once(vault: Path) -> None:
    write(vault, "piped.md")
    assert paths(vault) == ["piped.md"]
    (vault / "piped.md").unlink()
    os.mkfifo(vault / "piped.md")
    with pytest.raises(NoteFileError) as caught:
        read_note_bytes(vault, "piped.md", 100)
    assert caught.value.reason == "not_a_file"
    assert "not a regular file" in caught.value.detail


def test_a_note_grown_past_the_limit_after_the_scan_is_refused_unread(vault: Path) -> None:
    write(vault, "grows.md", "small\n")
    assert paths(vault, limit=100) == ["grows.md"]
    with (vault / "grows.md").open("r+b") as file:
        file.truncate(50_000_000)
    with pytest.raises(NoteFileError) as caught:
        read_note_bytes(vault, "grows.md", 100)
    assert caught.value.reason == "too_large"
    assert "grew past the 100 bytes limit" in caught.value.detail
    assert read_note_bytes(vault, "grows.md")[:5] == b"small"  # no limit: the whole file


def test_a_note_turned_into_a_folder_after_the_scan_is_a_folder_error(vault: Path) -> None:
    write(vault, "turned.md")
    (vault / "turned.md").unlink()
    (vault / "turned.md").mkdir()
    with pytest.raises(IsADirectoryError):
        read_note_bytes(vault, "turned.md", 100)


def test_the_plans_hash_of_a_note_turned_into_a_fifo_is_refused_at_once(vault: Path) -> None:
    """Found by the chaos test: the planner hashes a note whose stat changed; a FIFO in
    its place since the scan hung that open, and with it the watcher's every later run."""
    from jarvisd.indexing.planner import file_digest

    os.mkfifo(vault / "piped.md")
    with pytest.raises(NoteFileError) as caught:
        file_digest(vault / "piped.md", "piped.md", 100)
    assert caught.value.reason == "not_a_file"
    write(vault, "grows.md", "x" * 101)
    assert file_digest(vault / "grows.md", "grows.md", 100) is None  # past the limit
    assert file_digest(vault / "grows.md", "grows.md", 101) is not None
