"""Asking the real daemon over its socket: the three paths, streaming, cancel, 429, unloading."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProcess, base_config, ctl, free_port
from tiny_llm import build_tiny_model

from jarvisd.cli.client import DaemonError

pytestmark = [pytest.mark.serial, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parents[1] / "jarvisd" / "example_vault"
NORMAL = {"modes": {"full_min_available": "1KB", "lite_min_available": "1KB"}}
FORCE_LITE = {"modes": {"full_min_available": "10TB", "lite_min_available": "1KB"}}
QUESTION = "how long should an espresso shot take?"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def start(
    start_daemon: Callable[..., DaemonProcess], root: Path, llm: dict[str, Any], **overrides: Any
) -> DaemonProcess:
    vault = root / "vault"
    shutil.copytree(EXAMPLE, vault)
    config = base_config(
        root,
        vaults=[{"name": "v", "path": str(vault)}],
        embedding={"preload": True},
        indexing={"on_start": True, "watch": False},
        llm=llm,
        memory=NORMAL,
        **overrides,
    )
    daemon = start_daemon(config)
    until(daemon, lambda s: (s.get("last_index_run") or {}).get("state") == "done"
          and s["embedding"]["loaded"])  # fmt: skip
    return daemon


def until(daemon: DaemonProcess, test: Callable[[dict[str, Any]], bool],
          timeout: float = 120) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = daemon.client.get("/v1/status")
        if test(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"never got there: {status}\n{daemon.output()[-4000:]}")


def ask(daemon: DaemonProcess, question: str = QUESTION) -> dict[str, Any]:
    reply: dict[str, Any] = daemon.client.post("/v1/ask", {"question": question})
    return reply


def reload_with(daemon: DaemonProcess, **sections: Any) -> None:
    before = len(daemon.events("config.reloaded"))
    daemon.rewrite(**sections)
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("config.reloaded", count=before + 1)


def test_three_paths_through_the_socket(
    start_daemon: Callable[..., DaemonProcess], short_tmp: Path, tiny: Path
) -> None:
    port = free_port()
    daemon = start(start_daemon, short_tmp, {"model": str(tiny), "max_tokens": 16},
                   metrics={"listen": f"127.0.0.1:{port}"})  # fmt: skip
    assert "ask" in daemon.client.get("/v1/status")["capabilities"]

    # Template: no LLM, the answer from the index, through jarvisctl.
    shown = ctl(daemon, "ask", "how", "many", "notes", "do", "I", "have?")
    assert shown.returncode == 0, shown.stderr
    assert "You have 15 notes" in shown.stdout and "template (note_count)" in shown.stdout
    tagged = ask(daemon, "which notes are tagged #baking")
    assert tagged["path"] == "template" and tagged["template"] == "notes_tagged"
    assert {c["path"] for c in tagged["citations"]} >= {"Baking/Sourdough.md"}

    # LLM: the tiny model writes random words; jarvisd checks each sentence itself.
    reply = ask(daemon)
    assert reply["path"] == "llm", reply["reason"]
    assert reply["model"] == str(tiny) and reply["reason"] is None
    assert reply["timings"]["tokens"] == 16 and reply["timings"]["first_token_ms"] is not None
    assert reply["sentences"]
    for sentence in reply["sentences"]:
        assert sentence["unsupported"] == (not sentence["citations"])
    numbers = {n for s in reply["sentences"] for n in s["citations"]}
    assert numbers == {c["number"] for c in reply["citations"]}

    events = list(daemon.client.stream("POST", "/v1/ask", {"question": QUESTION, "stream": True}))
    tokens = [e["text"] for e in events if e["type"] == "token"]
    assert tokens and events[-1]["type"] == "done" and events[-1]["path"] == "llm"
    assert events[-1]["timings"]["tokens"] == 16

    # Bad input: a clear 400, and nothing changes.
    with pytest.raises(DaemonError) as caught:
        daemon.client.post("/v1/ask", {"question": "", "stream": False})
    assert caught.value.status == 400 and caught.value.body["error"]["parameter"] == "question"

    ask(daemon, "how many notes do I have?")  # the same question again: a cache hit
    stats = daemon.client.get("/v1/ask/stats")
    assert stats["templates"]["cache"]["hits"] >= 1 and stats["llm"]["loaded"]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    text = metrics.decode()
    assert 'jarvis_ask_requests_total{path="template",result="ok"}' in text
    assert 'jarvis_ask_requests_total{path="llm",result="ok"} 2.0' in text
    assert "jarvis_llm_tokens_total 32.0" in text and "jarvis_llm_loaded 1.0" in text
    assert 'jarvis_cache_hits_total{cache="templates"}' in text
    memory = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/memory").read())
    assert memory["models"]["llm"]["loaded"] and memory["models"]["llm"]["memory_bytes"] > 0

    # Extractive, with the reason, for a missing, a corrupt and an unloadable folder.
    corrupt = short_tmp / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json", encoding="utf-8")
    unloadable = short_tmp / "unloadable"
    shutil.copytree(tiny, unloadable)
    (unloadable / "model.safetensors").write_bytes(b"\x00" * 64)
    for folder, reason in [
        (short_tmp / "missing", "does not exist"),
        (corrupt, "not valid JSON"),
        (unloadable, "cannot load the LLM"),
        (None, "no LLM is configured"),
    ]:
        reload_with(daemon, llm={"model": None if folder is None else str(folder)})
        reply = ask(daemon)
        assert reply["path"] == "extractive" and reason in reply["reason"], reply
        assert reply["citations"] and reply["citations"][0]["path"] == "Coffee/Espresso.md"
        assert all(not s["unsupported"] for s in reply["sentences"])
    shown = ctl(daemon, "ask", QUESTION, "--json")
    assert json.loads(shown.stdout)["path"] == "extractive"


def open_stream(path: Path, question: str) -> socket.socket:
    """A streaming question on a raw socket, so the test can hang up mid-answer."""
    body = json.dumps({"question": question, "stream": True}).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(str(path))
    sock.sendall(
        b"POST /v1/ask HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def test_a_client_that_hangs_up_stops_the_generation_and_a_full_queue_is_429(
    start_daemon: Callable[..., DaemonProcess], short_tmp: Path, tiny: Path
) -> None:
    llm = {"model": str(tiny), "max_tokens": 6000, "context_tokens": 8192, "queue": 0}
    daemon = start(start_daemon, short_tmp, llm)
    sock = open_stream(daemon.socket, QUESTION)
    received = b""
    while received.count(b'"type": "token"') < 3:
        received += sock.recv(65536)
    with pytest.raises(DaemonError) as caught:
        ask(daemon)  # the one slot is busy and llm.queue is 0
    assert caught.value.status == 429 and caught.value.code == "busy"
    sock.close()
    (cancelled,) = daemon.wait_event("ask.cancelled")
    assert cancelled["finish"] == "cancelled" and cancelled["tokens_after_stop"] <= 1
    assert cancelled["tokens"] < 6000
    stats = daemon.client.get("/v1/ask/stats")["llm"]
    assert stats["active"] == 0 and stats["waiting"] == 0


def test_sigterm_ends_an_answer_being_generated_and_the_client_gets_its_reply(
    start_daemon: Callable[..., DaemonProcess], short_tmp: Path, tiny: Path
) -> None:
    # The tiny model never stops on its own: without the stop being announced (the
    # ask service's `stopping()`), the answer runs on until the socket's shutdown
    # gives up on it and the client gets no reply, or it ends with its 6000 tokens.
    llm = {"model": str(tiny), "max_tokens": 6000, "context_tokens": 8192}
    daemon = start(start_daemon, short_tmp, llm)
    sock = open_stream(daemon.socket, QUESTION)
    received = b""
    while received.count(b'"type": "token"') < 3:
        received += sock.recv(65536)
    daemon.signal(signal.SIGTERM)
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    assert b'"type": "done"' in received and b'"path": "extractive"' in received
    assert b"the daemon is stopping" in received
    assert daemon.process.wait(60) == 0
    (stopping,) = daemon.events("daemon.stopping")
    assert stopping["reason"] == "SIGTERM"


def test_the_llm_unloads_when_idle_on_request_and_when_memory_leaves_full(
    start_daemon: Callable[..., DaemonProcess], short_tmp: Path, tiny: Path
) -> None:
    llm = {"model": str(tiny), "max_tokens": 4, "idle_unload": "1s"}
    schedule = {"memory_sample": "200ms", "index": None, "maintenance": None}
    daemon = start(start_daemon, short_tmp, llm, schedule=schedule)
    assert ask(daemon)["path"] == "llm"
    until(daemon, lambda s: not s["ask"]["llm_loaded"], timeout=30)
    assert daemon.wait_event("llm.unloaded")[-1]["reason"].startswith("idle for")

    reload_with(daemon, llm={**llm, "idle_unload": "0s"})
    assert ask(daemon)["path"] == "llm"
    shown = ctl(daemon, "gc", "--models")
    assert shown.returncode == 0 and "unloaded: llm" in shown.stdout, shown.stderr
    assert not daemon.client.get("/v1/status")["ask"]["llm_loaded"]

    assert ask(daemon)["path"] == "llm"
    reload_with(daemon, memory=FORCE_LITE)
    until(daemon, lambda s: s["memory_mode"] == "LITE" and not s["ask"]["llm_loaded"])
    unloads = daemon.wait_event("llm.unloaded", count=3)  # idle, gc --models, LITE
    assert unloads[-1]["reason"] == "memory mode LITE"
    reply = ask(daemon)
    assert reply["path"] == "extractive" and "FULL memory mode" in reply["reason"]
