"""The values that flow from the parser to the store: a parsed note and its parts.

These are plain frozen dataclasses with no behaviour beyond small derived
properties, so every stage (markdown -> embedder -> store -> search) can share
them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

LinkKind = Literal["wikilink", "embed", "markdown"]


@dataclass(frozen=True, slots=True)
class Heading:
    level: int
    text: str
    line: int


@dataclass(frozen=True, slots=True)
class Link:
    """One outgoing link as written in a note.

    `target` is what the link names with alias and heading stripped: for a
    wikilink the note name or partial path as typed (`Some Note`,
    `folder/Note`); for a relative markdown link the vault-relative path it
    points to, already normalised against the note's folder.
    `key` is the normalised lookup key used to resolve it (see
    `jarvisd.markdown.link_key`).
    """

    target: str
    key: str
    kind: LinkKind
    heading: str | None = None
    alias: str | None = None
    line: int = 0


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of one section of a note, small enough to embed."""

    ordinal: int
    heading_path: tuple[str, ...]
    text: str
    embed_text: str
    token_count: int
    start_line: int
    end_line: int


@dataclass(frozen=True, slots=True)
class ParsedNote:
    """Everything jarvisd keeps about one note, derived from its bytes alone."""

    path: str
    title: str
    content_hash: str
    frontmatter: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    headings: tuple[Heading, ...] = ()
    links: tuple[Link, ...] = ()
    chunks: tuple[Chunk, ...] = ()
