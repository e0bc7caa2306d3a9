"""What the daemon and its knowledge component report: frozen values, JSON by `as_dict()`.

As search replies (`search/replies.py`) and graph results are: the owner
builds the value (`Daemon.status`, `Daemon.reload`, `Knowledge.status`,
`Knowledge.run_maintenance`), a route in `api/` turns it into JSON with
`as_dict()`, and the wire keeps the keys, in the order, that clients read
(`jarvisctl status`, `jarvisctl top`, the MCP bridge, scripts).

The graph's and ask's parts of a status stay their owners' dicts: the graph's
is backend-specific (the DuckDB backend lists its snapshots, the Neo4j
projection adds its last sync) and nothing reads either field by field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jarvisd.config import ConfigDiff

if TYPE_CHECKING:
    from jarvisd.indexing.progress import Progress, RunReport
    from jarvisd.jobs import JobReport
    from jarvisd.lifecycle import State
    from jarvisd.observe.observer import ObserverStatus
    from jarvisd.store import Recovery


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """One reload: applied (`diff` says what changed) or refused (`error`: nothing changed)."""

    source: str  # "SIGHUP" or "request"
    at: float  # time.time()
    diff: ConfigDiff = field(default_factory=ConfigDiff)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"ok": False, "source": self.source, "error": self.error, "at": self.at}
        changes = {key: list(keys) for key, keys in self.diff.as_dict().items()}
        return {"ok": True, "source": self.source, "at": self.at, **changes}


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """The database's health: why it is unhealthy, whether it is rebuilt, its last recovery."""

    unhealthy_reason: str | None
    rebuilding: bool
    recovery: Recovery | None

    @property
    def healthy(self) -> bool:
        return self.unhealthy_reason is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "unhealthy_reason": self.unhealthy_reason,
            "rebuilding": self.rebuilding,
            "recovery": self.recovery.as_dict() if self.recovery is not None else None,
        }


@dataclass(frozen=True, slots=True)
class EmbeddingStatus:
    state: str  # "loaded", "loading", "not loaded (...)", "failed: ..."
    loaded: bool
    model: str

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "loaded": self.loaded, "model": self.model}


@dataclass(frozen=True, slots=True)
class KnowledgeStatus:
    """Knowledge's part of `/v1/status`: the store, the index and its runs, the model,
    the watcher, and the graph's and ask's own reports."""

    store: StoreStatus
    index: Mapping[str, int] | None  # the store's counts; None before the indexer starts
    indexing: Progress | None  # the run going on now
    last_index_run: RunReport | None
    embedding: EmbeddingStatus
    watching: bool
    graph: dict[str, Any]
    ask: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        last = self.last_index_run
        return {
            "store": self.store.as_dict(),
            "index": dict(self.index) if self.index is not None else None,
            "indexing": self.indexing.as_dict() if self.indexing is not None else None,
            "last_index_run": last.as_dict() if last is not None else None,
            "embedding": self.embedding.as_dict(),
            "watching": self.watching,
            "graph": self.graph,
            "ask": self.ask,
        }


@dataclass(frozen=True, slots=True)
class MaintenanceStep:
    step: str  # "analyze", "vector_index", "checkpoint"
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "seconds": self.seconds}


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """One DuckDB maintenance: each step and how long it took, and the whole."""

    steps: tuple[MaintenanceStep, ...]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"steps": [step.as_dict() for step in self.steps], "seconds": self.seconds}


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """`/v1/status`: the process's own fields, then the observer's and knowledge's parts
    (their keys at the top level of the JSON), the jobs and the last reload."""

    state: State
    pid: int
    version: str
    uptime_seconds: float
    started_at: float
    config_path: Path | None
    socket: Path
    database: Path
    observer: ObserverStatus
    capabilities: tuple[str, ...]
    threads: Mapping[str, int]  # each pool's size
    knowledge: KnowledgeStatus
    jobs: tuple[JobReport, ...]
    last_reload: ReloadOutcome | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "pid": self.pid,
            "version": self.version,
            "uptime_seconds": self.uptime_seconds,
            "started_at": self.started_at,
            "config_path": str(self.config_path) if self.config_path else None,
            "socket": str(self.socket),
            "database": str(self.database),
            **self.observer.as_dict(),
            "capabilities": list(self.capabilities),
            "threads": dict(self.threads),
            **self.knowledge.as_dict(),
            "jobs": [job.as_dict() for job in self.jobs],
            "last_reload": self.last_reload.as_dict() if self.last_reload is not None else None,
        }
