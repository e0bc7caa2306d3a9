"""The config, requests and connections sections: broken configs by SIGHUP, malformed
requests, stalled and bursting connections."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psutil
import yaml

from benchmarks.reliability.harness import (
    EXAMPLE,
    Daemon,
    _events,
    base_config,
)

# --------------------------------------------------------------- config faults


def broken_configs(
    valid: dict[str, Any], count: int, rng: random.Random
) -> Iterator[tuple[str, Any]]:
    """(kind, text or action) pairs: each must be refused by a reload."""
    dumped = yaml.safe_dump(valid, sort_keys=False)
    syntax = [
        "vaults: [unclosed\n",
        "search: {default_limit: 5\n",
        "\tsearch:\n  default_limit: 5\n",
        "search:\n  default_limit: 5\n default_limit: 6\n",
        "key: 'unterminated\n",
        "- a list\n- at the top\n",
        "just a string\n",
        "a: &x [*x]\n",
        "a: &a [*a, *a, *a]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\n",
        "\x00\x01\x02",
        "search: !!python/object/apply:os.system ['true']\n",
    ]
    wrong_types = [
        ("search", {"default_limit": "many"}),
        ("search", {"max_limit": [1, 2]}),
        ("storage", {"threads": "two"}),
        ("indexing", {"debounce": "soon"}),
        ("memory", {"sample_interval": -5}),
        ("alerts", {"rules": [{"name": "x", "metric": "nope", "threshold": 1}]}),
        ("alerts", {"rules": [{"name": "x", "metric": "rss_bytes", "threshold": "lots"}]}),
        ("control", {"max_request_bytes": "huge"}),
        ("embedding", {"quantize": "int4"}),
        ("graph", {"backend": "sqlite"}),
        ("logging", {"level": "loud"}),
        ("schedule", {"maintenance": "every tuesday"}),
    ]
    unknown = ["serch", "vault", "indexing.debounse", "search.hybird", "metrics.port"]
    ranges = [
        ("search", {"default_limit": 0}),
        ("search", {"max_limit": 10**9}),
        ("indexing", {"chunk_tokens": 0}),
        ("indexing", {"chunk_overlap": 10**6}),
        ("storage", {"threads": -1}),
        ("control", {"rate_limit": -1}),
        ("graph", {"max_depth": 99}),
    ]
    kinds: list[tuple[str, Any]] = [("syntax", text) for text in syntax]
    for section, values in wrong_types:
        kinds.append(("wrong_type", {**valid, section: {**valid.get(section, {}), **values}}))
    for key in unknown:
        section, _, leaf = key.partition(".")
        if leaf:
            kinds.append(("unknown_key", {**valid, section: {**valid.get(section, {}), leaf: 1}}))
        else:
            kinds.append(("unknown_key", {**valid, section: 1}))
    for section, values in ranges:
        kinds.append(("out_of_range", {**valid, section: {**valid.get(section, {}), **values}}))
    kinds += [("unreadable", "chmod"), ("deleted", "delete"), ("directory", "directory")]
    kinds += [("truncated", dumped[: len(dumped) // 2] + "\n  - [")]
    for index in range(count):
        yield kinds[index % len(kinds)] if index < len(kinds) else rng.choice(kinds)


def config_faults(work: Path, count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    vault = work / "vault"
    shutil.copytree(EXAMPLE, vault)
    valid = base_config(work, vault, indexing={"on_start": False})
    daemon = Daemon(work, valid)
    daemon.start()
    refused = 0
    wrong: list[dict[str, Any]] = []
    kinds: dict[str, int] = {}
    reasons: dict[str, str] = {}
    try:
        for kind, content in broken_configs(valid, count, rng):
            kinds[kind] = kinds.get(kind, 0) + 1
            before = len(_events(daemon, "config.reload_failed"))
            outcomes = before + len(_events(daemon, "config.reloaded"))
            path = daemon.config_path
            if content == "chmod":
                daemon.write(valid)
                path.chmod(0)
            elif content == "delete":
                path.unlink(missing_ok=True)
            elif content == "directory":
                path.unlink(missing_ok=True)
                path.mkdir()
            elif isinstance(content, str):
                path.write_text(content, encoding="utf-8", errors="surrogateescape")
            else:
                daemon.write(content)
            os.kill(daemon.pid, signal.SIGHUP)
            # Until this reload's outcome is logged, refused or applied: a file root can
            # read despite mode 000 applies, and waiting for a refusal cost 30 s each.
            deadline = time.monotonic() + 30
            while _reload_outcomes(daemon) <= outcomes:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            failures = _events(daemon, "config.reload_failed")
            status = daemon.client.get("/v1/status")
            serving = status.get("state") == "running"
            reload_failed = (status.get("last_reload") or {}).get("ok") is False
            limit = daemon.client.get("/v1/config")["config"]["search"]["default_limit"]
            ok = len(failures) > before and serving and reload_failed and limit == 10
            if ok:
                refused += 1
                reasons.setdefault(kind, str(failures[-1].get("reason", ""))[:300])
            else:
                wrong.append(
                    {
                        "kind": kind,
                        "serving": serving,
                        "logged": len(failures) > before,
                        "last_reload_ok_false": reload_failed,
                    }
                )
            if path.is_dir():
                path.rmdir()
            if path.exists():
                path.chmod(0o600)
        daemon.write(
            base_config(work, vault, indexing={"on_start": False}, search={"default_limit": 7})
        )
        applied = daemon.client.post("/v1/reload", {})
        took = daemon.client.get("/v1/config")["config"]["search"]["default_limit"] == 7
    finally:
        daemon.stop()
    return {
        "sent": count,
        "refused": refused,
        "kinds": kinds,
        "valid_file_applied_after": bool(applied.get("ok", True)) and took,
        "not_refused": wrong[:10],
        "a_reason_per_kind": reasons,
    }


def _reload_outcomes(daemon: Daemon) -> int:
    return len(_events(daemon, "config.reload_failed")) + len(_events(daemon, "config.reloaded"))


# ----------------------------------------------------------------- bad requests

ROUTES = [
    "/v1/search",
    "/v1/notes",
    "/v1/notes/list",
    "/v1/graph/links",
    "/v1/graph/backlinks",
    "/v1/graph/neighbours",
    "/v1/graph/path",
    "/v1/graph/unresolved",
    "/v1/graph/orphans",
    "/v1/metrics/requests",
    "/v1/status",
    "/v1/index",
]
KEYS = [
    "q",
    "mode",
    "limit",
    "offset",
    "threshold",
    "tag",
    "folder",
    "vault",
    "since",
    "before",
    "path",
    "title",
    "depth",
    "direction",
    "source",
    "target",
    "cursor",
    "window",
]
NASTY = [
    "",
    "-1",
    "0",
    "99999999999999999999",
    "1e309",
    "nan",
    "-inf",
    "../../etc/passwd",
    "/etc/passwd",
    "..\\..\\x",
    "\x00",
    "\ud800",
    "\u202e\u202dabc",
    "\U0001f600" * 300,
    "' OR 1=1 --",
    "MATCH (n) DETACH DELETE n",
    "%s%s%n",
    "a" * 5000,
    "2024-13-45",
    "99999999999d",
    "semantic",
    "hybrid",
    "keyword",
    "Espresso",
    "out",
    "both",
]


def raw_request(path: Path, data: bytes, timeout: float = 120) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        with suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        reply = b""
        while b"\r\n" not in reply and (chunk := sock.recv(65536)):
            reply += chunk
    return int(reply.split(b" ", 2)[1]) if reply else 0


def random_request(rng: random.Random) -> bytes:
    params = {rng.choice(KEYS): rng.choice(NASTY) for _ in range(rng.randrange(0, 6))}
    query = urlencode(params, quote_via=quote, errors="surrogatepass")
    route = (
        rng.choice(ROUTES)
        if rng.random() < 0.9
        else "/v1/" + quote(rng.choice(NASTY), errors="surrogatepass")
    )
    target = f"{route}?{query}" if query else route
    method = rng.choice(["GET"] * 6 + ["POST", "PUT", "DELETE"])
    body = b""
    if method != "GET" or rng.random() < 0.1:
        route = rng.choice(["/v1/ask", "/v1/reload", route])
        target = route
        body = rng.choice(
            [
                b"{",
                b"[]",
                b'{"question": null}',
                json.dumps({"question": rng.choice(NASTY)}).encode(),
                os.urandom(rng.randrange(1, 400)),
                b'{"question": "' + b"x" * 5000 + b'"}',
            ]
        )
    head = f"{method} {target} HTTP/1.1\r\nHost: j\r\nConnection: close\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    if rng.random() < 0.03:
        head += "Content-Length: 99999999999\r\n"
    return (head + "\r\n").encode("utf-8", "surrogatepass") + body


def bad_requests(work: Path, count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    vault = work / "vault"
    shutil.copytree(EXAMPLE, vault)
    daemon = Daemon(work, base_config(work, vault))
    daemon.start()
    daemon.settle()
    process = psutil.Process(daemon.pid)
    statuses: dict[int, int] = {}
    try:
        for _ in range(50):  # warm: every route once, the model loaded
            raw_request(daemon.socket, b"GET /v1/search?q=espresso HTTP/1.1\r\nHost: j\r\n\r\n")
        baseline = process.memory_info().rss
        started = time.perf_counter()
        for _ in range(count):
            status = raw_request(daemon.socket, random_request(rng))
            statuses[status] = statuses.get(status, 0) + 1
        seconds = time.perf_counter() - started
        rss_after = process.memory_info().rss
        alive = daemon.client.get("/v1/status").get("state") == "running"
        failed = len(_events(daemon, "request.failed"))
    finally:
        code = daemon.stop()
    return {
        "tried": count,
        "status_counts": {str(key): value for key, value in sorted(statuses.items())},
        "5xx": sum(value for key, value in statuses.items() if key >= 500),
        "no_reply": statuses.get(0, 0),
        "crashes": 0 if alive and code == 0 else 1,
        "request_failed_logged": failed,
        "rss_before_mb": round(baseline / 2**20, 1),
        "rss_after_mb": round(rss_after / 2**20, 1),
        "requests_per_second": round(count / seconds, 1),
    }


# ------------------------------------------------------------------ connections


def connections(work: Path, stalled: int, burst: int) -> dict[str, Any]:
    vault = work / "vault"
    shutil.copytree(EXAMPLE, vault)
    config = base_config(
        work, vault, indexing={"on_start": False}, control={"request_timeout": "2s"}
    )
    daemon = Daemon(work, config)
    daemon.start()
    process = psutil.Process(daemon.pid)
    try:
        fds_before = process.num_fds()
        held = []
        for _ in range(stalled):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(daemon.socket))
            sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: j\r\n")
            held.append(sock)
        time.sleep(0.5)  # let the daemon accept them
        fds_peak = process.num_fds()
        # The timeout is 2 s; on a loaded machine the loop gets to it later: wait for it.
        freed_at = time.monotonic()
        while process.num_fds() > fds_before + 2 and time.monotonic() - freed_at < 120:
            time.sleep(0.1)
        freed_seconds = time.monotonic() - freed_at + 0.5
        fds_after = process.num_fds()
        for sock in held:
            sock.close()
        refused = 0
        opened = []
        for _ in range(burst):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(str(daemon.socket))
                opened.append(sock)
            except BlockingIOError:
                refused += 1
                sock.close()
        answers: dict[int, int] = {}
        # Every request is sent before any reply is read: sent one by one after the
        # replies before it, the last ones met the 2 s request timeout (closed unanswered).
        for sock in opened:
            sock.setblocking(True)
            sock.settimeout(120)
            with suppress(OSError):
                sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: j\r\nConnection: close\r\n\r\n")
        for sock in opened:
            try:
                reply = sock.recv(64)
                status = int(reply.split(b" ", 2)[1]) if reply else 0
            except OSError:
                status = 0
            finally:
                sock.close()
            answers[status] = answers.get(status, 0) + 1
    finally:
        daemon.stop()
    return {
        "stalled": stalled,
        "fds_before": fds_before,
        "fds_with_stalled": fds_peak,
        "fds_after_timeout": fds_after,
        "seconds_until_freed": round(freed_seconds, 1),
        "burst": burst,
        "refused_at_connect": refused,
        "answers": {str(key): value for key, value in sorted(answers.items())},
    }
