"""The in-memory read model the DuckDB graph backend answers from: one snapshot per vault.

Why in memory: a graph query's own work (a walk, a note's links) is tens of
microseconds over arrays; in SQL the fixed cost of each statement (planning,
the joins for paths and titles, sorting, fetching) was several milliseconds
on every query, and a recursive walk in both directions at depth 3 more.

A `VaultGraph` is read from DuckDB (the source of truth) in one read
transaction, so notes and links agree with each other, and is never changed
after: `Snapshots` builds a new one and swaps the reference, so a query never
sees a half-built one. `invalidate()` (after every index change) bumps a
generation; the next query of a vault, or a background refresh, rebuilds it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from jarvisd.graph.adjacency import Adjacency, IntArray, OffsetArray
from jarvisd.graph.results import Direction, GraphLink, NoteNotFound, NoteRef
from jarvisd.store import Store

ObjectArray = npt.NDArray[np.object_]


@dataclass(frozen=True, slots=True)
class LinkTable:
    """Every note link of a vault, columns by row; rows grouped by linking note, in written order.

    Note i's links are rows `starts[i]:starts[i + 1]`; the rows that resolve
    to note i, ordered by linking note's path then position, are
    `backlink_rows[backlink_starts[i]:backlink_starts[i + 1]]`.
    """

    starts: OffsetArray
    sources: IntArray
    targets: ObjectArray  # as written
    target_notes: IntArray  # -1: unresolved
    kinds: ObjectArray
    lines: IntArray
    headings: ObjectArray
    aliases: ObjectArray
    backlink_starts: OffsetArray
    backlink_rows: IntArray

    @property
    def count(self) -> int:
        return int(self.sources.shape[0])


@dataclass(frozen=True, slots=True, eq=False)
class VaultGraph:
    """One vault's notes, note links and adjacency, as of one DuckDB read transaction."""

    vault: str
    generation: int
    paths: list[str]  # by note number (ascending note id)
    titles: list[str]
    numbers: dict[str, int]  # path -> note number
    path_ranks: IntArray  # each note's place in path order
    links: LinkTable
    adjacency: dict[Direction, Adjacency]
    memory_bytes: int = 0  # roughly what it holds (see _memory_bytes)
    build_seconds: float = 0.0
    built_at: float = field(default_factory=time.time)

    @property
    def note_count(self) -> int:
        return len(self.paths)

    def number(self, path: str) -> int:
        number = self.numbers.get(path)
        if number is None:
            raise NoteNotFound(f"no note {path!r} in vault {self.vault!r}")
        return number

    def ref(self, number: int) -> NoteRef:
        return NoteRef(self.paths[number], self.titles[number])

    def outgoing(self, number: int) -> tuple[GraphLink, ...]:
        links = self.links
        rows = np.arange(links.starts[number], links.starts[number + 1])
        return self._graph_links(rows)

    def backlinks(self, number: int) -> tuple[GraphLink, ...]:
        links = self.links
        begin, end = links.backlink_starts[number], links.backlink_starts[number + 1]
        return self._graph_links(links.backlink_rows[begin:end])

    def _graph_links(self, rows: npt.NDArray[np.integer[Any]]) -> tuple[GraphLink, ...]:
        links, paths, titles = self.links, self.paths, self.titles
        return tuple(
            GraphLink(
                paths[source],
                target,
                paths[note] if note >= 0 else None,
                titles[note] if note >= 0 else None,
                kind,
                line,
                heading,
                alias,
            )
            for source, target, note, kind, line, heading, alias in zip(
                links.sources[rows].tolist(),
                links.targets[rows].tolist(),
                links.target_notes[rows].tolist(),
                links.kinds[rows].tolist(),
                links.lines[rows].tolist(),
                links.headings[rows].tolist(),
                links.aliases[rows].tolist(),
                strict=True,
            )
        )

    def describe(self) -> dict[str, Any]:
        return {
            "notes": self.note_count,
            "links": self.links.count,
            "steps": self.adjacency["out"].steps,
            "generation": self.generation,
            "memory_bytes": self.memory_bytes,
            "build_seconds": round(self.build_seconds, 4),
            "built_at": self.built_at,
        }


def read_vault_graph(store: Store, vault: str, generation: int) -> VaultGraph:
    """Read one vault in ONE read transaction and index it (blocking: run it in a pool)."""
    started = time.perf_counter()
    notes, links = store.graph_columns(vault)
    ids = np.asarray(notes["id"], dtype=np.int64)
    paths = [str(path) for path in notes["path"]]
    path_ranks = np.asarray(notes["path_rank"], dtype=np.int32)
    strings: dict[str | None, str | None] = {}
    table = _link_table(ids, path_ranks, links, strings)
    graph = VaultGraph(
        vault=vault,
        generation=generation,
        paths=paths,
        titles=[str(title) for title in notes["title"]],
        numbers={path: number for number, path in enumerate(paths)},
        path_ranks=path_ranks,
        links=table,
        adjacency=_adjacency(table, len(ids)),
    )
    return replace(
        graph,
        memory_bytes=_memory_bytes(graph, strings),
        build_seconds=time.perf_counter() - started,
    )


