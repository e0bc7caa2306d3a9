"""The real jarvisd as a subprocess: socket, signals, reload, locking, sd_notify."""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess

from jarvisd.cli.client import ControlClient, DaemonError

pytestmark = pytest.mark.serial

Start = Callable[..., DaemonProcess]


def test_status_over_the_socket(start_daemon: Start) -> None:
    daemon = start_daemon()
    status = daemon.client.get("/v1/status")
    assert status["state"] == "running"
    assert status["pid"] == daemon.process.pid
    assert status["config_path"] == str(daemon.config_path)
    assert {job["id"] for job in status["jobs"]} >= {"memory_sample"}
    assert status["memory_mode"] in {"FULL", "LITE", "MINIMAL"}


STATUS_KEYS = [
    "state", "pid", "version", "uptime_seconds", "started_at", "config_path", "socket",
    "database", "memory_mode", "alerts_firing", "capabilities", "threads", "store", "index",
    "indexing", "last_index_run", "embedding", "watching", "graph", "ask", "jobs", "last_reload",
]  # fmt: skip
JOB_KEYS = [
    "id", "description", "schedule", "running", "runs", "failures", "last_started",
    "last_duration_seconds", "last_result", "last_error", "next_run",
]  # fmt: skip


def test_status_jobs_maintenance_and_reload_keep_their_json(start_daemon: Start) -> None:
    """The typed reports (jarvisd/reports.py, jobs.JobReport) keep the keys clients read."""
    daemon = start_daemon()
    status = daemon.client.get("/v1/status")
    assert list(status) == STATUS_KEYS and status["last_reload"] is None
    assert list(status["store"]) == ["healthy", "unhealthy_reason", "rebuilding", "recovery"]
    assert status["store"]["healthy"] is True and status["store"]["recovery"] is None
    assert list(status["embedding"]) == ["state", "loaded", "model"]
    assert [list(job) for job in daemon.client.get("/v1/jobs")["jobs"]] == [JOB_KEYS] * 3
    maintenance = daemon.client.post("/v1/maintenance")
    assert list(maintenance) == ["steps", "seconds"]
    assert [step["step"] for step in maintenance["steps"]] == [
        "analyze", "vector_index", "checkpoint"
    ]  # fmt: skip
    daemon.rewrite(search={"default_limit": 7})
    applied = daemon.client.post("/v1/reload")
    assert list(applied) == ["ok", "source", "at", "added", "changed", "removed",
                             "restart_required"]  # fmt: skip
    assert applied["ok"] is True and applied["changed"] == ["search.default_limit"]
    daemon.config_path.write_text("search: [\n", encoding="utf-8")
    with pytest.raises(DaemonError) as caught:
        daemon.client.post("/v1/reload")
    refused = caught.value.body["error"]["result"]
    assert list(refused) == ["ok", "source", "error", "at"] and refused["ok"] is False
    assert daemon.client.get("/v1/status")["last_reload"] == refused


