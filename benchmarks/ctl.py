"""`python -m benchmarks.ctl`: wall time of `jarvisctl status` against a running daemon.

Target: well under 0.5 s. Prints JSON (medians and percentiles over --runs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time

from benchmarks.common import percentiles, running_daemon


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    jarvisctl = shutil.which("jarvisctl") or f"{sys.prefix}/bin/jarvisctl"
    with running_daemon({}) as (client, _process, _root):
        socket = str(client.socket_path)
        wall: list[float] = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(
                [jarvisctl, "--socket", socket, "status", "--json"], check=True, capture_output=True
            )
            wall.append(time.perf_counter() - started)
        in_process: list[float] = []
        for _ in range(args.runs):
            started = time.perf_counter()
            client.get("/v1/status")
            in_process.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "benchmark": "jarvisctl status",
                "target_seconds": 0.5,
                "process_wall_seconds": percentiles(wall),
                "request_only_seconds": percentiles(in_process),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
