"""`python -m benchmarks.reliability [--quick]`: crashes, bad configs, bad requests, floods, load.

Every figure is measured on the real daemon (a subprocess, real signals, the
real socket) and printed as one JSON object:

- crash: runs where the daemon is killed with SIGKILL at a random moment (during
  an edit's index run, a full re-index, maintenance, a reload, an HNSW build, a
  Neo4j sync against boltkit's stub, where the restart must send the rest of it),
  restarted, and left to catch up; after each its database must equal a clean
  index of the same files, built in this process by the same Indexer on a
  database that is never killed: the same notes, content hashes, chunks (by the
  hash of each chunk's text, in order), vectors, links with their resolution,
  and tags, with no duplicates, and the HNSW vector table every life keeps
  holding each chunk it covers with that chunk's vector. An HNSW run is killed
  inside the build (after the daemon's `store.vector_index_building`). The
  vault is obsidian-help replicated into folders (`--notes`), so copies reuse
  vectors and the runs cost parsing and writing, not encoding.
- config: broken files of many kinds sent by SIGHUP; each must be refused naming
  the key or the file, the old config must keep serving, and a valid file
  applies after them.
- requests: random malformed requests over the socket (bad JSON, huge and
  negative numbers, path traversal, unicode edge cases); the figure is the count
  of 5xx answers and crashes (target 0 and 0), and RSS after against before.
- connections: stalled half-requests and a burst of connections past the limit.
- load: concurrent clients mixing search modes, graph, note reads and status
  while notes are edited under the watcher; errors, p99 per minute, RSS growth
  from the second minute on, open descriptors and threads.
- security: the socket refused to another uid, its modes, the systemd units'
  exposure score (when systemd-analyze is installed).
- chaos: the watcher under a burst of edits, a folder deleted, restored and
  renamed, bad files and the vault folder gone and back; seconds until caught
  up per scenario, and the index against a clean one at the end.
- storage: a full disk while indexing (a tmpfs in a private mount namespace):
  indexed notes lost (target 0) and the run after space returns.
- upgrades: a database indexed by the previous release's code opens and serves;
  one stamped with a newer schema is refused (exit code, message) untouched.

--quick runs a few of each (CI, under 3 minutes: 128 s, 137 CPU-seconds, at
load 1-1.4 on 2 cores); the full run is sized for under 25 minutes on 2
cores (23.9 min at load 1-5: crash 9.4, the load soak 10.7, chaos 2.8, the
rest 1.0). Each section reports its `section_seconds`, its
`section_cpu_seconds` (this process and the daemons and stubs it waited for,
which does not grow with what else the machine runs) and the load average at
its end. Each daemon life loads the embedding model only when it first
encodes (about 6 CPU-seconds each), which is most of the quick run.
"""

from __future__ import annotations

from benchmarks.reliability.harness import (
    EXAMPLE,
    Daemon,
    Reference,
    base_config,
    compare,
    fingerprint,
    replicate,
)
from benchmarks.reliability.vault import rewrite_while_read

__all__ = [
    "EXAMPLE",
    "Daemon",
    "Reference",
    "base_config",
    "compare",
    "fingerprint",
    "replicate",
    "rewrite_while_read",
]