def test_socket_is_private(start_daemon: Start) -> None:
    daemon = start_daemon()
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(daemon.socket.parent.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(daemon.socket.stat().st_mode)


def test_sighup_applies_a_valid_change(start_daemon: Start) -> None:
    daemon = start_daemon()
    assert daemon.client.get("/v1/config")["config"]["search"]["default_limit"] == 10
    daemon.rewrite(search={"default_limit": 7}, logging={"level": "debug", "format": "json"})
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_event("config.reloaded")[-1]
    assert "search.default_limit" in reloaded["changed"]
    assert "logging.level" in reloaded["changed"]
    assert daemon.client.get("/v1/config")["config"]["search"]["default_limit"] == 7
    assert daemon.client.get("/v1/status")["last_reload"]["ok"] is True


def test_sighup_with_broken_yaml_keeps_the_old_config(start_daemon: Start) -> None:
    daemon = start_daemon(search={"default_limit": 9})
    daemon.config_path.write_text("search: {default_limit: [\n", encoding="utf-8")
    daemon.signal(signal.SIGHUP)
    failed = daemon.wait_event("config.reload_failed")[-1]
    assert "malformed YAML" in failed["reason"]
    status = daemon.client.get("/v1/status")
    assert status["state"] == "running"
    assert status["last_reload"]["ok"] is False
    assert daemon.client.get("/v1/config")["config"]["search"]["default_limit"] == 9


def test_reload_request_reports_an_invalid_file(start_daemon: Start) -> None:
    daemon = start_daemon()
    daemon.config_path.write_text("search:\n  max_limit: 0\n", encoding="utf-8")
    with pytest.raises(DaemonError) as caught:
        daemon.client.post("/v1/reload")
    assert caught.value.status == 422
    assert caught.value.code == "invalid_config"
    assert "search.max_limit (line 2)" in caught.value.message


def test_restart_only_keys_are_reported_and_kept(start_daemon: Start, short_tmp: Path) -> None:
    daemon = start_daemon()
    daemon.rewrite(
        control={"socket": str(short_tmp / "elsewhere" / "other.sock")},
        search={"default_limit": 3},
    )
    outcome = daemon.client.post("/v1/reload")
    assert outcome["restart_required"] == ["control.socket"]
    assert outcome["changed"] == ["search.default_limit"]
    # still serving on the old socket, with the old value of the restart-only key
    effective = daemon.client.get("/v1/config")["config"]
    assert effective["control"]["socket"] == str(daemon.socket)
    assert effective["search"]["default_limit"] == 3
    assert daemon.wait_event("config.restart_required")[-1]["keys"] == ["control.socket"]


def test_second_instance_is_refused(start_daemon: Start) -> None:
    first = start_daemon()
    second = subprocess.run(
        [sys.executable, "-m", "jarvisd", "--config", str(first.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 73
    assert "another jarvisd" in second.stderr
    assert str(first.process.pid) in second.stderr
    assert first.client.get("/v1/status")["state"] == "running"


def test_stale_socket_is_removed(start_daemon: Start, short_tmp: Path) -> None:
    run = short_tmp / "run"
    run.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(run / "jarvisd.sock"))
    stale.close()  # the file stays behind, as after a crash
    daemon = start_daemon()
    assert daemon.client.get("/v1/status")["state"] == "running"
    assert daemon.wait_event("control.stale_socket_removed")


def test_rate_limit_and_request_size(start_daemon: Start) -> None:
    daemon = start_daemon(control={"rate_limit": 5, "max_request_bytes": "1KB"})
    statuses = []
    for _ in range(30):
        try:
            daemon.client.get("/v1/status")
            statuses.append(200)
        except DaemonError as error:
            statuses.append(error.status)
            assert error.code == "rate_limited"
    assert 200 in statuses and 429 in statuses
    time.sleep(1.0)
    with pytest.raises(DaemonError) as caught:
        daemon.client.post("/v1/reload", body={"padding": "x" * 5000})
    assert caught.value.status == 413
    assert "control.max_request_bytes" in caught.value.message


def test_sigterm_exits_zero_and_removes_the_socket(start_daemon: Start) -> None:
    daemon = start_daemon()
    daemon.signal(signal.SIGTERM)
    assert daemon.process.wait(30) == 0
    assert not daemon.socket.exists()
    assert daemon.events("daemon.stopped")


def test_sigint_exits_zero(start_daemon: Start) -> None:
    daemon = start_daemon()
    daemon.signal(signal.SIGINT)
    assert daemon.process.wait(30) == 0
    assert not daemon.socket.exists()


def test_a_second_sigint_during_the_shutdown_exits_at_once(start_daemon: Start) -> None:
    """The first SIGINT waits for in-flight requests (up to 10 s); a second one means now."""
    daemon = start_daemon(control={"request_timeout": "60s"})
    # A request in flight that will not finish by itself: a body that stops coming.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held:
        held.connect(str(daemon.socket))
        held.sendall(b"POST /v1/ask HTTP/1.1\r\nHost: j\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.5)  # the handler is reading the body now
        daemon.signal(signal.SIGINT)
        daemon.wait_event("daemon.stopping")
        time.sleep(0.2)
        assert daemon.process.poll() is None, "the shutdown should still wait for the request"
        daemon.signal(signal.SIGINT)
        assert daemon.process.wait(10) == 130
    forced = daemon.events("daemon.forced_exit")
    assert forced and "next start replays its WAL" in forced[0]["advice"]


def test_concurrent_status_during_reloads_all_answered(start_daemon: Start) -> None:
    daemon = start_daemon(control={"rate_limit": 0})
    errors: list[BaseException] = []
    answered = 0
    lock = threading.Lock()
    stop = threading.Event()

    def hammer() -> None:
        nonlocal answered
        client = ControlClient(daemon.socket)
        while not stop.is_set():
            try:
                assert client.get("/v1/status")["pid"] == daemon.process.pid
                with lock:
                    answered += 1
            except BaseException as error:  # collected and asserted below
                errors.append(error)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for limit in (5, 6, 7, 8, 9):
        daemon.rewrite(search={"default_limit": limit})
        daemon.signal(signal.SIGHUP)
        daemon.wait_event("config.reloaded", count=limit - 4)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not errors, errors[:3]
    assert answered > 50


def test_sd_notify_ready_reloading_watchdog_stopping(start_daemon: Start, short_tmp: Path) -> None:
    notify_path = short_tmp / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(30)
    messages: list[str] = []

    def until(prefix: str) -> str:
        while True:
            message = listener.recv(4096).decode()
            messages.append(message)
            if message.startswith(prefix):
                return message

    daemon = start_daemon(env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"})
    assert until("READY=1")
    assert until("WATCHDOG=1")
    daemon.signal(signal.SIGHUP)
    reloading = until("RELOADING=1")
    assert "MONOTONIC_USEC=" in reloading
    assert until("READY=1")
    daemon.signal(signal.SIGTERM)
    assert until("STOPPING=1")
    assert daemon.process.wait(30) == 0
    listener.close()


def test_log_file_is_reopened_on_sighup(start_daemon: Start, short_tmp: Path) -> None:
    log_file = short_tmp / "logs" / "jarvisd.log"
    daemon = start_daemon(logging={"level": "info", "format": "json", "file": str(log_file)})
    assert "daemon.ready" in log_file.read_text(encoding="utf-8")
    rotated = log_file.with_suffix(".log.1")
    log_file.rename(rotated)
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("config.reloaded")
    deadline = time.monotonic() + 10
    while not log_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "config.reloaded" in log_file.read_text(encoding="utf-8")
    assert "config.reloaded" not in rotated.read_text(encoding="utf-8")


def test_every_log_line_is_structured(start_daemon: Start) -> None:
    daemon = start_daemon()
    daemon.client.get("/v1/status")  # a routine read: logged at debug, not shown at info
    daemon.client.post("/v1/reload")  # a change: logged at info
    daemon.stop()
    records = daemon.events()
    assert records, daemon.output()
    for record in records:
        assert {"event", "level", "timestamp"} <= record.keys()
    requests = [record for record in records if record["event"] == "request"]
    assert [record["method"] for record in requests] == ["POST"]
    assert all(record.get("request_id") for record in requests)


def test_a_taken_metrics_port_exits_73_and_cleans_up(start_daemon: Start, short_tmp: Path) -> None:
    import socket as sockets

    from conftest import free_port

    port = free_port()
    with sockets.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        daemon = start_daemon(metrics={"listen": f"127.0.0.1:{port}"}, wait=False)
        assert daemon.process.wait(60) == 73
    assert "metrics.listen" in daemon.output()
    assert not daemon.socket.exists()
