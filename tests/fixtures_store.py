"""Helpers for the store tests: parsed notes and unit vectors without the parser or the model."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from jarvisd.config import HnswConfig, StorageConfig
from jarvisd.indexing.markdown import link_key
from jarvisd.indexing.parsed import Chunk, Heading, Link, ParsedNote

DIMENSION = 384


def storage_config(database: Path | None = None, **hnsw: Any) -> StorageConfig:
    return StorageConfig(database=database, threads=1, hnsw=HnswConfig(**hnsw))


def link(
    target: str,
    *,
    line: int = 1,
    kind: str = "wikilink",
    alias: str | None = None,
    heading: str | None = None,
) -> Link:
    return Link(
        target=target,
        key=link_key(target),
        kind=kind,
        heading=heading,  # type: ignore[arg-type]
        alias=alias,
        line=line,
    )


def make_note(
    path: str,
    texts: Sequence[str] = ("Some text.",),
    *,
    title: str | None = None,
    tags: Sequence[str] = (),
    aliases: Sequence[str] = (),
    links: Sequence[Link] = (),
    frontmatter: dict[str, Any] | None = None,
    content: str | None = None,
) -> ParsedNote:
    """A parsed note with one chunk per text; embed_text is the text itself."""
    name = path.rsplit("/", 1)[-1].removesuffix(".md")
    chunks = tuple(
        Chunk(
            ordinal=index,
            heading_path=(name, f"Part {index}"),
            text=text,
            embed_text=text,
            token_count=len(text.split()),
            start_line=index * 10 + 1,
            end_line=index * 10 + 5,
        )
        for index, text in enumerate(texts)
    )
    body = content if content is not None else path + "\n" + "\n".join(texts)
    return ParsedNote(
        path=path,
        title=title or name,
        content_hash=hashlib.sha256(body.encode()).hexdigest(),
        frontmatter=frontmatter or {},
        tags=tuple(tags),
        aliases=tuple(aliases),
        headings=(Heading(1, name, 1),),
        links=tuple(links),
        chunks=chunks,
    )


def unit_vectors(count: int, seed: int = 0) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    normalised: npt.NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


def vectors_for(note: ParsedNote, seed: int = 0) -> npt.NDArray[np.float32]:
    return unit_vectors(len(note.chunks), seed)
