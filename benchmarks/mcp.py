"""`python -m benchmarks.mcp`: `jarvisctl mcp`'s cold handshake and its per-call latency.

Against a real daemon on a copy of the example vault (indexed first, model
loaded), it measures, as JSON:

- `handshake_seconds`: a fresh `jarvisctl mcp` process, from spawn to the
  `initialize` reply on its stdout (target: under 1 s), beside references
  taken in the same run: a bare `python -c pass`, the time a fresh interpreter
  spends importing the SDK (`import_mcp_sdk`, timed inside it: the cost that
  dominates) and the whole `jarvisctl mcp` server module, and `jarvisctl status`;
- `call_seconds`: one long-running `jarvisctl mcp`, `tools/call` of search
  (hybrid; first sight of each query, then the same queries again, which the
  daemon answers from its result cache) and read_note, each beside the same
  request made straight to the socket, so `overhead_seconds` is what MCP adds.

Raw JSON-RPC lines on the pipes, no SDK client in the measured path: the
figures are the server's, not a client library's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import IO, Any

from benchmarks.common import REPO, percentiles, running_daemon, work_directory
from jarvisd.cli.client import ControlClient

QUERIES = [
    "espresso grind size",
    "keeping a sourdough starter alive",
    "how long to proof focaccia",
    "coffee beans roasters",
    "systems thinking leverage points",
    "design of everyday things affordances",
    "workshop shelf wood",
    "allotment committee meeting",
    "reading list books",
    "milk steaming technique",
    "hydration of the dough",
    "dial in a new bag",
    "feedback loops and stocks",
    "daily note plans",
    "jarvisd setup on a laptop",
    "channeling puck preparation",
    "coffee club tasting",
    "bread baking temperature",
    "tools for the workshop",
    "what to read next",
]
NOTES = [
    "Coffee/Espresso.md",
    "Baking/Sourdough.md",
    "Home.md",
    "Reading/Thinking in Systems.md",
    "Projects/Workshop shelf.md",
]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "benchmarks.mcp", "version": "1"},
    },
}


def jarvisctl() -> str:
    return shutil.which("jarvisctl") or f"{sys.prefix}/bin/jarvisctl"


def spawn(socket: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [jarvisctl(), "--socket", str(socket), "mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def send(pipe: IO[bytes], message: dict[str, Any]) -> None:
    pipe.write((json.dumps(message) + "\n").encode())
    pipe.flush()


def reply(pipe: IO[bytes], identifier: int) -> dict[str, Any]:
    while True:
        line = pipe.readline()
        if not line:
            raise RuntimeError("jarvisctl mcp closed its stdout")
        message: dict[str, Any] = json.loads(line)
        if message.get("id") == identifier:
            if "error" in message:
                raise RuntimeError(message["error"])
            return message


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) the process has used so far; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def handshake(socket: Path) -> tuple[float, float | None]:
    """Wall seconds from spawn to the initialize reply, and the CPU seconds spent by then.

    Start-up is CPU-bound (imports, with the files in the page cache), so the CPU
    time is what the wall time would be on an idle machine: the figure to read when
    other work shares the cores.
    """
    started = time.perf_counter()
    process = spawn(socket)
    assert process.stdin is not None and process.stdout is not None
    send(process.stdin, INITIALIZE)
    reply(process.stdout, 0)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(process.pid)
    process.stdin.close()
    process.wait(30)
    return elapsed, cpu


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


class Session:
    """One `jarvisctl mcp` after the handshake; `call` times one tools/call."""

    def __init__(self, socket: Path) -> None:
        self.process = spawn(socket)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        send(self.stdin, INITIALIZE)
        reply(self.stdout, 0)
        send(self.stdin, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.next_id = 1

    def call(self, name: str, arguments: dict[str, Any]) -> float:
        identifier, self.next_id = self.next_id, self.next_id + 1
        request = {"jsonrpc": "2.0", "id": identifier, "method": "tools/call"}
        request["params"] = {"name": name, "arguments": arguments}
        started = time.perf_counter()
        send(self.stdin, request)
        result = reply(self.stdout, identifier)["result"]
        elapsed = time.perf_counter() - started
        if result.get("isError"):
            raise RuntimeError(result["content"][0]["text"])
        return elapsed

    def close(self) -> None:
        self.stdin.close()
        self.process.wait(30)


def timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def summary(mcp: list[float], socket: list[float]) -> dict[str, Any]:
    return {
        "mcp": percentiles(mcp),
        "socket": percentiles(socket),
        "overhead_seconds_median": median(mcp) - median(socket),
    }


def measure_calls(client: ControlClient, socket: Path, rounds: int) -> dict[str, Any]:
    session = Session(socket)
    try:
        first_mcp, first_socket, cached_mcp, cached_socket = [], [], [], []
        for query in QUERIES:
            # Uncached both ways: the socket request takes a variant the MCP call never sent.
            first_mcp.append(session.call("search", {"query": query}))
            first_socket.append(timed(lambda q=query: client.get("/v1/search", q=f"{q} now")))
        for _ in range(rounds):
            for query in QUERIES:
                cached_mcp.append(session.call("search", {"query": query}))
                cached_socket.append(timed(lambda q=query: client.get("/v1/search", q=q)))
        read_mcp, read_socket = [], []
        for _ in range(rounds):
            for note in NOTES:
                read_mcp.append(session.call("read_note", {"note": note}))
                read_socket.append(
                    timed(lambda n=note: client.request("GET", "/v1/notes", query={"path": n}))
                )
    finally:
        session.close()
    return {
        "search_hybrid_first": summary(first_mcp, first_socket),
        "search_hybrid_cached": summary(cached_mcp, cached_socket),
        "read_note": summary(read_mcp, read_socket),
    }


def import_seconds(module: str) -> float:
    """How long a fresh interpreter takes to import `module` (timed inside it, no exit)."""
    probe = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return float(done.stdout)


def measure_handshakes(socket: Path, runs: int) -> dict[str, Any]:
    bare, sdk, server, status, cold, cpu = [], [], [], [], [], []
    for _ in range(runs):  # interleaved, so load changes hit all of them alike
        bare.append(wall([sys.executable, "-c", "pass"]))
        sdk.append(import_seconds("mcp.server.lowlevel, mcp.server.stdio"))
        server.append(import_seconds("jarvisd.cli.mcp.server"))
        status.append(wall([jarvisctl(), "--socket", str(socket), "status", "--json"]))
        elapsed, used = handshake(socket)
        cold.append(elapsed)
        if used is not None:
            cpu.append(used)
    return {
        "jarvisctl_mcp_initialize": percentiles(cold),
        "jarvisctl_mcp_initialize_cpu": percentiles(cpu),
        "python_startup": percentiles(bare),
        "import_mcp_sdk": percentiles(sdk),
        "import_jarvisctl_mcp_server": percentiles(server),
        "jarvisctl_status": percentiles(status),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="cold handshakes (15)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of cached calls (3)")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    with work_directory(None, "jbm-") as root:
        vault = root / "vault"
        shutil.copytree(REPO / "jarvisd" / "example_vault", vault)
        config = {
            "vaults": [{"name": "example", "path": str(vault)}],
            "embedding": {"preload": True},
            "indexing": {"on_start": True, "watch": False},
            "schedule": {"index": None, "maintenance": None},
        }
        with running_daemon(config, root=root) as (client, _process, _root):
            while (client.get("/v1/status").get("last_index_run") or {}).get("state") != "done":
                time.sleep(0.2)
            client.get("/v1/search", q="warm the model up")
            handshakes = measure_handshakes(client.socket_path, args.runs)
            calls = measure_calls(client, client.socket_path, args.rounds)
    print(
        json.dumps(
            {
                "benchmark": "jarvisctl mcp",
                "target_initialize_seconds": 1.0,
                "load_average_at_start": load_at_start,
                "load_average_at_end": os.getloadavg(),
                "cpus": os.cpu_count(),
                "handshake_seconds": handshakes,
                "call_seconds": calls,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
