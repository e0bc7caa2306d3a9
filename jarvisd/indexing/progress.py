"""An indexing run's time left: chunks still to encode over a smoothed encode rate.

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
from collections.abc import Sequence
from dataclasses import dataclass

from jarvisd.indexing.vault import FileInfo

# The newest window's weight in the smoothed rate: windows of 48 files vary by
# 2-3x in chunks per second; 0.3 follows a real change within three windows.
SMOOTHING = 0.3


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
