"""What a graph backend hands back, and the errors it raises: the same for every backend.

Results are small frozen dataclasses with `as_dict()` for JSON, so the API
and the contract tests see one shape whichever backend answered. Notes are
named by their vault-relative path, never by a database id: ids are DuckDB's
business and mean nothing in Neo4j.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from jarvisd.errors import DomainError

Direction = Literal["out", "in", "both"]
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)


class GraphError(DomainError):
    """Base of every graph error; `code` says what went wrong (api/errors.py maps it to a
    status), `details` what the reply carries beside the message."""

    code = "graph_error"


class NoteNotFound(GraphError):
    code = "not_found"


class InvalidGraphQuery(GraphError):
    """A depth out of range, an unknown direction: the caller's request, not the graph."""

    code = "bad_request"


class GraphUnavailable(GraphError):
    """The graph server cannot be reached (down, refused, timed out)."""

    code = "graph_unavailable"


class GraphBackendError(GraphError):
    """The graph server answered, but with a failure."""

    code = "graph_backend_error"


# How the service chose the note a request named, when it was a choice: the title
# that matched, or the vaults it is in (set by GraphService, never by a backend).
Match = dict[str, Any] | None


def _with_match(out: dict[str, Any], match: Match) -> dict[str, Any]:
    if match is not None:
        out["match"] = match
    return out


def check_direction(direction: str) -> Direction:
    for known in DIRECTIONS:
        if direction == known:
            return known
    raise InvalidGraphQuery(f"direction must be one of out, in, both; got {direction!r}")


def check_depth(depth: int, max_depth: int) -> int:
    if not 1 <= depth <= max_depth:
        raise InvalidGraphQuery(
            f"depth must be between 1 and {max_depth} (graph.max_depth), got {depth}"
        )
    return depth


@dataclass(frozen=True, slots=True)
class NoteRef:
    path: str
    title: str


@dataclass(frozen=True, slots=True)
class GraphLink:
    """One note link as written in `source`; `target_path` is None while it is unresolved."""

    source: str
    target: str  # what the link names, as written (`Some Note`, `folder/Note`)
    target_path: str | None
    target_title: str | None
    kind: str
    line: int
    heading: str | None = None
    alias: str | None = None

    @property
    def resolved(self) -> bool:
        return self.target_path is not None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["resolved"] = self.resolved
        return out


@dataclass(frozen=True, slots=True)
class LinkList:
    """A note's outgoing links (in the order written) or its backlinks (by linking note)."""

    vault: str
    note: NoteRef
    links: tuple[GraphLink, ...]
    match: Match = None

    def as_dict(self) -> dict[str, Any]:
        return _with_match(
            {
                "vault": self.vault,
                "note": asdict(self.note),
                "count": len(self.links),
                "links": [link.as_dict() for link in self.links],
            },
            self.match,
        )


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A note `distance` steps away; `via` is the note one step nearer on a shortest walk."""

    path: str
    title: str
    distance: int
    via: str | None


@dataclass(frozen=True, slots=True)
class Neighbourhood:
    vault: str
    note: NoteRef
    depth: int
    direction: Direction
    # Every note within `depth`, the start excluded, nearest first, then by path.
    neighbours: tuple[Neighbour, ...]
    total: int  # how many there are, when `neighbours` was cut at the limit
    limit: int
    match: Match = None

    def as_dict(self) -> dict[str, Any]:
        return _with_match(
            {
                "vault": self.vault,
                "note": asdict(self.note),
                "depth": self.depth,
                "direction": self.direction,
                "total": self.total,
                "truncated": self.total > len(self.neighbours),
                "neighbours": [asdict(item) for item in self.neighbours],
            },
            self.match,
        )


@dataclass(frozen=True, slots=True)
class NotePath:
    """The notes of one shortest walk from `source` to `target`, both included; empty if none."""

    vault: str
    source: NoteRef
    target: NoteRef
    direction: Direction
    notes: tuple[NoteRef, ...]
    match: Match = None

    @property
    def found(self) -> bool:
        return bool(self.notes)

    def as_dict(self) -> dict[str, Any]:
        return _with_match(
            {
                "vault": self.vault,
                "from": asdict(self.source),
                "to": asdict(self.target),
                "direction": self.direction,
                "found": self.found,
                "length": max(0, len(self.notes) - 1) if self.notes else None,
                "notes": [asdict(note) for note in self.notes],
            },
            self.match,
        )


@dataclass(frozen=True, slots=True)
class UnresolvedTarget:
    """A link target that names no note, and the notes whose links name it."""

    target: str
    count: int
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnresolvedReport:
    vault: str
    targets: tuple[UnresolvedTarget, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "vault": self.vault,
            "count": len(self.targets),
            "links": sum(item.count for item in self.targets),
            "targets": [asdict(item) for item in self.targets],
        }


@dataclass(frozen=True, slots=True)
class Orphans:
    """Notes with no resolved note link in or out (links to themselves do not count)."""

    vault: str
    notes: tuple[NoteRef, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "vault": self.vault,
            "count": len(self.notes),
            "notes": [asdict(note) for note in self.notes],
        }


@dataclass(frozen=True, slots=True)
class PerVault:
    """A report for each vault, when a request named none and several are configured."""

    reports: tuple[UnresolvedReport, ...] | tuple[Orphans, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"vaults": [report.as_dict() for report in self.reports]}


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one projection sync wrote (Neo4j); the DuckDB backend has nothing to sync."""

    backend: str
    notes: int = 0
    links: int = 0
    deleted: int = 0
    seconds: float = 0.0
    vaults: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
