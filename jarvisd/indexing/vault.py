"""Walking a vault: which notes exist, how big and how new, and reading one safely.

`scan_vault` costs one `stat` per note and never opens a file, so that an
unchanged vault is cheap to re-scan: the indexer compares (path, size,
mtime_ns) with what it stored and reads only what differs. Excluded folders
are pruned, not walked.

The vault folder is a boundary. Like Obsidian, the scan does not follow a
symlink from one place in the vault to another (that would index notes twice
and can loop); unlike Obsidian, it does not follow one that leads outside
either, so a vault cannot pull in files its owner did not put in it.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "FileInfo",
    "NoteFileError",
    "PathOutsideVault",
    "ScanResult",
    "SkipReason",
    "Skipped",
    "VaultError",
    "compile_excludes",
    "open_note",
    "read_note_bytes",
    "resolve_in_vault",
    "scan_paths",
    "scan_vault",
]

SkipReason = Literal[
    "symlink_outside", "symlink_inside", "symlink_broken", "too_large", "unreadable", "not_a_file"
]


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str  # relative to the vault, POSIX separators
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: SkipReason
    detail: str


@dataclass(slots=True)
class ScanResult:
    files: list[FileInfo] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class VaultError(ValueError):
    """The vault folder itself cannot be scanned."""


class PathOutsideVault(ValueError):
    """A note path that would leave the vault folder."""


# ----------------------------------------------------------------------- excludes


def _glob_to_regex(pattern: str) -> str:
    """One gitignore-style glob as a regex over vault-relative POSIX paths.

    `*` and `?` stay within one folder, `**` spans folders, `[abc]` is a class.
    A pattern without a slash matches a name at any depth (`*.excalidraw.md`);
    a pattern that matches a folder excludes everything below it.
    """
    pattern = pattern.strip().replace("\\", "/").lstrip("/")
    if pattern.startswith("./"):
        pattern = pattern[2:]
    pattern = pattern.rstrip("/")
    # `folder/**` also matches the folder itself, so that it is pruned, not walked.
    while pattern.endswith("/**"):
        pattern = pattern[:-3]
    anchored = "/" in pattern
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and "]" in pattern[index + 1 :]:
            end = pattern.index("]", index + 1)
            body = pattern[index + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            index = end
        else:
            out.append(re.escape(char))
        index += 1
    prefix = "" if anchored else "(?:.*/)?"
    return prefix + "".join(out) + "(?:/.*)?"


def compile_excludes(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """All exclude globs as one regex (None when there are none)."""
    parts = [_glob_to_regex(pattern) for pattern in patterns if pattern.strip()]
    if not parts:
        return None
    return re.compile("|".join(f"(?:{part})" for part in parts))


# --------------------------------------------------------------------------- scan


def _human_size(size: int) -> str:
    if size < 1000:
        return f"{size} bytes"
    value = size / 1000
    for unit in ("KB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _is_inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class _Walker:
    """One scan's state: the vault root (resolved), the exclusions, the results."""

    def __init__(self, root: str, exclude: re.Pattern[str] | None, max_file_bytes: int) -> None:
        self.root = root
        self.exclude = exclude
        self.max_file_bytes = max_file_bytes
        self.result = ScanResult()
        # The permission bits are in the stat already, so judging readability
        # from them costs nothing (ACLs are not consulted; a read still may fail).
        self.uid = os.geteuid() if hasattr(os, "geteuid") else -1
        self.groups = set(os.getgroups()) | {os.getegid()} if hasattr(os, "getegid") else set()

    def skip(self, path: str, reason: SkipReason, detail: str) -> None:
        self.result.skipped.append(Skipped(path, reason, detail))

    def readable(self, info: os.stat_result) -> bool:
        if self.uid in (0, -1):
            return True
        if info.st_uid == self.uid:
            return bool(info.st_mode & stat.S_IRUSR)
        if info.st_gid in self.groups:
            return bool(info.st_mode & stat.S_IRGRP)
        return bool(info.st_mode & stat.S_IROTH)

    def walk(self, pending: list[tuple[str, str]]) -> None:
        """Every entry of the (folder, relative prefix) pairs, and of their subfolders."""
        while pending:
            folder, prefix = pending.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        self.visit(entry, prefix + entry.name, pending)
            except PermissionError:
                self.skip(prefix.rstrip("/") or ".", "unreadable", "permission denied on folder")
            except FileNotFoundError:
                continue  # removed while we walked; the next scan will not see it

    def visit(self, entry: os.DirEntry[str], relative: str, pending: list[tuple[str, str]]) -> None:
        if self.exclude is not None and self.exclude.fullmatch(relative):
            return
        try:
            if entry.is_symlink():
                self.visit_symlink(entry, relative)
            elif entry.is_dir(follow_symlinks=False):
                pending.append((entry.path, relative + "/"))
            elif entry.name.lower().endswith(".md"):
                if entry.is_file(follow_symlinks=False):
                    self.add_note(entry.path, relative, entry.stat(follow_symlinks=False))
                else:
                    # A FIFO, socket or device named like a note: reading a FIFO would
                    # block an io thread for good. Found by the chaos test: it was left
                    # out with no index.skipped line.
                    self.skip(
                        relative, "not_a_file", "not a regular file (a FIFO, socket or device)"
                    )
        except PermissionError:
            self.skip(relative, "unreadable", "permission denied")
        except FileNotFoundError:
            return

    def visit_path(self, relative: str, pending: list[tuple[str, str]]) -> bool:
        """`visit` for one path a watcher named; False when nothing is there.

        Like the walk, it goes nowhere the walk would not: not into an excluded
        folder, nor through a symlinked folder (a parent that resolves elsewhere).
        """
        path = os.path.join(self.root, relative)
        parent = os.path.dirname(path)
        if self.exclude is not None and self.exclude.fullmatch(relative):
            return True
        try:
            if os.path.realpath(parent) != parent:
                return os.path.lexists(path)
            info = os.lstat(path)
        except FileNotFoundError:
            return False
        except PermissionError:
            self.skip(relative, "unreadable", "permission denied")
            return True
        except OSError:
            return False
        if stat.S_ISLNK(info.st_mode):
            self.visit_symlink(_Entry(path, os.path.basename(path)), relative)
        elif stat.S_ISDIR(info.st_mode):
            pending.append((path, relative + "/"))
        elif relative.lower().endswith(".md"):
            if stat.S_ISREG(info.st_mode):
                self.add_note(path, relative, info)
            else:
                self.skip(relative, "not_a_file", "not a regular file (a FIFO, socket or device)")
        return True

    def visit_symlink(self, entry: os.DirEntry[str] | _Entry, relative: str) -> None:
        target = os.path.realpath(entry.path)
        is_note = entry.name.lower().endswith(".md")
        if not os.path.exists(target):
            # Named like a note, it is one the user expects to find: say why it is not.
            if is_note:
                self.skip(relative, "symlink_broken", _broken_link(entry.path))
            return
        if not (is_note or os.path.isdir(target)):
            return
        if not _is_inside(self.root, target):
            self.skip(relative, "symlink_outside", f"points outside the vault, to {target}")
        else:
            inside = os.path.relpath(target, self.root).replace(os.sep, "/")
            self.skip(relative, "symlink_inside", f"points to {inside}, indexed under its own path")

    def add_note(self, path: str, relative: str, info: os.stat_result) -> None:
        if info.st_size > self.max_file_bytes:
            detail = (
                f"{_human_size(info.st_size)}, over the {_human_size(self.max_file_bytes)} "
                "limit (indexing.max_file_bytes)"
            )
            self.skip(relative, "too_large", detail)
        elif not self.readable(info):
            self.skip(relative, "unreadable", "no read permission for this user")
        else:
            self.result.files.append(FileInfo(relative, info.st_size, info.st_mtime_ns))


