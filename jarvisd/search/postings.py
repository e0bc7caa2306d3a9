"""The BM25 index in memory: the store's BM25 tables (`store.bm25`), read once per index change.

Measured here (2 shared cores) with DuckDB fts's tables, which held the same
postings one row per term occurrence: computing BM25 in SQL for
just the query's terms took 6-12 ms a query on SciFact (13k chunks, 878k term
rows) and 22 ms on a 10k-note vault (64k chunks, 2.6M term rows): the scan of
`terms` grows with the collection (`match_bm25` is slower still). Reading the
same tables into postings once, when the snapshot is built (0.16 s and 0.42 s,
10 MB and 23 MB), makes a query's BM25 a few array operations over only its
terms' postings: 0.13 ms and 0.18 ms.

The scores are DuckDB fts's (its `match_bm25` macro's Okapi BM25: k1 1.2,
b 0.75, idf = log10((N - df + 0.5) / (df + 0.5) + 1), N and the average
length from `bm25_stats`), computed in float64 from integer tf and lengths
per query, so they agree with the macro to ~1e-12 (a test keeps them equal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from jarvisd.store import BM25Additions, BM25Columns

BM25_K1 = 1.2
BM25_B = 0.75
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ChunkScores:
    """BM25 of every chunk holding a query term; `bound` is the query's highest possible score."""

    chunk_ids: IntArray
    scores: npt.NDArray[np.float64]
    bound: float


Floats = npt.NDArray[np.float32]
TAIL_SLACK = 16  # postings of room past a tail's first ones
TAIL_GROWTH = 1.5


@dataclass(eq=False)
class _Tail:
    """One term's postings appended since the CSR was read: buffers with room to grow,
    shared by a chain of `Postings`; each reads only its own length of them."""

    chunk_ids: IntArray
    tf: Floats
    lengths: Floats
    filled: int

    @classmethod
    def of(
        cls, held: _Tail | None, count: int, ids: IntArray, tf: Floats, lengths: Floats
    ) -> _Tail:
        """A new tail: the first `count` postings of `held`, then these."""
        size = count + int(ids.shape[0])
        capacity = max(int(size * TAIL_GROWTH), size + TAIL_SLACK)
        tail = cls(np.empty(capacity, np.int64), np.empty(capacity, np.float32),
                   np.empty(capacity, np.float32), 0)  # fmt: skip
        if held is not None and count:
            tail.chunk_ids[:count] = held.chunk_ids[:count]
            tail.tf[:count] = held.tf[:count]
            tail.lengths[:count] = held.lengths[:count]
        tail._write(count, ids, tf, lengths)
        return tail

    @property
    def nbytes(self) -> int:
        return int(self.chunk_ids.nbytes + self.tf.nbytes + self.lengths.nbytes)

    def _write(self, start: int, ids: IntArray, tf: Floats, lengths: Floats) -> None:
        end = start + int(ids.shape[0])
        self.chunk_ids[start:end], self.tf[start:end], self.lengths[start:end] = ids, tf, lengths
        self.filled = end

    def appended(self, ids: IntArray, tf: Floats, lengths: Floats) -> _Tail:
        """These postings after all this tail holds: in place while there is room."""
        if self.filled + int(ids.shape[0]) <= self.chunk_ids.shape[0]:
            self._write(self.filled, ids, tf, lengths)
            return self
        return _Tail.of(self, self.filled, ids, tf, lengths)


@dataclass(eq=False)
class _Tails:
    """The tails of a chain of `Postings`, by term row; `head` is the newest one's number:
    only it appends in place (an older one patched again copies what it appends to)."""

    entries: list[_Tail | None]
    head: int = 0


