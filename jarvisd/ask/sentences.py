"""Sentences: splitting answers and passages, markdown stripped, `[n]` markers read off.

Both sides of the citation check are compared sentence by sentence: a
sentence of an answer against each sentence of each passage. A whole
passage (a 200-token chunk) is a blurred target for one sentence; its best
sentence is not.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache

from jarvisd.search.passages import Passage

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BatchEncoder = Callable[[list[str]], FloatArray]

# A sentence ends at . ! ? (or a closing quote after one) before a capital, a digit or
# an opening bracket; a line break always ends one (list items, table rows).
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[*_]*[A-Z0-9])")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "fig.", "no.", "mr.", "dr.")
MARKERS = re.compile(r"\s*\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
_LEADING_MARKERS = re.compile(r"^\s*(?:\[\d{1,3}(?:\s*[,;]\s*\d{1,3})*\]\s*)+")
_BULLET = re.compile(r"^\s*(?:[-*+]\s+(?:\[[ xX]\]\s+)?|\d{1,3}[.)]\s+|>\s*|#{1,6}\s+)")
_EMBED = re.compile(r"!\[\[[^\]]*\]\]|!\[[^\]]*\]\([^)]*\)")
_WIKILINK = re.compile(r"\[\[([^\]|#]*)(?:#[^\]|]*)?(?:\|([^\]]*))?\]\]")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|==|~~|`)")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}")
_WORD = re.compile(r"[A-Za-z0-9][\w'-]*")
MIN_PASSAGE_WORDS = 4  # shorter passage lines (headings, labels) support nothing


@dataclass(frozen=True, slots=True)
class Sentence:
    text: str  # without markers, markdown stripped
    markers: tuple[int, ...]  # the [n] the writer put after it, in order
    ends_line: bool  # a line break followed it (list items keep their lines)


def plain(text: str) -> str:
    """Markdown to the words a reader sees: links by their text, no emphasis marks."""
    text = _EMBED.sub("", text)
    text = _WIKILINK.sub(lambda match: match.group(2) or match.group(1), text)
    text = _LINK.sub(r"\1", text)
    text = _EMPHASIS.sub("", text)
    return " ".join(text.replace("|", " ").split())


def readable(text: str) -> str:
    """Passage text for a prompt: lines kept, embeds dropped, links by their text.

    A small model copies what it sees: `![[lucide-settings.svg#icon]]` came back
    verbatim in SmolLM2's answers until the prompt stopped showing it.
    """
    lines = []
    for line in text.splitlines():
        cleaned = _EMBED.sub("", line)
        cleaned = _WIKILINK.sub(lambda match: match.group(2) or match.group(1), cleaned)
        lines.append(_LINK.sub(r"\1", cleaned).rstrip())
    return "\n".join(lines).strip()


def split(text: str) -> list[Sentence]:
    """The sentences of `text`, each with the [n] markers written after it."""
    sentences: list[Sentence] = []
    for line in _logical_lines(text):
        if _TABLE_RULE.match(line):
            continue
        line = _BULLET.sub("", line)
        pieces = [piece for piece in _split_line(line) if piece.strip()]
        for index, piece in enumerate(pieces):
            leading = _LEADING_MARKERS.match(piece)
            if leading and sentences:
                # "... Paris. [1] Next" split after the full stop: [1] goes back.
                back = _sentence(leading.group(), ends_line=False).markers
                previous = sentences[-1]
                sentences[-1] = Sentence(previous.text, previous.markers + back, False)
                piece = piece[leading.end() :]
            sentence = _sentence(piece, ends_line=index == len(pieces) - 1)
            if sentence.text:
                sentences.append(sentence)
            elif sentences and sentence.ends_line:
                previous = sentences[-1]
                sentences[-1] = Sentence(previous.text, previous.markers, True)
    return sentences


def _logical_lines(text: str) -> list[str]:
    """Lines as a reader sees them: a paragraph's wrapped lines are one; a list item,
    heading, quote or table row starts its own."""
    lines: list[str] = []
    joinable = False
    for raw in text.splitlines():
        if not raw.strip():
            joinable = False
            continue
        starts_block = bool(_BULLET.match(raw)) or raw.lstrip().startswith("|")
        if joinable and not starts_block:
            lines[-1] = f"{lines[-1].rstrip()} {raw.strip()}"
        else:
            lines.append(raw)
        # A heading or table row ends where it is; a paragraph or list item may wrap on.
        joinable = not (raw.lstrip().startswith(("#", "|")))
    return lines


def _split_line(line: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(line):
        candidate = line[start : match.start()]
        if candidate.rstrip().lower().endswith(_ABBREVIATIONS):
            continue
        pieces.append(candidate + line[match.start() : match.end()].rstrip())
        start = match.end()
    pieces.append(line[start:])
    return pieces


def _sentence(piece: str, ends_line: bool) -> Sentence:
    markers: list[int] = []
    for match in MARKERS.finditer(piece):
        markers.extend(int(number) for number in re.split(r"\s*[,;]\s*", match.group(1)))
    text = plain(MARKERS.sub("", piece))
    text = re.sub(r"\s+([.,;:!?])", r"\1", text).strip()
    return Sentence(text, tuple(dict.fromkeys(markers)), ends_line)


def words(text: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(text)]


@dataclass(frozen=True)
class SentenceTable:
    """The sentences of the passages, which passage each came from, and their vectors."""

    texts: list[str]
    owners: IntArray  # passage index of each sentence
    vectors: FloatArray | None  # None: the embedding model is away

    def best_per_passage(self, vectors: FloatArray, passages: int) -> FloatArray:
        """(len(vectors), passages): each vector's best cosine with a sentence of each passage."""
        best = np.full((vectors.shape[0], passages), -1.0, dtype=np.float32)
        if self.vectors is None or not self.texts or vectors.shape[0] == 0:
            return best
        similarities = vectors @ self.vectors.T
        for passage in range(passages):
            rows = self.owners == passage
            if rows.any():
                best[:, passage] = similarities[:, rows].max(axis=1)
        return best


def sentence_table(passages: Sequence[Passage], encode: BatchEncoder | None) -> SentenceTable:
    """Every passage sentence long enough to say something, encoded in one batch."""
    texts: list[str] = []
    owners: list[int] = []
    for index, passage in enumerate(passages):
        for sentence in split(passage.text):
            if len(words(sentence.text)) >= MIN_PASSAGE_WORDS:
                texts.append(sentence.text)
                owners.append(index)
    vectors = encode(texts) if encode is not None and texts else None
    return SentenceTable(texts, np.asarray(owners, dtype=np.int64), vectors)


class SentenceVectors:
    """An LRU of sentence vectors in front of an encoder: passages recur across questions.

    Encoding the ~50 sentences of five passages took 0.5-0.8 s on two busy
    cores; the second question on the same notes needs none of them again.
    """

    def __init__(self, encode: BatchEncoder, capacity: int = 8192) -> None:
        self._encode = encode
        self._cache: LRUCache[str, npt.NDArray[np.float32]] = LRUCache(maxsize=capacity)
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> FloatArray:
        known: dict[str, npt.NDArray[np.float32]] = {}
        with self._lock:
            for text in texts:
                cached = self._cache.get(text)
                if cached is not None:
                    known[text] = cached
        missing = list(dict.fromkeys(text for text in texts if text not in known))
        if missing:
            fresh = self._encode(missing)
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    self._cache[text] = vector
                    known[text] = vector
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([known[text] for text in texts]).astype(np.float32, copy=False)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
