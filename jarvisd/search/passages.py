"""Passages for answering a question: the chunk that earned each of the best notes its rank.

A hybrid search ranks notes; for each of the best, the chunk it matched by
(the keyword chunk when the question's words occur, else the closest chunk)
is a passage: its full text, with the note's title and the chunk's heading
path, so a prompt and a citation can both say where it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

from jarvisd.config import SearchConfig
from jarvisd.search.ranking import Encoder, rank
from jarvisd.search.request import SearchRequest
from jarvisd.search.snapshot import Snapshot
from jarvisd.search.terms import Stemmer
from jarvisd.store import Store


@dataclass(frozen=True, slots=True)
class Passage:
    vault: str
    path: str
    title: str
    heading_path: tuple[str, ...]
    lines: tuple[int, int]
    text: str
    score: float

    @property
    def label(self) -> str:
        """`Title > Heading > Subheading`, how a prompt and a citation name the passage."""
        return " > ".join((self.title, *self.heading_path)) if self.heading_path else self.title


def best_passages(
    store: Store,
    stemmer: Stemmer,
    snapshot: Snapshot,
    request: SearchRequest,
    config: SearchConfig,
    encode: Encoder | None,
) -> list[Passage]:
    """One passage per note, best note first (blocking: run it in the search pool)."""
    ranked = rank(store, stemmer, snapshot, request, config, encode)
    passages = []
    for hit, chunk in zip(ranked.results, ranked.chunks, strict=True):
        passages.append(
            Passage(
                vault=hit.vault,
                path=hit.path,
                title=hit.title,
                heading_path=hit.heading_path,
                lines=hit.lines,
                text=str(snapshot.texts[chunk]),
                score=hit.score,
            )
        )
    return passages