@dataclass(frozen=True)
class Postings:
    """term -> (chunk ids, tf, chunk length): a CSR read whole at a full build, and per-term
    tails of the postings that patches appended since.

    An edit never rewrites the CSR (2.6M postings at 10k notes) nor a term's list: the
    new chunks' postings go at the end of their terms' tails (`_Tail`, amortised
    growth), and this generation reads each tail up to its own `tail_lengths`. The
    postings of chunks that are gone stay in place: chunk ids are never reused, and
    `keyword_scores` drops every chunk its snapshot does not hold live. df, N and the
    average length come fresh from the store with every patch, and idf and the
    length factor are computed per query over only its terms' postings (a few
    thousand numbers), so scores stay exactly BM25.
    """

    terms: dict[str, int]  # the CSR's terms, shared (never changed) by every patch
    df: npt.NDArray[np.float64]  # per term row (the CSR's, then the new terms')
    offsets: IntArray  # CSR postings of term t: offsets[t]:offsets[t + 1]
    chunk_ids: IntArray
    tf: Floats
    lengths: Floats
    documents: float = 0.0
    average_length: float = 0.0
    new_terms: dict[str, int] = field(default_factory=dict)  # rows past the CSR's
    tails: _Tails = field(default_factory=lambda: _Tails([]))
    tail_lengths: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))  # per row
    number: int = 0  # this generation's place in its chain (`_Tails.head`)
    patched_postings: int = 0  # postings added by patches since the CSR was read
    tail_bytes: int = 0  # what the tails this generation reads hold, their room included

    @classmethod
    def empty(cls) -> Postings:
        return cls(
            {},
            np.zeros(0, np.float64),
            np.zeros(1, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
            np.zeros(0, np.float32),
        )

    @property
    def csr_postings(self) -> int:
        return int(self.chunk_ids.shape[0])

    @property
    def memory_bytes(self) -> int:
        arrays: list[npt.NDArray[Any]] = [self.df, self.offsets, self.chunk_ids, self.tf]
        arrays.extend((self.lengths, self.tail_lengths))
        terms = len(self.terms) + len(self.new_terms)
        return sum(int(array.nbytes) for array in arrays) + 80 * terms + self.tail_bytes

    def row(self, term: str) -> int | None:
        found = self.terms.get(term)
        return self.new_terms.get(term) if found is None else found

    def term_parts(self, row: int) -> list[tuple[IntArray, Floats, Floats]]:
        """(chunk ids, tf, lengths) of a term row, dead chunks included: the CSR's, the tail's."""
        parts = []
        if row < self.offsets.shape[0] - 1:
            start, end = int(self.offsets[row]), int(self.offsets[row + 1])
            if end > start:
                parts.append(
                    (self.chunk_ids[start:end], self.tf[start:end], self.lengths[start:end])
                )
        count = int(self.tail_lengths[row]) if row < self.tail_lengths.shape[0] else 0
        tail = self.tails.entries[row] if count else None
        if tail is not None:
            parts.append((tail.chunk_ids[:count], tail.tf[:count], tail.lengths[:count]))
        return parts

    def score(self, stems: Sequence[str]) -> ChunkScores:
        """BM25 over the chunks holding any of the (distinct) stems."""
        ids: list[IntArray] = []
        contributions: list[npt.NDArray[np.float64]] = []
        bound = 0.0
        documents, average = self.documents, self.average_length
        for stem in dict.fromkeys(stems):
            row = self.row(stem)
            if row is None or self.df[row] <= 0:
                continue
            frequency = float(self.df[row])
            idf = float(np.log10((documents - frequency + 0.5) / (frequency + 0.5) + 1))
            bound += idf * (BM25_K1 + 1)
            for chunk_ids, tf32, lengths in self.term_parts(row):
                tf = tf32.astype(np.float64)
                relative = lengths.astype(np.float64) / average if average > 0 else 1.0
                norm = (1 - BM25_B) + BM25_B * relative
                ids.append(chunk_ids)
                contributions.append(idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * norm))
        if not ids:
            return ChunkScores(np.zeros(0, np.int64), np.zeros(0, np.float64), 0.0)
        if len(ids) == 1:
            return ChunkScores(ids[0], contributions[0], bound)
        chunk_ids, inverse = np.unique(np.concatenate(ids), return_inverse=True)
        scores = np.bincount(inverse, weights=np.concatenate(contributions))
        return ChunkScores(chunk_ids, scores.astype(np.float64), bound)

    def patched(self, patch: PostingsPatch) -> Postings:
        """The next generation: `patch.added` appended per term, df as given (for every
        term whose df changed), N and total length as the store has them now."""
        new_terms = dict(self.new_terms)
        extra = [term for term in patch.frequencies if self.row(term) is None]
        first = self.df.shape[0]
        for offset, term in enumerate(extra):
            new_terms[term] = first + offset
        df = np.concatenate((self.df, np.zeros(len(extra), np.float64)))
        lengths = np.concatenate(
            (self.tail_lengths, np.zeros(df.shape[0] - self.tail_lengths.shape[0], np.int64))
        )
        for term, frequency in patch.frequencies.items():
            row = self.terms.get(term, new_terms.get(term))
            assert row is not None
            df[row] = frequency
        in_place = self.tails.head == self.number
        tails = self.tails if in_place else _Tails(list(self.tails.entries))
        if len(tails.entries) < df.shape[0]:
            tails.entries.extend([None] * (df.shape[0] - len(tails.entries)))
        count = grown = 0
        for term, (chunk_ids, tf, chunk_lengths) in patch.added.items():
            row = self.terms.get(term, new_terms.get(term))
            if row is None:  # a term with postings always has a df row; never crash on it
                continue
            held, old = int(lengths[row]), tails.entries[row]
            if in_place and old is not None and old.filled == held:
                tail = old.appended(chunk_ids, tf, chunk_lengths)
            else:
                tail = _Tail.of(old, held, chunk_ids, tf, chunk_lengths)
            if tail is not old:
                grown += tail.nbytes - (old.nbytes if old is not None and held else 0)
            tails.entries[row] = tail  # a grown tail starts with what the old one held
            lengths[row] = tail.filled
            count += int(chunk_ids.shape[0])
        tails.head = self.number + 1
        total = patch.total_length
        return dataclasses.replace(
            self,
            df=df,
            documents=float(patch.documents),
            average_length=float(total) / patch.documents if patch.documents else 0.0,
            new_terms=new_terms,
            tails=tails,
            tail_lengths=lengths,
            number=self.number + 1,
            patched_postings=self.patched_postings + count,
            tail_bytes=self.tail_bytes + grown,
        )