@dataclass(frozen=True, slots=True)
class _Entry:
    """What `visit_symlink` reads of a directory entry, for a path found by name."""

    path: str
    name: str


def _broken_link(path: str) -> str:
    """Why a symlink leads nowhere: a loop (to itself, or round a chain) or a missing target."""
    try:
        os.path.realpath(path, strict=True)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symlink loop: following it comes back to it"
    try:
        written = os.readlink(path)
    except OSError:
        written = "?"
    return f"points to {written}, which does not exist"


def _real_root(root: Path) -> str:
    try:
        real_root = os.path.realpath(root, strict=True)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise VaultError(f"vault folder {root} does not exist; check vaults[].path") from error
    except OSError as error:
        raise VaultError(f"vault folder {root} cannot be opened: {error.strerror}") from error
    if not os.path.isdir(real_root):
        raise VaultError(f"vault path {root} is a file, not a folder; check vaults[].path")
    return real_root


def scan_vault(root: Path, exclude: Sequence[str], max_file_bytes: int) -> ScanResult:
    """Every `*.md` note under `root` (sorted by path) and every file left out, with why."""
    walker = _Walker(_real_root(root), compile_excludes(exclude), max_file_bytes)
    walker.walk([(walker.root, "")])
    walker.result.files.sort(key=lambda info: info.path)
    walker.result.skipped.sort(key=lambda skipped: skipped.path)
    return walker.result


