"""Snippets: the best chunk's text around the query's words, with those words marked.

A word is marked when one of its stems is one of the query's stems, the same
rule BM25 matched it by (`baking` is marked for the query `bake`). Spans are
[start, end) character offsets into the snippet, so any client can highlight
them (jarvisctl turns them into rich markup).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jarvisd.search.terms import Stemmer, StemSource, tokenize

SNIPPET_CHARS = 320
LEAD_CHARS = 60  # context kept before the first marked word
_WORD = re.compile(r"\w+")
_ASCII_TERM = re.compile(r"[a-z0-9]+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Snippet:
    text: str
    highlights: list[tuple[int, int]]


def make_snippets(
    source: StemSource,
    stemmer: Stemmer,
    texts: list[str],
    stems: frozenset[str],
) -> list[Snippet]:
    """A snippet per text; the words of all of them are stemmed in one go."""
    flats = [_SPACE.sub(" ", text).strip() for text in texts]
    candidates = [_candidates(flat, stems) for flat in flats]
    pieces = sorted({piece for words in candidates for _, _, found in words for piece in found})
    lookup = stemmer.stems(source, pieces) if pieces else {}
    snippets = []
    for flat, words in zip(flats, candidates, strict=True):
        spans = [
            (start, end)
            for start, end, found in words
            if any(lookup.get(piece) in stems for piece in found)
        ]
        snippets.append(_window(flat, spans))
    return snippets


def _window(flat: str, spans: list[tuple[int, int]]) -> Snippet:
    """At most SNIPPET_CHARS of `flat`, from a little before the first marked word."""
    start = 0
    if spans and len(flat) > SNIPPET_CHARS:
        start = _word_start(flat, max(0, spans[0][0] - LEAD_CHARS))
    end = len(flat)
    if end - start > SNIPPET_CHARS:
        end = _word_end(flat, start + SNIPPET_CHARS)
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(flat) else ""
    shift = len(prefix) - start
    kept = [(a + shift, b + shift) for a, b in spans if a >= start and b <= end]
    return Snippet(prefix + flat[start:end] + suffix, kept)


def _candidates(text: str, stems: frozenset[str]) -> list[tuple[int, int, list[str]]]:
    """Words that may carry a query stem: (start, end, the index terms in them)."""
    if not stems:
        return []
    # A cheap screen first: Porter only rewrites endings, so a word and its stem
    # share their first two letters; only such words are stemmed at all.
    prefixes = {stem[:2] for stem in stems}
    words: list[tuple[int, int, list[str]]] = []
    if text.isascii():
        # Lower-casing ASCII keeps every offset, so the index's terms can be found in
        # place (the common case, and ten times faster than word by word).
        for match in _ASCII_TERM.finditer(text.lower()):
            if match.group()[:2] in prefixes:
                words.append((match.start(), match.end(), [match.group()]))
        return words
    for match in _WORD.finditer(text):
        pieces = [piece for piece in tokenize(match.group()) if piece[:2] in prefixes]
        if pieces:
            words.append((match.start(), match.end(), pieces))
    return words


def _word_start(text: str, position: int) -> int:
    """The start of the word at or after `position` (never cut a word in half)."""
    if position <= 0:
        return 0
    space = text.find(" ", position)
    return position if space < 0 else space + 1


def _word_end(text: str, position: int) -> int:
    space = text.rfind(" ", 0, position)
    return position if space <= 0 else space
