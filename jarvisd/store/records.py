"""What the store hands back: small frozen dataclasses, never raw tuples."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from jarvisd.indexing.parsed import Heading, LinkKind


@dataclass
class LinkWork:
    """The links of one vault whose resolution may have changed since the last one.

    `sources`: notes whose own links were rewritten. `names`: the last segment
    of every link key a created, deleted or renamed note (or a changed alias)
    adds or removes: its file name, the file name its path's tails end in, an
    alias's last segment. Every lookup `LinkResolver` makes for a key (the key,
    its tails after the linking note's folder) ends in the key's last segment,
    so a link whose key ends in none of `names` resolves as it did. `paths`:
    where a note came, went or changed its aliases, which is all the store's
    resolver (kept alive between resolutions) needs to catch up."""

    sources: set[int] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)

    def merge(self, other: LinkWork) -> None:
        self.sources |= other.sources
        self.names |= other.names
        self.paths |= other.paths


@dataclass
class Changes:
    """What writes changed since the search snapshot last asked (`Store.take_changes`).

    In memory, for this process only: a new process builds its snapshot whole.
    `notes`: ids written, renamed, touched or deleted; `terms`: BM25 term ids
    whose df dropped (the postings of removed chunks are not there to say so);
    `everything`: something changed every row (reset, rebuild)."""

    notes: set[int] = field(default_factory=set)
    terms: set[int] = field(default_factory=set)
    everything: bool = False
    links: LinkWork = field(default_factory=LinkWork)

    def merge(self, other: Changes) -> None:
        self.notes |= other.notes
        self.terms |= other.terms
        self.everything |= other.everything
        self.links.merge(other.links)

    @property
    def empty(self) -> bool:
        return not (self.notes or self.terms or self.everything)


@dataclass(frozen=True, slots=True)
class FileState:
    """What the indexer compares with a file on disk to skip unchanged notes."""

    size: int
    mtime_ns: int
    content_hash: str


@dataclass(frozen=True, slots=True)
class LinkKey:
    """One link key as seen from one note: resolution depends on the linking note's folder."""

    source_path: str
    key: str


@dataclass(frozen=True, slots=True)
class OutgoingLink:
    target: str
    key: str
    kind: LinkKind
    heading: str | None
    alias: str | None
    line: int
    targets_note: bool
    # The vault-relative path of the note it resolves to; None when unresolved.
    resolved_path: str | None


@dataclass(frozen=True, slots=True)
class Backlink:
    source_path: str
    source_title: str
    kind: LinkKind
    line: int
    heading: str | None
    alias: str | None


@dataclass(frozen=True, slots=True)
class NoteDetail:
    """A note's metadata with its links in both directions (no chunk text, no vectors)."""

    vault: str
    path: str
    title: str
    content_hash: str
    size: int
    mtime_ns: int
    indexed_at: float
    chunk_count: int
    frontmatter: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    headings: tuple[Heading, ...] = ()
    warnings: tuple[str, ...] = ()
    links: tuple[OutgoingLink, ...] = ()
    backlinks: tuple[Backlink, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class NoteSummary:
    """One line of a note listing: enough to name the note and to open it."""

    path: str
    title: str
    size: int
    mtime_ns: int

    def as_dict(self) -> dict[str, Any]:
        # `modified` as search results give it: ISO 8601 in local time.
        modified = datetime.fromtimestamp(self.mtime_ns / 1e9).astimezone().isoformat()
        return {"path": self.path, "title": self.title, "size": self.size, "modified": modified}


@dataclass(frozen=True, slots=True)
class NotePage:
    """A page of a vault's notes in path order, and the count of all of them."""

    notes: tuple[NoteSummary, ...]
    total: int
    # The last path of this page when more notes follow it, else None.
    next_after: str | None


@dataclass(frozen=True)
class ChunkMatrix:
    """Every chunk id with its vector, row for row, for an exact numpy search."""

    ids: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True)
class SubjectMatrix:
    """Subject vectors by note id (notes without one are absent)."""

    note_ids: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.note_ids.shape[0])
