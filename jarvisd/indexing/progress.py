"""An indexing run's report and its progress: one schema, and its time left.

`RunReport` is what a run did (and, while it runs, its live state); `Progress`
is one progress event, the one schema the indexer emits, the API streams and
`jarvisctl index --wait` draws. A run counts files as `done` of `total` (the
files it parses and writes). On the wire those two numbers keep the names
clients read: a progress line says `files_done` / `files_total`, a run report
`files_indexed` / `files_to_index`, and a search reply's `indexing` (the first
run still going) `done` / `total`. `Progress` alone maps between them.

The time left: chunks still to encode over a smoothed encode rate.

The model is the bottleneck of a run (the pipeline parses and writes the
windows beside it), so the time left is the chunks still to encode divided by
the rate they are being encoded at. Both are measured, not guessed from files:

- Chunks still to encode: those parsed and not yet encoded, plus the files not
  yet parsed times the chunks per byte seen so far. Notes differ tenfold in
  length, so counting files mispredicts: on the example vault a files-based
  ETA said 6 s with 49 s to go.
- The rate: chunks per second of wall time between one window's encode and
  the next, smoothed over windows (the newest weighs SMOOTHING), counted from
  the moment the model is loaded, so the seconds spent loading it (11 s on 2
  cores) neither read as "0.0 chunks/s" nor drag the rate down afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `jarvisctl` reads progress through this module: keep it light
    from jarvisd.indexing.vault import FileInfo

# The newest window's weight in the smoothed rate: windows of 48 files vary by
# 2-3x in chunks per second; 0.3 follows a real change within three windows.
SMOOTHING = 0.3
MAX_SKIPPED_LISTED = 50


@dataclass
class EncodeProgress:
    """What a run has left to encode and how fast it encodes; times from `time.monotonic()`."""

    bytes_total: int = 0  # the files this run parses
    bytes_parsed: int = 0
    chunks_parsed: int = 0  # parsed chunk texts that need the model (reused ones do not)
    chunks_encoded: int = 0
    rate: float | None = None  # smoothed chunks per second; None until a window is encoded
    since: float | None = None  # when the current stretch of encoding began

    def planned(self, files: Sequence[FileInfo]) -> None:
        self.bytes_total += sum(info.size for info in files)

    def parsed(self, files: Sequence[FileInfo], texts: int) -> None:
        self.bytes_parsed += sum(info.size for info in files)
        self.chunks_parsed += texts

    def start(self, now: float | None = None, *, restart: bool = False) -> None:
        """Encoding begins (or, `restart`, the model was just loaded): the clock runs."""
        if self.since is None or restart:
            self.since = time.monotonic() if now is None else now

    def encoded(self, chunks: int, now: float | None = None) -> None:
        """A window's `chunks` are encoded: fold its rate into the smoothed one."""
        self.chunks_encoded += chunks
        if self.since is None:
            return  # nothing was encoded yet (a window whose texts all had vectors)
        moment = time.monotonic() if now is None else now
        seconds, self.since = moment - self.since, moment
        if chunks <= 0 or seconds <= 0:
            return
        newest = chunks / seconds
        self.rate = (
            newest if self.rate is None else SMOOTHING * newest + (1 - SMOOTHING) * self.rate
        )

    def remaining(self) -> float | None:
        """Chunks still to encode (an estimate until every file is parsed); None: unknown."""
        pending = max(0, self.chunks_parsed - self.chunks_encoded)
        unparsed = max(0, self.bytes_total - self.bytes_parsed)
        if unparsed == 0:
            return float(pending)
        if self.bytes_parsed == 0:
            return None
        return pending + unparsed * self.chunks_parsed / self.bytes_parsed

    def eta(self, now: float | None = None) -> float | None:
        """Seconds until the last chunk is encoded, counting down between windows."""
        remaining = self.remaining()
        if remaining is None or self.rate is None:
            return None
        moment = time.monotonic() if now is None else now
        waited = moment - self.since if self.since is not None else 0.0
        return max(0.0, remaining / self.rate - waited)


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event of an indexing run (see the module's docstring for the wire names).

    Phases: scanning, loading model, encoding, finalizing. The rate and the ETA
    are None until known (see `EncodeProgress`).
    """

    run: int
    phase: str
    done: int  # files written
    total: int  # files the run parses and writes
    chunks_done: int = 0  # chunks written
    chunks_encoded: int = 0
    chunks_to_encode: int | None = None  # an estimate until every file is parsed
    files_per_second: float = 0.0
    chunks_per_second: float | None = None
    elapsed_seconds: float = 0.0
    eta_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The progress line of `POST /v1/index?wait=1`, `GET /v1/index` and `/v1/status`."""
        return {
            "type": "progress",
            "run": self.run,
            "phase": self.phase,
            "files_total": self.total,
            "files_done": self.done,
            "chunks_done": self.chunks_done,
            "chunks_encoded": self.chunks_encoded,
            "chunks_to_encode": self.chunks_to_encode,
            "files_per_second": self.files_per_second,
            "chunks_per_second": self.chunks_per_second,
            "elapsed_seconds": self.elapsed_seconds,
            "eta_seconds": self.eta_seconds,
        }

    def brief(self) -> dict[str, Any]:
        """A search reply's `indexing` while the first run goes on: notes done of total."""
        return {"done": self.done, "total": self.total, "phase": self.phase}

    @classmethod
    def from_dict(cls, event: Mapping[str, Any]) -> Progress:
        """A progress line as the client reads it; what a daemon left out reads as unknown."""
        return cls(
            run=int(event.get("run") or 0),
            phase=str(event.get("phase") or "indexing"),
            done=int(event.get("files_done") or 0),
            total=int(event.get("files_total") or 0),
            chunks_done=int(event.get("chunks_done") or 0),
            chunks_encoded=int(event.get("chunks_encoded") or 0),
            chunks_to_encode=_optional_int(event.get("chunks_to_encode")),
            files_per_second=float(event.get("files_per_second") or 0.0),
            chunks_per_second=_optional_float(event.get("chunks_per_second")),
            elapsed_seconds=float(event.get("elapsed_seconds") or 0.0),
            eta_seconds=_optional_float(event.get("eta_seconds")),
        )

    @classmethod
    def from_brief(cls, indexing: Mapping[str, Any]) -> Progress:
        """A search reply's `indexing` (see `brief`) as the client reads it."""
        return cls(
            run=0,
            phase=str(indexing.get("phase") or "indexing"),
            done=int(indexing.get("done") or 0),
            total=int(indexing.get("total") or 0),
        )

    @classmethod
    def from_run(cls, run: Mapping[str, Any]) -> Progress:
        """Where a finished run ended, from its report as the wire carries it."""
        return cls(
            run=int(run.get("id") or 0),
            phase=str(run.get("state") or ""),
            done=int(run.get("files_indexed") or 0),
            total=int(run.get("files_to_index") or 0),
            chunks_done=int(run.get("chunks") or 0),
            chunks_encoded=int(run.get("chunks_encoded") or 0),
            elapsed_seconds=float(run.get("duration_seconds") or 0.0),
        )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass
class RunReport:
    """What one indexing run did; also its live progress while it runs."""

    id: int
    trigger: str
    full: bool
    # "vaults": every file stat'ed; "paths": only those a watcher named.
    scope: str = "vaults"
    # Re-read and re-chunk every note (chunking settings changed), reusing stored vectors.
    reparse: bool = False
    state: str = "running"
    phase: str = "scanning"
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    files_seen: int = 0
    files_hashed: int = 0
    files_to_index: int = 0  # Progress.total
    files_indexed: int = 0  # Progress.done
    files_changed: int = 0
    files_unchanged: int = 0
    files_touched: int = 0
    files_renamed: int = 0
    files_deleted: int = 0
    files_skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    chunks: int = 0
    chunks_encoded: int = 0
    chunks_reused: int = 0
    duration_seconds: float = 0.0
    error: str | None = None
    changed: bool = False  # anything in the store changed (also renames and deletes)
    encoding: EncodeProgress = field(default_factory=EncodeProgress)

    def skip(self, path: str, reason: str, detail: str) -> None:
        self.files_skipped += 1
        self.skipped_reasons[reason] = self.skipped_reasons.get(reason, 0) + 1
        if len(self.skipped) < MAX_SKIPPED_LISTED:
            self.skipped.append({"path": path, "reason": reason, "detail": detail})

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["encoding"]  # the live ETA's state; progress() reports what it means
        return out

    def progress(self) -> Progress:
        """Where the run is now: the phase, files and chunks done, the encode rate, the ETA."""
        elapsed = max(1e-9, time.time() - self.started_at)
        encoding = self.encoding
        remaining = encoding.remaining()
        rate, eta = encoding.rate, encoding.eta()
        return Progress(
            run=self.id,
            phase=self.phase,
            done=self.files_indexed,
            total=self.files_to_index,
            chunks_done=self.chunks,
            chunks_encoded=encoding.chunks_encoded,
            chunks_to_encode=(
                None if remaining is None else round(encoding.chunks_encoded + remaining)
            ),
            files_per_second=round(self.files_indexed / elapsed, 3),
            chunks_per_second=None if rate is None else round(rate, 1),
            elapsed_seconds=round(elapsed, 3),
            eta_seconds=None if eta is None or self.phase == "finalizing" else round(eta, 1),
        )


# What an indexer's listeners receive: a run's progress while it runs, its report at the end.
IndexEvent = Progress | RunReport
