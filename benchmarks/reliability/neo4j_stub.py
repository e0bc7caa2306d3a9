"""The reliability benchmark's kill during a Neo4j sync, against boltkit's stub server.

The stub plays the whole sync the daemon owes (tests/boltstub.py scripts it
from a clean index's projection and what the server holds), takes one
transaction chosen at random and never answers it; the benchmark kills the
daemon there. The restarted daemon must then send exactly the rest: the
stub, scripted with what the cut-short sync left on the server, must be
played to its end. What the server holds is carried from run to run.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from jarvisd.graph.sync import Projection
from tests.boltstub import BoltStub, Stored, boltstub, played, sync_script, sync_transactions


def available() -> bool:
    return boltstub() is not None


def graph_section(stub: BoltStub) -> dict[str, Any]:
    # Neo4j 3.5 (Bolt 3, what the stub speaks) has no database names.
    return {"backend": "neo4j", "neo4j": {"uri": stub.uri, "database": "", "max_retry_time": "0s"}}


class StubServer:
    """One stub per daemon life; the server's contents as the lives leave them."""

    def __init__(self, work: Path, rng: random.Random) -> None:
        self.work = work
        self.rng = rng
        self.held: Stored = {}
        self.lives = 0
        self._stub: BoltStub | None = None
        self._sync: list[Any] = []
        self._stall: int | None = None

    def open(self, projections: list[Projection], stall: bool) -> BoltStub:
        """A stub for the sync the daemon owes now; with `stall`, cut at random."""
        self._sync = sync_transactions(projections, self.held)
        self._stall = self.rng.randrange(len(self._sync)) if stall else None
        self.lives += 1
        text = sync_script(self._sync, self._stall)
        self._stub = BoltStub(f"life-{self.lives}.script", {}, self.work, text, idle=1800)
        return self._stub

    def stalled(self, timeout: float) -> bool:
        """Wait until the stub took the transaction it will not answer."""
        assert self._stub is not None and self._stall is not None
        deadline = time.monotonic() + timeout
        while self._stub.log().count("C: PULL_ALL") <= self._stall:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> bool:
        """After the daemon is gone: True when the stub's script was played to its end."""
        assert self._stub is not None
        if self._stall is not None:
            self._stub.__exit__(None, None, None)
            self.held = played(self._sync, self.held, self._stall)
            return True
        complete = self._stub.finish() == 0
        self._stub.__exit__(None, None, None)
        if complete:
            self.held = played(self._sync, self.held, len(self._sync))
        return complete

    def log_tail(self) -> str:
        return self._stub.log()[-2000:] if self._stub is not None else ""
