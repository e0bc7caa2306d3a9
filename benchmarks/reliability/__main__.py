"""`python -m benchmarks.reliability`: run the sections, print one JSON object."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.reliability.crash import crash_runs
from benchmarks.reliability.faults import bad_requests, config_faults, connections
from benchmarks.reliability.harness import (
    EXAMPLE,
)
from benchmarks.reliability.service import load, security
from benchmarks.reliability.vault import chaos, storage, upgrades
from jarvisd import logs


@contextmanager
def scratch(name: str, keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"jr-{name}-", dir="/tmp"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def cpu_seconds() -> float:
    """CPU used by this process and the children it has waited for (the daemons, the
    stubs): unlike seconds, it does not grow with what else the machine runs."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few of each, for CI")
    parser.add_argument("--only", nargs="*", help="sections to run (default: all)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    args = parser.parse_args()
    # stdout is the report: the in-process reference index logs to stderr, as the daemons'
    # logs go to their files (its info lines had made stdout unreadable as JSON).
    logs.configure("warning", "json")
    quick = args.quick
    # Quick runs replicate the 15-note example vault: one copy to encode, not 173 notes.
    source = EXAMPLE if quick else None
    # Quick sizes are cut to what shows each section working (CI, under 3 minutes); each
    # daemon life that encodes loads the model, which dominates them on 2 cores.
    sizes: dict[str, dict[str, Any]] = {
        "crash": {"notes": 45 if quick else 2000, "runs": 2 if quick else 25, "source": source},
        "config": {"count": 40 if quick else 100},
        "requests": {"count": 300 if quick else 3000},
        "connections": {"stalled": 50 if quick else 200, "burst": 300 if quick else 1000},
        "load": {
            "clients": 8 if quick else 32,
            "minutes": 0.25 if quick else 10,
            "notes": 60 if quick else 300,
            "source": source,
        },
        "chaos": {
            "notes": 30 if quick else 300,
            "edits": 100 if quick else 1000,
            "folder": 20 if quick else 200,
        },
        "storage": {"notes": 15 if quick else 150},
    }
    sections = {
        "crash": lambda w: crash_runs(w, seed=args.seed, **sizes["crash"]),
        "config": lambda w: config_faults(w, seed=args.seed, **sizes["config"]),
        "requests": lambda w: bad_requests(w, seed=args.seed, **sizes["requests"]),
        "connections": lambda w: connections(w, **sizes["connections"]),
        "load": lambda w: load(w, seed=args.seed, **sizes["load"]),
        "security": security,
        "chaos": lambda w: chaos(w, seed=args.seed, **sizes["chaos"]),
        "storage": lambda w: storage(w, **sizes["storage"]),
        "upgrades": upgrades,
    }
    wanted = args.only or list(sections)
    report: dict[str, Any] = {"quick": quick, "seed": args.seed}
    started = time.perf_counter()
    for name in wanted:
        section_started, cpu_before = time.perf_counter(), cpu_seconds()
        with scratch(name, args.keep) as work:
            try:
                report[name] = sections[name](work)
            except Exception as error:  # a section that breaks is a finding, not the end
                report[name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
        report[name]["section_seconds"] = round(time.perf_counter() - section_started, 1)
        report[name]["section_cpu_seconds"] = round(cpu_seconds() - cpu_before, 1)
        report[name]["load_average"] = round(os.getloadavg()[0], 1)
        print(json.dumps({name: report[name]}), file=sys.stderr, flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
