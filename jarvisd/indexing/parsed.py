"""The values that flow from the parser to the store: a parsed note and its parts.

These are plain frozen dataclasses with no behaviour beyond small derived
properties, so every stage (markdown -> embedder -> store -> search) can share
them without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

LinkKind = Literal["wikilink", "embed", "markdown"]

# Obsidian opens these itself as attachments. Anything else, including a name
# with a dot in it ("Obsidian 1.0 release"), is a note name: notes are files
# too, so only a known non-markdown extension may turn a link into an attachment.
ATTACHMENT_EXTENSIONS: frozenset[str] = frozenset(
    {
        # images
        "avif",
        "bmp",
        "gif",
        "heic",
        "heif",
        "ico",
        "jpeg",
        "jpg",
        "png",
        "svg",
        "tif",
        "tiff",
        "webp",
        # audio
        "aac",
        "flac",
        "m4a",
        "mp3",
        "oga",
        "ogg",
        "opus",
        "wav",
        "3gp",
        # video
        "avi",
        "m4v",
        "mkv",
        "mov",
        "mp4",
        "mpeg",
        "mpg",
        "ogv",
        "webm",
        # documents, data and Obsidian's own non-markdown files
        "base",
        "canvas",
        "csv",
        "doc",
        "docx",
        "epub",
        "excalidraw",
        "html",
        "ipynb",
        "json",
        "odp",
        "ods",
        "odt",
        "pdf",
        "ppt",
        "pptx",
        "rtf",
        "tsv",
        "txt",
        "xls",
        "xlsx",
        "xml",
        "yaml",
        "yml",
        # archives and code
        "7z",
        "css",
        "gz",
        "js",
        "tar",
        "zip",
    }
)


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
    points to, already normalised against the note's folder (a wikilink
    written as a relative path, `../Note`, is normalised the same way).
    `key` is the normalised lookup key used to resolve it (see
    `jarvisd.indexing.markdown.link_key`).
    """

    target: str
    key: str
    kind: LinkKind
    heading: str | None = None
    alias: str | None = None
    line: int = 0

    @property
    def targets_note(self) -> bool:
        """False for an attachment (`image.png`, `file.pdf`); True for a note name or `.md`."""
        name = self.target.rpartition("/")[2]
        stem, dot, extension = name.rpartition(".")
        return not (dot and stem and extension.lower() in ATTACHMENT_EXTENSIONS)


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
    # Problems that did not stop the note from being indexed (malformed
    # frontmatter, an invalid tag), one readable sentence each.
    warnings: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        """What the note says it is about (`subject_text`): encoded once per note."""
        return subject_text(self.title, self.aliases, self.frontmatter)


SUBJECT_CHARACTERS = 1000  # a description past this is cut: the vector is of the gist


def subject_text(title: str, aliases: Sequence[str], frontmatter: Mapping[str, Any]) -> str:
    """A note's title, aliases and frontmatter `description`, joined: the text of its
    subject vector (search credits a note whose subject matches the query as a whole,
    `search.subject_mix`). Empty for a note with none of them."""
    parts = [title.strip(), *(alias.strip() for alias in aliases)]
    description = frontmatter.get("description")
    if isinstance(description, str):
        parts.append(description.strip())
    return ". ".join(part for part in parts if part)[:SUBJECT_CHARACTERS]