def postings_of(columns: BM25Columns) -> Postings:
    """The store's BM25 tables (`Store.read_bm25`) as postings; empty for an empty index."""
    if not columns.documents or not columns.term_ids.shape[0]:
        return Postings.empty()
    # Term ids are never reused, so the stored ones have gaps: rows here are dense.
    term_rows = np.searchsorted(columns.term_ids, columns.posting_terms)
    counts = np.bincount(term_rows, minlength=columns.term_ids.shape[0])
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    terms = dict(zip(columns.terms.tolist(), range(columns.term_ids.shape[0]), strict=True))
    return Postings(
        terms,
        columns.df.astype(np.float64),
        offsets,
        columns.chunk_ids,
        columns.tf,
        columns.lengths,
        documents=float(columns.documents),
        average_length=float(columns.total_length) / float(columns.documents),
    )


PostingLists = dict[str, tuple[IntArray, npt.NDArray[np.float32], npt.NDArray[np.float32]]]


@dataclass(frozen=True)
class PostingsPatch:
    """What one edit batch changed in BM25, read in the snapshot's transaction."""

    added: PostingLists  # the new chunks' postings, per term
    frequencies: dict[str, int]  # df now, of every term whose df changed
    documents: int
    total_length: int


def patch_of(additions: BM25Additions) -> PostingsPatch:
    """The store's BM25 additions (`Store.read_snapshot_patch`) as per-term posting lists."""
    added: PostingLists = {}
    terms = additions.terms
    if len(terms):
        # Sorted by term: each term's postings are one run of rows.
        breaks = np.flatnonzero(terms[1:] != terms[:-1]) + 1
        starts = np.concatenate(([0], breaks)).astype(np.int64)
        ends = np.append(breaks, len(terms)).astype(np.int64)
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            added[str(terms[start])] = (
                additions.chunk_ids[start:end],
                additions.tf[start:end],
                additions.lengths[start:end],
            )
    return PostingsPatch(added, additions.frequencies, additions.documents, additions.total_length)
