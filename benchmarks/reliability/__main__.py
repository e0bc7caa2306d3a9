"""`python -m benchmarks.reliability`: run the sections, print one JSON object."""

from __future__ import annotations

import argparse
import json
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


@contextmanager
def scratch(name: str, keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"jr-{name}-", dir="/tmp"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few of each, for CI")
    parser.add_argument("--only", nargs="*", help="sections to run (default: all)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    args = parser.parse_args()
    quick = args.quick
    # Quick runs replicate the 15-note example vault: one copy to encode, not 173 notes.
    source = EXAMPLE if quick else None
    sizes: dict[str, dict[str, Any]] = {
        "crash": {"notes": 150 if quick else 2000, "runs": 3 if quick else 25, "source": source},
        "config": {"count": 40 if quick else 100},
        "requests": {"count": 300 if quick else 3000},
        "connections": {"stalled": 50 if quick else 200, "burst": 300 if quick else 1000},
        "load": {"clients": 8 if quick else 32, "minutes": 0.5 if quick else 10, "source": source},
        "chaos": {
            "notes": 45 if quick else 300,
            "edits": 200 if quick else 1000,
            "folder": 40 if quick else 200,
        },
        "storage": {"notes": 30 if quick else 150},
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
        section_started = time.perf_counter()
        with scratch(name, args.keep) as work:
            try:
                report[name] = sections[name](work)
            except Exception as error:  # a section that breaks is a finding, not the end
                report[name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
        report[name]["section_seconds"] = round(time.perf_counter() - section_started, 1)
        print(json.dumps({name: report[name]}), file=sys.stderr, flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