def _adjacency(links: LinkTable, count: int) -> dict[Direction, Adjacency]:
    resolved = links.target_notes >= 0
    sources, targets = links.sources[resolved], links.target_notes[resolved]
    return {
        "out": Adjacency.from_steps(sources, targets, count),
        "in": Adjacency.from_steps(targets, sources, count),
        "both": Adjacency.from_steps(
            np.concatenate((sources, targets)), np.concatenate((targets, sources)), count
        ),
    }


def _link_table(
    ids: npt.NDArray[np.int64],
    path_ranks: IntArray,
    links: dict[str, Any],
    strings: dict[str | None, str | None],
) -> LinkTable:
    count = len(ids)
    sources = _numbers(ids, np.asarray(links["note_id"], dtype=np.int64))
    target_notes = _numbers(ids, np.asarray(links["target_note_id"], dtype=np.int64))
    starts = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(sources, minlength=count), out=starts[1:])
    resolved = np.flatnonzero(target_notes >= 0)
    # Backlinks by target, then linking note's path; stable, so then by position.
    keys = target_notes[resolved].astype(np.int64) * count + path_ranks[sources[resolved]]
    backlink_rows = resolved[np.argsort(keys, kind="stable")]
    backlink_starts = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(target_notes[resolved], minlength=count), out=backlink_starts[1:])
    return LinkTable(
        starts=starts,
        sources=sources,
        targets=_shared(links["target"], strings),
        target_notes=target_notes,
        kinds=_shared(links["kind"], strings),
        lines=np.asarray(links["line"], dtype=np.int32),
        headings=_shared(links["heading"], strings),
        aliases=_shared(links["alias"], strings),
        backlink_starts=backlink_starts,
        backlink_rows=backlink_rows.astype(np.int32),
    )


def _numbers(ids: npt.NDArray[np.int64], wanted: npt.NDArray[np.int64]) -> IntArray:
    """Note numbers of these note ids; -1 for an id that is no note of this vault."""
    if ids.size == 0:
        return np.full(wanted.shape, -1, dtype=np.int32)
    positions = np.minimum(np.searchsorted(ids, wanted), ids.size - 1)
    return np.where(ids[positions] == wanted, positions, -1).astype(np.int32)


def _shared(column: Any, strings: dict[str | None, str | None]) -> ObjectArray:
    """A string column as an object array, NULL as None, equal strings as one object.

    DuckDB hands back a new string per row: a hub note's name, written in
    thousands of links, would be held thousands of times.
    """
    values = np.asarray(np.ma.getdata(column), dtype=object).copy()
    values[np.ma.getmaskarray(column)] = None
    values[:] = list(map(strings.setdefault, values, values))
    return values


def _memory_bytes(graph: VaultGraph, strings: dict[str | None, str | None]) -> int:
    """Arrays, lists, the path index, and each distinct string once (sys.getsizeof)."""
    links = graph.links
    arrays: list[npt.NDArray[Any]] = [graph.path_ranks]
    arrays += [getattr(links, item.name) for item in fields(LinkTable)]
    for adjacency in graph.adjacency.values():
        arrays += [adjacency.offsets, adjacency.targets]
    total = sum(int(array.nbytes) for array in arrays)
    total += sum(sys.getsizeof(item) for item in (graph.paths, graph.titles, graph.numbers))
    total += sum(sys.getsizeof(text) for text in graph.paths)
    total += sum(sys.getsizeof(text) for text in graph.titles)
    return total + sum(sys.getsizeof(text) for text in strings if text is not None)


Builder = Callable[[str, int], VaultGraph]


class Snapshots:
    """The current VaultGraph of each vault, thread-safe; rebuilt on first use after a change.

    Queries run on several pool threads at once. Reading the current snapshot
    takes no lock; building one takes that vault's lock, so a vault is read
    from DuckDB once however many queries wait for it, and the waiters use the
    snapshot the builder made.
    """

    def __init__(self, build: Builder) -> None:
        self._build = build
        self._generation = 0
        self._current: dict[str, VaultGraph] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    @property
    def generation(self) -> int:
        return self._generation

    def invalidate(self) -> None:
        """The store changed: every snapshot built before now is stale."""
        with self._locks_lock:
            self._generation += 1

    def get(self, vault: str) -> VaultGraph:
        """The vault's snapshot, built after the latest invalidate() (blocking)."""
        current = self._current.get(vault)
        if current is not None and current.generation == self._generation:
            return current
        with self._lock(vault):
            # Read the generation BEFORE reading DuckDB: a change that lands during the
            # build bumps it again, so this snapshot is rebuilt on next use.
            generation = self._generation
            current = self._current.get(vault)
            if current is None or current.generation != generation:
                current = self._build(vault, generation)
                self._current[vault] = current
            return current

    def refresh(self) -> list[VaultGraph]:
        """Rebuild now every stale snapshot that was ever built (blocking)."""
        return [self.get(vault) for vault in list(self._current)]

    def held(self) -> Iterable[VaultGraph]:
        return list(self._current.values())

    def _lock(self, vault: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(vault, threading.Lock())
