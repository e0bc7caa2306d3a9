"""Compact adjacency (CSR) and the breadth-first walk every neighbourhood and path uses.

Pure numpy over note numbers 0..n-1, nothing about DuckDB or paths. Notes are
numbered in ascending note id, so "the smallest number" below is the smallest
id: the rule the SQL walk this replaced used to pick one parent among several
(`min(walk.node)`), which keeps `via` and shortest paths identical to it.

A walk expands a whole level at once: the frontier's neighbour lists are
gathered with one fancy index, `np.minimum.at` finds the smallest source
reaching each note, and the notes not reached before form the next level
(ascending, from `np.flatnonzero`). Cost is a handful of numpy calls per
level, whatever the fan-out, plus a pass over the vault's notes per level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int32]
OffsetArray = npt.NDArray[np.int64]

UNREACHED = -1


@dataclass(frozen=True, slots=True)
class Adjacency:
    """Neighbour lists: note i's neighbours are `targets[offsets[i]:offsets[i + 1]]`, ascending."""

    offsets: OffsetArray
    targets: IntArray

    @classmethod
    def from_steps(cls, sources: IntArray, targets: IntArray, count: int) -> Adjacency:
        """From (source, target) steps between `count` notes; repeated steps are kept once."""
        # One int64 key per step sorts by source then target; repeats sit side by side.
        keys = np.sort(sources.astype(np.int64) * count + targets.astype(np.int64))
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if keys.size else keys
        starts = (keys // count).astype(np.int32)
        offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.bincount(starts, minlength=count), out=offsets[1:])
        return cls(offsets, (keys % count).astype(np.int32))

    @property
    def size(self) -> int:
        """How many notes (not steps) it covers."""
        return int(self.offsets.shape[0]) - 1

    @property
    def steps(self) -> int:
        return int(self.targets.shape[0])

    def expand(self, frontier: IntArray) -> tuple[IntArray, IntArray]:
        """(source, neighbour) for every step out of `frontier`."""
        begins = self.offsets[frontier]
        counts = self.offsets[frontier + 1] - begins
        # Position of each step in `targets`: its list's start plus its place in the list.
        firsts = np.cumsum(counts) - counts
        positions = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(
            begins - firsts, counts
        )
        return np.repeat(frontier, counts), self.targets[positions]


@dataclass(frozen=True, slots=True)
class Walk:
    """Every note reached from `start`, each once, at its shortest distance.

    `levels[k]` holds the notes at distance k + 1, ascending; `parents[note]`
    is the smallest-numbered note one step nearer (UNREACHED for notes not
    reached, and for the start itself).
    """

    start: int
    levels: tuple[IntArray, ...]
    parents: IntArray

    @property
    def total(self) -> int:
        return sum(int(level.shape[0]) for level in self.levels)

    def reached(self, note: int) -> bool:
        return note == self.start or bool(self.parents[note] != UNREACHED)

    def trail(self, note: int) -> list[int]:
        """The notes from the start to a reached `note`, both included."""
        trail = [note]
        while trail[-1] != self.start:
            trail.append(int(self.parents[trail[-1]]))
        trail.reverse()
        return trail


def walk(adjacency: Adjacency, start: int, depth: int, until: int | None = None) -> Walk:
    """Breadth-first from `start` for `depth` steps; with `until`, stop at the level reaching it.

    The level that reaches `until` is still completed, so its parent is chosen
    among all of that level's candidates, as a full walk would choose it.
    """
    size = adjacency.size
    parents = np.full(size, UNREACHED, dtype=np.int32)
    seen = np.zeros(size, dtype=np.bool_)
    seen[start] = True
    nearest = np.empty(size, dtype=np.int32)  # per level: the smallest source reaching each note
    frontier = np.array([start], dtype=np.int32)
    levels: list[IntArray] = []
    for _ in range(depth):
        sources, neighbours = adjacency.expand(frontier)
        nearest.fill(size)
        # Unbuffered, so repeated notes all count: well-defined whatever the order.
        np.minimum.at(nearest, neighbours, sources)
        notes = np.flatnonzero((nearest < size) & ~seen).astype(np.int32)
        if notes.size == 0:
            break
        seen[notes] = True
        parents[notes] = nearest[notes]
        levels.append(notes)
        if until is not None and seen[until]:
            break
        frontier = notes
    return Walk(start, tuple(levels), parents)


def shortest_trail(adjacency: Adjacency, start: int, end: int, max_steps: int) -> list[int]:
    """The notes of one shortest walk from start to end, both included; [] when there is none."""
    if start == end:
        return [start]
    found = walk(adjacency, start, max_steps, until=end)
    return found.trail(end) if found.reached(end) else []
