"""Torch's intra-op threads per encode, so that indexing yields a core to people searching.

Measured on 2 cores: a query encoded while an indexing batch runs took 3-4x
its idle time (search p95 during a full re-index: 3.9x idle), because both
calls ran an OpenMP team as wide as the machine, four spinning threads on
two cores. Torch sets the team size per calling thread (`torch.set_num_threads`
in one thread leaves threads that already ran an op alone), so each encode
picks its own width:

- a batch (indexing) uses every core, except while people search (a search in
  the last `INTERACTIVE_SECONDS`): then it leaves one core free;
- a query uses every core, except while a batch runs: then one, so the two
  never fight over the same cores.

Indexing alone and searching alone run at full speed; together, each has
its own core.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

INTERACTIVE_SECONDS = 2.0


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS has no affinity API
        return max(1, os.cpu_count() or 1)


class IntraOpThreads:
    def __init__(self, cores: int | None = None) -> None:
        self.cores = cores or available_cores()
        self._lock = threading.Lock()
        self._batches = 0  # batch encodes running now
        self._last_search = -INTERACTIVE_SECONDS - 1.0
        self._local = threading.local()

    def mark_interactive(self) -> None:
        """Someone is searching: batches leave a core free for the next few seconds."""
        self._last_search = time.monotonic()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Around each indexing batch; picks the width again for every batch."""
        searching = time.monotonic() - self._last_search < INTERACTIVE_SECONDS
        self._apply(max(1, self.cores - 1) if searching else self.cores)
        with self._lock:
            self._batches += 1
        try:
            yield
        finally:
            with self._lock:
                self._batches -= 1

    def query(self) -> None:
        """Before encoding a query."""
        self.mark_interactive()
        self._apply(1 if self._batches else self.cores)

    def _apply(self, threads: int) -> None:
        if getattr(self._local, "threads", None) == threads:
            return
        torch: Any = sys.modules.get("torch")
        setter = getattr(torch, "set_num_threads", None)
        if setter is None:  # no model loaded (or torch still importing): nothing to size
            return
        setter(threads)  # this thread's team only (see the module doc)
        self._local.threads = threads

    def describe(self) -> dict[str, Any]:
        return {
            "cores": self.cores,
            "batches_running": self._batches,
            "searching": time.monotonic() - self._last_search < INTERACTIVE_SECONDS,
        }
