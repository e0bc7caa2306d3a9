"""Secrets never leave the daemon: the Neo4j password is in no log line, reply or metric.

The daemon runs with the Neo4j backend pointed at a closed port (so graph
requests fail and their errors are exercised), debug logging, and the metrics
port on; every surface a user or a scraper sees is searched for the password.
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from jarvisd.cli.client import DaemonError
from tests.conftest import DaemonProcess, base_config, free_port

pytestmark = pytest.mark.serial

SECRET = "hunter2-s3cret-7Qx"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_neo4j_password_is_in_no_log_reply_or_metric(
    start_daemon: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    port = free_port()
    neo4j = {
        "uri": f"bolt://127.0.0.1:{closed_port()}",
        "password": SECRET,
        "database": "",
        "max_retry_time": "0s",
        "connection_timeout": "1s",
    }
    config = base_config(
        short_tmp,
        graph={"backend": "neo4j", "neo4j": neo4j},
        metrics={"listen": f"127.0.0.1:{port}"},
        logging={"level": "debug", "format": "json"},
    )
    daemon = start_daemon(config)
    seen: list[str] = []
    for route, query in (
        ("/v1/graph/links", {"path": "a.md"}),
        ("/v1/graph/orphans", {}),
        ("/v1/graph/orphans", {}),  # the back-off's answer too
        ("/v1/graph", {}),
    ):
        try:
            seen.append(repr(daemon.client.request("GET", route, query=query)))
        except DaemonError as error:
            seen.append(repr(error.body))
    seen.append(repr(daemon.client.get("/v1/config")))
    seen.append(repr(daemon.client.get("/v1/status")))
    try:
        daemon.client.post("/v1/graph/sync", {})
    except DaemonError as error:
        seen.append(repr(error.body))
    # A reload that fails on the neo4j section, password beside the error.
    daemon.rewrite(graph={"backend": "neo4j", "neo4j": {**neo4j, "uri": 5, "typo": SECRET}})
    with pytest.raises(DaemonError) as refused:
        daemon.client.post("/v1/reload", {})
    seen.append(repr(refused.value.body))
    for page in ("/metrics", "/metrics/requests", "/metrics/latency", "/health"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{page}", timeout=30) as reply:
            seen.append(reply.read().decode())
    daemon.stop()
    seen.append(daemon.output())
    everything = "".join(seen)
    assert "graph.neo4j.uri (line" in everything  # the reload failed, naming the key
    assert "graph_unavailable" in everything and "Not tried again yet" in everything
    for text in seen:
        assert SECRET not in text, text[:2000]
