"""A query's terms as the BM25 index holds them: tokens, then the index's own stems.

Tokenised here the way the index's tokenizer (DuckDB fts's, run in SQL by
`store.bm25`) does it: accents stripped, lower case, runs of [a-z0-9]. The
stems are the index's too (DuckDB's Porter `stem()`), asked of the store
(`Store.stem_words`) for words not seen before and remembered: only
[a-z0-9]+ words ever reach it.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Protocol

from cachetools import LRUCache

MAX_QUERY_TERMS = 64  # a pasted paragraph needs no more to be found
_TERM = re.compile(r"[a-z0-9]+")
_COMBINING = re.compile(r"[\u0300-\u036f]")


class StemSource(Protocol):
    """Where stems come from: the store (`Store.stem_words`)."""

    def stem_words(self, words: Iterable[str]) -> dict[str, str]: ...


def tokenize(text: str) -> list[str]:
    """The FTS index's tokenizer: strip accents, lower case, split on anything not [a-z0-9]."""
    plain = _COMBINING.sub("", unicodedata.normalize("NFD", text)).lower()
    return _TERM.findall(plain)


class Stemmer:
    """Porter stems by the index's own `stem()`, remembered per word."""

    def __init__(self, capacity: int = 50_000) -> None:
        self._stems: LRUCache[str, str] = LRUCache(maxsize=capacity)
        self._lock = threading.Lock()

    def stems(self, source: StemSource, words: Sequence[str]) -> dict[str, str]:
        with self._lock:
            known = {word: self._stems[word] for word in words if word in self._stems}
        missing = sorted({word for word in words if word not in known and _TERM.fullmatch(word)})
        if missing:
            found = source.stem_words(missing)
            with self._lock:
                self._stems.update(found)
            known.update(found)
        return known


def query_stems(source: StemSource, stemmer: Stemmer, query: str) -> list[str]:
    """The distinct stems of the query's terms, in first-seen order."""
    words = list(dict.fromkeys(tokenize(query)))[:MAX_QUERY_TERMS]
    if not words:
        return []
    stems = stemmer.stems(source, words)
    return list(dict.fromkeys(stems[word] for word in words if word in stems))
