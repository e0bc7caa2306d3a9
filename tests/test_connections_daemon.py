"""Connections that stall, floods past the limit, bodies that never come: the real daemon.

Found by fault injection (issue "Proof under load, faults and bad input"): 200
connections that sent half a request held 200 descriptors for good, a declared
99,999,999,999-byte body with none sent was held open, and a 1,000-connection
burst met EAGAIN at connect() for 509 of them (a listen backlog of 128).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess

pytestmark = pytest.mark.serial

Start = Callable[..., DaemonProcess]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def connect(path: Path, timeout: float = 30.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def read_reply(sock: socket.socket) -> bytes:
    """Everything until the daemon closes the connection (b'' if it closed at once)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def status_and_body(reply: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


def wait_until(check: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_connections_that_send_half_a_request_are_closed_and_their_descriptors_freed(
    start_daemon: Start,
) -> None:
    daemon = start_daemon(control={"request_timeout": "1s", "max_connections": 0})
    pid = daemon.process.pid
    baseline = open_fds(pid)
    stalled = [connect(daemon.socket) for _ in range(50)]
    for sock in stalled:
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: jarvisd\r\n")  # no blank line: half
    for sock in stalled:
        assert read_reply(sock) == b"", "the daemon should close a stalled connection"
        sock.close()
    assert wait_until(lambda: open_fds(pid) <= baseline), (
        f"descriptors {open_fds(pid)} did not return to {baseline}"
    )
    # And it still serves.
    assert daemon.client.get("/v1/status")["state"] == "running"
    # One summary line for the minute, not fifty.
    assert len(daemon.wait_event("control.request_timed_out")) == 1


def test_a_declared_huge_body_is_refused_at_once_and_the_connection_closed(
    start_daemon: Start,
) -> None:
    daemon = start_daemon()
    with connect(daemon.socket) as sock:
        sock.sendall(
            b"POST /v1/index HTTP/1.1\r\nHost: jarvisd\r\nContent-Type: application/json\r\n"
            b"Content-Length: 99999999999\r\n\r\n"
        )
        status, body = status_and_body(read_reply(sock))
    assert status == 413
    assert body["error"] == {
        "code": "request_too_large",
        "message": "request body over 1000000 bytes (control.max_request_bytes)",
    }


def test_a_body_that_stops_arriving_is_a_408_within_the_request_timeout(
    start_daemon: Start,
) -> None:
    daemon = start_daemon(control={"request_timeout": "1s"})
    with connect(daemon.socket) as sock:
        sock.sendall(
            b"POST /v1/ask HTTP/1.1\r\nHost: jarvisd\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"question": '
        )
        status, body = status_and_body(read_reply(sock))
    assert status == 408
    assert body["error"] == {
        "code": "request_timeout",
        "message": "the request body did not arrive within 1s (control.request_timeout)",
    }


def test_past_max_connections_a_request_is_answered_503_busy_and_served_again_after(
    start_daemon: Start,
) -> None:
    daemon = start_daemon(control={"max_connections": 4, "request_timeout": "60s"})
    idle = [connect(daemon.socket) for _ in range(4)]
    pid = daemon.process.pid
    baseline_plus_idle = open_fds(pid)
    try:
        with connect(daemon.socket) as sock:
            sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: jarvisd\r\n\r\n")
            reply = read_reply(sock)
        status, body = status_and_body(reply)
        assert status == 503
        assert b"Retry-After: 1" in reply
        error = body["error"]
        assert isinstance(error, dict) and error["code"] == "busy"
        assert "control.max_connections" in str(error["message"])
    finally:
        for sock in idle:
            sock.close()
    assert wait_until(lambda: open_fds(pid) < baseline_plus_idle)
    assert daemon.client.get("/v1/status")["state"] == "running"
    assert daemon.wait_event("control.connections_busy")[0]["count"] == 1


def test_a_burst_of_1000_connections_is_queued_and_answered_not_refused(
    start_daemon: Start,
) -> None:
    daemon = start_daemon(
        control={"max_connections": 64, "rate_limit": 0, "request_timeout": "120s"}
    )
    refused = 0
    opened: list[socket.socket] = []
    for _ in range(1000):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)  # EAGAIN, not a wait, when the backlog is full
        try:
            sock.connect(str(daemon.socket))
        except BlockingIOError:
            refused += 1
            sock.close()
            continue
        opened.append(sock)
    assert refused == 0, f"{refused} of 1000 connects met a full listen backlog"
    statuses: dict[int, int] = {}
    # Every client sends before any reads (benchmarks/reliability found it): those
    # past the limit at arrival are answered 503; the first 64 are served. Judged when
    # the request was read, all 1,000 saw 1,000 open and were answered 503.
    for sock in opened:
        sock.setblocking(True)
        sock.settimeout(60)
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: jarvisd\r\nConnection: close\r\n\r\n")
    for sock in opened:
        try:
            status, _ = status_and_body(read_reply(sock))
        finally:
            sock.close()
        statuses[status] = statuses.get(status, 0) + 1
    assert set(statuses) <= {200, 503}, statuses
    assert 60 <= statuses.get(200, 0) <= 64, statuses
    assert daemon.client.get("/v1/status")["state"] == "running"