def scan_paths(
    root: Path, exclude: Sequence[str], max_file_bytes: int, paths: Iterable[str]
) -> tuple[ScanResult, set[str]]:
    """`scan_vault` for only these vault-relative paths (notes, or folders walked whole).

    Also returns the paths the scan covers whole: those where nothing is any
    more and the folders it walked. A note stored there, or below there, that
    the scan did not find is gone. A stat per path (and per note in a named
    folder), so what a watcher reports costs what it names, not the vault.
    """
    real_root = _real_root(root)
    walker = _Walker(real_root, compile_excludes(exclude), max_file_bytes)
    covered: set[str] = set()
    for relative in sorted(set(paths)):
        pending: list[tuple[str, str]] = []
        if not walker.visit_path(relative, pending) or pending:
            covered.add(relative)
        walker.walk(pending)
    unique = {info.path: info for info in walker.result.files}
    walker.result.files = sorted(unique.values(), key=lambda info: info.path)
    kept = {item.path: item for item in walker.result.skipped}
    walker.result.skipped = sorted(kept.values(), key=lambda skipped: skipped.path)
    return walker.result, covered


# ---------------------------------------------------------------------- one note


def resolve_in_vault(root: Path, rel: str) -> Path:
    """The file on disk for a vault-relative path, refusing any path that leaves the vault."""
    if not rel or "\x00" in rel:
        raise PathOutsideVault(f"{rel!r} is not a usable note path")
    posix = rel.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix) or Path(rel).is_absolute():
        raise PathOutsideVault(
            f"{rel!r} is an absolute path; give a path relative to the vault folder"
        )
    parts = [part for part in posix.split("/") if part not in ("", ".")]
    if not parts:
        raise PathOutsideVault(f"{rel!r} names the vault folder itself, not a note")
    depth = 0
    for part in parts:
        depth += -1 if part == ".." else 1
        if depth < 0:
            raise PathOutsideVault(f"{rel!r} climbs out of the vault folder with '..'")
    real_root = os.path.realpath(root)
    real_path = os.path.realpath(os.path.join(real_root, *parts))
    if not _is_inside(real_root, real_path):
        raise PathOutsideVault(
            f"{rel!r} is or passes through a symlink that leads outside the vault, to {real_path}"
        )
    return Path(real_path)


class NoteFileError(OSError):
    """The path is no longer a note the indexer may read: it became something other than
    a regular file, or grew past the size limit, after the scan (`reason` says which)."""

    def __init__(self, reason: SkipReason, message: str) -> None:
        super().__init__(errno.EINVAL, message)
        self.reason: SkipReason = reason
        self.detail = message


def open_note(path: Path, rel_path: str) -> io.FileIO:
    """A note's file, opened without blocking and checked on the descriptor.

    The file may have changed since the scan: a FIFO put in its place blocked
    the opening thread (and so every later index run) until a writer came.
    Raises NoteFileError (not_a_file), IsADirectoryError, or the OSError of the
    open for the caller to report per note.
    """
    file = io.FileIO(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb")
    try:
        info = os.fstat(file.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, f"{rel_path} is a folder now")
        if not stat.S_ISREG(info.st_mode):
            raise NoteFileError("not_a_file", f"{rel_path} is not a regular file any more")
    except BaseException:
        file.close()
        raise
    return file


def read_note_bytes(root: Path, rel_path: str, limit: int | None = None) -> bytes:
    """The bytes of one note, after `resolve_in_vault` has vouched for its path.

    Opened by `open_note`; at most `limit` bytes are read: a note grown past it
    since the scan was read whole (50 MB behind a 5 MB limit) and now raises
    NoteFileError (too_large). Otherwise raises PathOutsideVault, or the
    OSError of the read (FileNotFoundError, PermissionError, IsADirectoryError)
    for the caller to report per note.
    """
    with open_note(resolve_in_vault(root, rel_path), rel_path) as file:
        data = file.readall() if limit is None else file.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise NoteFileError(
            "too_large",
            f"grew past the {_human_size(limit)} limit (indexing.max_file_bytes) after the scan",
        )
    return data
