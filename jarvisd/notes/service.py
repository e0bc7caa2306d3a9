"""Reading one note: by vault-relative path or by title, with its links both ways.

Metadata, tags, headings and links come from the store (what the last index
run saw); the content comes from disk, through `resolve_in_vault`, so a path
that leaves the vault (`..`, absolute, a symlink out) is refused before any
file is opened. A title matches case-insensitively on the note's title, its
file name or an alias; when several notes match, titles beat file names beat
aliases, then the shortest path wins, and the reply says so.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from jarvisd.config import Config, VaultConfig
from jarvisd.errors import DomainError
from jarvisd.indexing.vault import PathOutsideVault, read_note_bytes, resolve_in_vault
from jarvisd.pools import Pools
from jarvisd.store import NoteDetail, NotePage, Store

MAX_CANDIDATES = 20
# A listing page: enough for a client that browses resources, small enough that a
# page of the 10k-note benchmark vault stays a few hundred kB of JSON.
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000

_MATCHED_BY = ("title", "file name", "alias")  # by the rank Store.notes_titled gives


class NoteError(DomainError):
    """Base of the lookup errors; `code` says what went wrong (api/errors.py maps it)."""

    code = "error"


class NoteNotFoundError(NoteError):
    code = "not_found"


class BadNoteRequest(NoteError):
    code = "bad_request"


@dataclass(frozen=True, slots=True)
class TitleMatch:
    """Which note a title picked, how, and every note it could have meant."""

    path: str
    matched_by: str
    candidates: tuple[str, ...]

    @property
    def ambiguous(self) -> bool:
        return len(self.candidates) > 1

    def as_dict(self, query: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "query": query,
            "matched_by": self.matched_by,
            "ambiguous": self.ambiguous,
            "candidates": list(self.candidates),
        }
        if self.ambiguous:
            out["message"] = (
                f"{len(self.candidates)} notes match {query!r}; showing {self.path} "
                f"(by {self.matched_by}, then the shortest path)"
            )
        return out


LookupBy = Literal["path", "title", "either"]


@dataclass(frozen=True, slots=True)
class Hit:
    """Where a reference found a note: the vault, the path, and by what (a title match)."""

    vault: VaultConfig
    path: str
    title: TitleMatch | None = None  # None: the reference was the note's path

    @property
    def rank(self) -> int:
        """A path beats a title beats a file name beats an alias."""
        return -1 if self.title is None else _MATCHED_BY.index(self.title.matched_by)


@dataclass(frozen=True, slots=True)
class Found:
    """The note a reference picked and, when no vault was named, every vault it is in."""

    chosen: Hit
    hits: tuple[Hit, ...]

    @property
    def vault(self) -> VaultConfig:
        return self.chosen.vault

    @property
    def path(self) -> str:
        return self.chosen.path

    def match(self, query: str) -> dict[str, Any] | None:
        """What the reply says about the choice: the title match, the other vaults."""
        title = self.chosen.title
        out = title.as_dict(query) if title is not None else None
        if len(self.hits) < 2:
            return out
        if out is None:
            out = {"query": query, "matched_by": "path", "candidates": [self.path]}
        names = ", ".join(hit.vault.name for hit in self.hits)
        out["ambiguous"] = True
        out["vaults"] = [
            {"vault": hit.vault.name, "path": hit.path, "matched_by": _matched_by(hit)}
            for hit in self.hits
        ]
        out["message"] = (
            f"{query!r} is in {len(self.hits)} vaults ({names}); showing "
            f"{self.path} in {self.vault.name} (name one with vault=)"
        )
        return out


def _matched_by(hit: Hit) -> str:
    return "path" if hit.title is None else hit.title.matched_by


@dataclass(frozen=True, slots=True)
class NoteView:
    """One note for a reader: stored metadata and links, and its text from disk."""

    detail: NoteDetail
    content: str | None
    content_error: str | None = None
    match: dict[str, Any] | None = field(default=None)
    vault: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"vault": self.vault} if self.vault is not None else {}
        out.update(asdict(self.detail))
        out["content"] = self.content
        out["content_error"] = self.content_error
        if self.match is not None:
            out["match"] = self.match
        return out


class NotesService:
    """Note lookups for the API and the graph service; blocking work runs on a pool."""

    def __init__(self, config: Callable[[], Config], store: Store, pools: Pools) -> None:
        self._config = config
        self._store = store
        self._pools = pools

    # ----------------------------------------------------------------- vaults

    def vault(self, name: str | None) -> VaultConfig:
        """The named vault, or the first one configured when no name is given."""
        vaults = self._config().vaults
        if not name:
            if not vaults:
                raise NoteNotFoundError("no vault is configured (vaults:)")
            return vaults[0]
        for vault in vaults:
            if vault.name == name:
                return vault
        known = ", ".join(vault.name for vault in vaults) or "none"
        raise NoteNotFoundError(f"no vault named {name!r}; configured: {known}")

    def vaults(self, name: str | None) -> list[VaultConfig]:
        """The vault named, or every configured vault when none is (404 for a wrong name)."""
        return [self.vault(name)] if name else list(self._config().vaults)

    # ---------------------------------------------------------------- lookups

    async def find(self, vault: str | None, reference: str, by: LookupBy = "either") -> Found:
        """The note `reference` names, in the vault named or else in every vault.

        `by`: a vault-relative path only, a title (file name, alias) only, or a path
        and else a title. Found in several vaults: the best match (path, title, file
        name, alias), then the vault configured first, and the reply lists the rest.
        """
        return await self._pools.run("graph", self._find, self.vaults(vault), reference, by)

    async def lookup(self, vault: str | None, reference: str, by: LookupBy) -> NoteView:
        """`GET /v1/notes`: the note, its content, and how it was chosen."""
        found = await self.find(vault, reference, by)
        return await self._pools.run(
            "graph", self._read, found.vault, found.path, found.match(reference)
        )

    async def read(self, vault: VaultConfig, path: str) -> NoteView:
        """The note at this vault-relative path (`.md` may be left off)."""
        return await self._pools.run("graph", self._read, vault, path, None)

    async def read_by_title(self, vault: VaultConfig, title: str) -> NoteView:
        match = await self._pools.run("graph", self._match_title, vault.name, title)
        return await self._pools.run("graph", self._read, vault, match.path, match.as_dict(title))

    async def list_notes(self, vault: VaultConfig, cursor: str | None, limit: int) -> NotePage:
        """A page of the vault's notes in path order; `cursor` is a page's `next_cursor`."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadNoteRequest(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
        return await self._pools.run("graph", self._store.list_notes, vault.name, cursor, limit)

    async def resolve(self, vault: VaultConfig, reference: str) -> str:
        """A stored note's path from a path (with or without `.md`) or else a title."""
        return await self._pools.run("graph", self._resolve, vault.name, reference)

    # --------------------------------------------------------------- blocking

    def _find(self, vaults: list[VaultConfig], reference: str, by: LookupBy) -> Found:
        hits: list[Hit] = []
        misses: list[NoteNotFoundError] = []
        for vault in vaults:
            try:
                hits.append(self._hit(vault, reference, by))
            except NoteNotFoundError as missing:
                misses.append(missing)
        if not hits:
            if len(misses) == 1:
                raise misses[0]
            names = ", ".join(vault.name for vault in vaults) or "none"
            raise NoteNotFoundError(f"no note {reference!r} in any vault ({names})")
        chosen = min(hits, key=lambda hit: hit.rank)  # min keeps the first of equals
        return Found(chosen, tuple(hits))

    def _hit(self, vault: VaultConfig, reference: str, by: LookupBy) -> Hit:
        if by == "title":
            match = self._match_title(vault.name, reference)
            return Hit(vault, match.path, match)
        if by == "path":
            return Hit(vault, self._detail(vault, reference)[0])
        path = self._stored_path(vault.name, reference)
        if path is not None:
            return Hit(vault, path)
        match = self._match_title(vault.name, reference.strip().replace("\\", "/"))
        return Hit(vault, match.path, match)

    def _stored_path(self, vault: str, reference: str) -> str | None:
        cleaned = reference.strip().replace("\\", "/")
        if not cleaned:
            raise BadNoteRequest("name a note by its vault-relative path or its title")
        normal = posixpath.normpath(cleaned).lstrip("/") if "/" in cleaned else cleaned
        for candidate in (normal, f"{normal}.md"):
            if self._store.note_exists(vault, candidate):
                return candidate
        return None

    def _resolve(self, vault: str, reference: str) -> str:
        path = self._stored_path(vault, reference)
        if path is not None:
            return path
        return self._match_title(vault, reference.strip().replace("\\", "/")).path

    def _match_title(self, vault: str, title: str) -> TitleMatch:
        wanted = title.strip()
        if not wanted:
            raise BadNoteRequest("title must not be empty")
        rows = self._store.notes_titled(vault, wanted, MAX_CANDIDATES)
        if not rows:
            raise NoteNotFoundError(
                f"no note titled {wanted!r} in vault {vault!r} (titles, file names and "
                "aliases are compared case-insensitively)"
            )
        path, rank = rows[0]
        return TitleMatch(str(path), _MATCHED_BY[int(rank)], tuple(str(row[0]) for row in rows))

    def _read(self, vault: VaultConfig, path: str, match: dict[str, Any] | None) -> NoteView:
        stored, detail = self._detail(vault, path)
        name = vault.name
        try:
            raw = read_note_bytes(vault.root, stored)
        except PathOutsideVault as error:
            raise BadNoteRequest(str(error)) from error
        except FileNotFoundError:
            return NoteView(detail, None, "the file is gone since the last index run", match, name)
        except OSError as error:
            return NoteView(detail, None, f"cannot read the file: {error.strerror}", match, name)
        try:
            return NoteView(detail, raw.decode("utf-8"), None, match, name)
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            return NoteView(detail, text, "the file is not valid UTF-8 any more", match, name)

    def _detail(self, vault: VaultConfig, path: str) -> tuple[str, NoteDetail]:
        """The stored path and its detail; refuses paths that leave the vault."""
        candidates = [path] if path.lower().endswith(".md") else [path, f"{path}.md"]
        for candidate in candidates:
            normal = _inside(vault.root, candidate)
            detail = self._store.get_note(vault.name, normal)
            if detail is not None:
                return normal, detail
        raise NoteNotFoundError(f"no note {path!r} in vault {vault.name!r}")


def _inside(root: Path, path: str) -> str:
    """The vault-relative POSIX form of `path`, after checking it stays in the vault."""
    try:
        resolve_in_vault(root, path)
    except PathOutsideVault as error:
        raise BadNoteRequest(str(error)) from error
    return posixpath.normpath(path.replace("\\", "/"))
