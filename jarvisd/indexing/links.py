"""Resolving link keys to the notes of one vault, the way Obsidian does.

Obsidian finds a linked note by file name, case-insensitively, wherever it
lives; a partial path (`folder/Note`) narrows that to notes whose path ends
with it, and a full path names one note. When several notes match, the one in
the linking note's own folder wins, then the one nearest the vault root, then
the shortest path, then the first alphabetically. Aliases from frontmatter
are tried only after file names, so a real file always beats an alias.

Everything is precomputed into dicts, so resolving is one to three dict
lookups: 100,000 links take a fraction of a second. The dicts are kept up to
date note by note (`update`), so a store keeps one resolver per vault alive
between index runs instead of rebuilding it from every note after each edit:
building it for 10,000 notes took 0.5-0.8 s on the 2 shared cores, an update
90 µs.
"""

from __future__ import annotations

import bisect
import posixpath
from collections import defaultdict
from collections.abc import Iterable, Sequence

from jarvisd.indexing.markdown import link_key

__all__ = ["LinkResolver"]


def _preference(path: str) -> tuple[int, int, str, str]:
    """Sort key among notes a link could mean: nearest the root, shortest, alphabetical."""
    return (path.count("/"), len(path), path.casefold(), path)


def _tails(key: str) -> list[str]:
    """Every tail of a path's key, from the file name up to the full path minus its
    first folder, so `b/c` finds `a/b/c.md`."""
    parts = key.split("/")
    return ["/".join(parts[start:]) for start in range(1, len(parts))]


def _alias_keys(aliases: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(key for key in map(link_key, aliases) if key))


class LinkResolver:
    """Maps link keys (see `jarvisd.indexing.markdown.link_key`) to vault-relative note paths."""

    __slots__ = ("_by_alias", "_by_key", "_by_path", "_by_suffix", "_notes")

    def __init__(self) -> None:
        # Every note held: path -> its aliases' keys.
        self._notes: dict[str, tuple[str, ...]] = {}
        # A path's own key -> the notes with that key, preferred first (`Note.md` and
        # `note.MD` on a case-sensitive disk): only the first answers to links.
        self._by_key: dict[str, list[str]] = {}
        self._by_path: dict[str, str] = {}
        # Lists kept sorted by `_preference`, so the best candidate is the first.
        self._by_suffix: dict[str, list[str]] = {}
        self._by_alias: dict[str, list[str]] = {}

    @classmethod
    def from_notes(cls, notes: Iterable[tuple[str, Sequence[str]]]) -> LinkResolver:
        """Build from (vault-relative path, aliases) pairs, one per note of the vault."""
        resolver = cls()
        by_key: defaultdict[str, list[str]] = defaultdict(list)
        for path, aliases in notes:
            resolver._notes[path] = _alias_keys(aliases)
            by_key[link_key(path)].append(path)
        suffixes: defaultdict[str, list[str]] = defaultdict(list)
        alias_groups: defaultdict[str, list[str]] = defaultdict(list)
        for key, paths in by_key.items():
            paths.sort(key=_preference)
            resolver._by_key[key] = paths
            path = resolver._by_path[key] = paths[0]
            for tail in _tails(key):
                suffixes[tail].append(path)
            for alias_key in resolver._notes[path]:
                alias_groups[alias_key].append(path)
        resolver._by_suffix = _ranked(suffixes)
        resolver._by_alias = _ranked(alias_groups)
        return resolver

    def __len__(self) -> int:
        return len(self._by_path)

    def __contains__(self, path: object) -> bool:
        return path in self._notes

    def update(self, path: str, aliases: Sequence[str] | None) -> None:
        """The note at `path` now has these aliases (None: there is no note at `path`).

        Idempotent, so a caller can replay the same changes after a failure."""
        if path in self._notes:
            self._remove(path)
        if aliases is not None:
            self._add(path, aliases)

    def _add(self, path: str, aliases: Sequence[str]) -> None:
        self._notes[path] = _alias_keys(aliases)
        key = link_key(path)
        paths = self._by_key.setdefault(key, [])
        bisect.insort(paths, path, key=_preference)
        if paths[0] != path:
            return  # a preferred note has the same key: this one answers to nothing
        if len(paths) > 1:
            self._deactivate(paths[1], key)
        self._activate(path, key)

    def _remove(self, path: str) -> None:
        key = link_key(path)
        paths = self._by_key[key]
        active = paths[0] == path
        if active:
            self._deactivate(path, key)
        paths.remove(path)
        del self._notes[path]
        if not paths:
            del self._by_key[key]
        elif active:
            self._activate(paths[0], key)

    def _activate(self, path: str, key: str) -> None:
        self._by_path[key] = path
        for tail in _tails(key):
            bisect.insort(self._by_suffix.setdefault(tail, []), path, key=_preference)
        for alias_key in self._notes[path]:
            bisect.insort(self._by_alias.setdefault(alias_key, []), path, key=_preference)

    def _deactivate(self, path: str, key: str) -> None:
        del self._by_path[key]
        for groups, names in ((self._by_suffix, _tails(key)), (self._by_alias, self._notes[path])):
            for name in names:
                group = groups[name]
                group.remove(path)
                if not group:
                    del groups[name]

    def resolve(self, key: str, source_path: str | None = None) -> str | None:
        """The path of the note `key` names, or None when it names no note.

        `source_path`, the linking note's path, breaks ties in favour of its
        own folder and lets a markdown link written relative to the vault root
        (`Folder/Note.md` from a note in another folder) still resolve.
        """
        found = self._lookup(key, source_path)
        if found is not None or not key:
            return found
        normal = link_key(key)  # a caller that passed the raw target
        if normal != key:
            found = self._lookup(normal, source_path)
        if found is None and source_path and "/" in source_path:
            folder = link_key(posixpath.dirname(source_path)) + "/"
            if normal.startswith(folder):
                found = self._lookup(normal[len(folder) :], None)
        return found

    def _lookup(self, key: str, source_path: str | None) -> str | None:
        path = self._by_path.get(key)
        if path is not None:
            return path
        candidates = self._by_suffix.get(key) or self._by_alias.get(key)
        if not candidates:
            return None
        if len(candidates) > 1 and source_path is not None:
            folder = posixpath.dirname(source_path)
            for candidate in candidates:
                if posixpath.dirname(candidate) == folder:
                    return candidate
        return candidates[0]


def _ranked(groups: dict[str, list[str]]) -> dict[str, list[str]]:
    return {key: sorted(set(paths), key=_preference) for key, paths in groups.items()}
