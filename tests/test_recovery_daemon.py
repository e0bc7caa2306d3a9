"""Never down for good (issue #9): kill -9 after maintenance and edits, damaged files.

Every test runs the real daemon as a subprocess, with real signals and the real model.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from boltstub import BoltStub, played, requires_boltstub, sync_script, sync_transactions
from conftest import DaemonProcess, base_config, ctl
from test_index_daemon import EXAMPLE, snapshot, wait_idle

pytestmark = pytest.mark.serial
Start = Callable[..., DaemonProcess]


def vault_config(root: Path, vault: Path, **indexing: Any) -> dict[str, Any]:
    return base_config(
        root,
        vaults=[{"name": "v", "path": str(vault)}],
        embedding={"preload": True},
        indexing={"on_start": True, "watch": True, "debounce": "200ms", **indexing},
    )


def keyword_hits(daemon: DaemonProcess, word: str) -> list[str]:
    reply = daemon.client.get("/v1/search", q=word, mode="keyword")
    return [result["path"] for result in reply["results"]]


def wait_searchable(daemon: DaemonProcess, word: str, timeout: float = 120) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hits = keyword_hits(daemon, word)
        if hits:
            return hits
        time.sleep(0.1)
    raise AssertionError(f"{word!r} never became searchable:\n{daemon.output()[-3000:]}")


def kill_9(daemon: DaemonProcess) -> None:
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(30)


def append(note: Path, word: str) -> None:
    note.write_text(
        note.read_text(encoding="utf-8") + f"\n\nA line added before the crash: {word}.\n",
        encoding="utf-8",
    )


@pytest.mark.heavy
# The reproduction, with the kill at three points. Before the fix the restart
# after the first kill exited 1 ("Cannot drop entry "fts_main_chunk_documents" ...").
@pytest.mark.timeout(900)
def test_kill_9_after_maintenance_and_edits_restarts_to_a_clean_index(
    start_daemon: Start, short_tmp: Path
) -> None:
    vault = short_tmp / "vault"
    shutil.copytree(EXAMPLE, vault)
    config = vault_config(short_tmp, vault)
    database = Path(config["storage"]["database"])
    notes = sorted(vault.rglob("*.md"))
    rng = random.Random(9)
    words: list[str] = []
    for point, note in zip(
        ("after_maintenance", "after_edit_run", "during_maintenance"), notes, strict=False
    ):
        daemon = start_daemon(config)
        wait_idle(daemon)
        for word in words:  # what every earlier life wrote is served after its kill -9
            assert keyword_hits(daemon, word), (point, word)
        word = f"crashword{len(words)}"
        if point == "during_maintenance":
            append(note, word)
            wait_searchable(daemon, word)
            maintenance = subprocess.Popen(
                [sys.executable, "-m", "jarvisd.cli", "--socket", str(daemon.socket),
                 "maintenance"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            # The example vault's rebuild takes tens of milliseconds: kill somewhere in it.
            time.sleep(rng.uniform(0.05, 0.4))
            kill_9(daemon)
            maintenance.wait(30)
        else:
            result = ctl(daemon, "maintenance", "--json")
            assert result.returncode == 0, result.stderr
            if point == "after_edit_run":
                append(note, word)
                wait_searchable(daemon, word)
            else:
                word = ""
            kill_9(daemon)
        if word:
            words.append(word)
        assert daemon.events("store.recovered") == []
    survivor = start_daemon(config)
    wait_idle(survivor)
    for word in words:
        assert keyword_hits(survivor, word), word
    # The WAL replayed: no recovery was needed, the same database file served on.
    assert survivor.events("store.recovered") == []
    assert not list(database.parent.glob("*.broken-*"))
    assert survivor.stop() == 0, survivor.output()[-4000:]  # -9: it outlived stop()'s 30 s
    clean_root = short_tmp / "clean"
    clean_root.mkdir()
    clean = start_daemon(vault_config(clean_root, vault, watch=False))
    wait_idle(clean)
    assert clean.stop() == 0
    recovered = snapshot(database)
    reference = snapshot(clean_root / "data" / "jarvis.duckdb")
    assert recovered == reference


# ------------------------------------------------------------------ damaged files


@pytest.fixture(scope="module")
def indexed_database() -> Iterator[tuple[Path, dict[str, Any]]]:
    """The example vault indexed once by the real daemon, stopped cleanly: the database
    to damage, and the reference snapshot a clean index gives."""
    root = Path(tempfile.mkdtemp(prefix="jv-", dir="/tmp"))
    vault = root / "vault"
    shutil.copytree(EXAMPLE, vault)
    daemon = DaemonProcess(root, vault_config(root, vault, watch=False))
    try:
        daemon.wait_ready()
        wait_idle(daemon)
    finally:
        assert daemon.stop() == 0
    database = root / "data" / "jarvis.duckdb"
    yield database, snapshot(database)
    shutil.rmtree(root, ignore_errors=True)


def _random_middle(database: Path) -> None:
    size = database.stat().st_size
    with database.open("r+b") as file:
        file.seek(size // 2)
        file.write(os.urandom(65536))


def _half(database: Path) -> None:
    os.truncate(database, database.stat().st_size // 2)


def _garbage(database: Path) -> None:
    database.write_bytes(os.urandom(200_000))


def _empty(database: Path) -> None:
    database.write_bytes(b"")


def _corrupt_wal(database: Path) -> None:
    """A real WAL (writes after the last checkpoint, then os._exit), damaged in its middle."""
    script = f"""
import os, duckdb
from jarvisd.store.connection import EXTENSIONS, extension_path
connection = duckdb.connect({str(database)!r})
for name, package in EXTENSIONS:
    connection.execute(f"LOAD '{{extension_path(name, package)}}'")
connection.execute("CREATE TABLE filler AS SELECT range AS i, repeat('x', 100) AS t "
                   "FROM range(20000)")
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    wal = database.with_name(database.name + ".wal")
    size = wal.stat().st_size
    assert size > 100_000
    with wal.open("r+b") as file:
        file.seek(size // 2)
        file.write(os.urandom(4096))


DAMAGE = {
    "corrupt_wal": _corrupt_wal,
    "truncated_to_half": _half,
    "garbage": _garbage,
    "empty": _empty,
}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_database_that_cannot_be_opened_is_kept_aside_and_rebuilt(
    start_daemon: Start, short_tmp: Path, indexed_database: tuple[Path, dict[str, Any]],
    damage: str,
) -> None:  # fmt: skip
    source, reference = indexed_database
    config = vault_config(short_tmp, source.parent.parent / "vault", watch=False, on_start=False)
    database = Path(config["storage"]["database"])
    database.parent.mkdir(parents=True)
    shutil.copy(source, database)
    DAMAGE[damage](database)
    damaged = {path.name: path.read_bytes() for path in database.parent.iterdir()}
    # on_start is off: the rebuild after a recovery runs anyway.
    daemon = start_daemon(config)
    state = wait_idle(daemon)
    assert state["last_run"]["trigger"] == "recovery" and state["last_run"]["state"] == "done"
    [recovered] = daemon.events("store.recovered")
    assert recovered["level"] == "error" and recovered["phase"] == "open"
    kept = [Path(path) for path in recovered["kept"]]
    # Every damaged file is kept byte for byte under a name with the time; none deleted.
    assert sorted(path.name.split(".broken-")[0] for path in kept) == sorted(damaged)
    for path in kept:
        assert path.read_bytes() == damaged[path.name.split(".broken-")[0]]
    [alert] = [event for event in daemon.events("alert.fired")
               if event["rule"] == "store_recovered"]  # fmt: skip
    assert (
        sorted(alert["files"]) == sorted(map(str, kept)) and recovered["reason"] in alert["reason"]
    )
    status = json.loads(ctl(daemon, "status", "--json").stdout)
    assert status["store"]["healthy"] and status["store"]["rebuilding"] is False
    assert status["store"]["recovery"]["kept"] == recovered["kept"]
    text = ctl(daemon, "status").stdout
    assert "recovered at" in text and "rebuilt" in text and kept[0].name in text
    assert keyword_hits(daemon, "espresso")
    assert daemon.stop() == 0
    assert snapshot(database) == reference


def _embedding_block(database: Path) -> int:
    """The file offset of a block holding chunk vectors (DuckDB's storage_info)."""
    with duckdb.connect(str(database), read_only=True) as connection:
        rows = connection.execute(
            "SELECT block_id FROM pragma_storage_info('chunks') "
            "WHERE column_name = 'embedding' AND persistent AND block_id >= 0 "
            "ORDER BY block_id"
        ).fetchall()
    assert rows, "the vectors are in no block"
    # DuckDB 1.5 files: a 4 KiB header and two 4 KiB database headers, then 256 KiB
    # blocks, each starting with its 8-byte checksum.
    block = int(rows[len(rows) // 2][0])
    return 3 * 4096 + block * 262144 + 8


@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_a_checksum_error_while_serving_marks_unhealthy_and_recovers(
    start_daemon: Start, short_tmp: Path, indexed_database: tuple[Path, dict[str, Any]]
) -> None:
    """64 KiB of random bytes in a block of vectors: the file opens, then searches fail."""
    source, reference = indexed_database
    config = vault_config(short_tmp, source.parent.parent / "vault", watch=False, on_start=False)
    database = Path(config["storage"]["database"])
    database.parent.mkdir(parents=True)
    shutil.copy(source, database)
    offset = _embedding_block(database)
    with database.open("r+b") as file:
        file.seek(offset)
        file.write(os.urandom(65536))
    daemon = start_daemon(config)
    # The first searches fail (the snapshot reads every vector) until the recovery ran.
    deadline = time.monotonic() + 120
    while not daemon.events("store.recovered") and time.monotonic() < deadline:
        # A 500 while the damaged file is still open is expected.
        with contextlib.suppress(Exception):
            daemon.client.get("/v1/search", q="espresso")
        time.sleep(0.1)
    [damaged] = daemon.events("store.damaged")
    assert "checksum" in damaged["error"]
    [recovered] = daemon.events("store.recovered")
    assert recovered["phase"] == "serving"
    state = wait_idle(daemon)
    assert state["last_run"]["trigger"] == "recovery" and state["last_run"]["state"] == "done"
    assert Path(recovered["kept"][0]).name.startswith(database.name + ".broken-")
    status = daemon.client.get("/v1/status")
    assert status["store"]["healthy"] and status["store"]["recovery"]["phase"] == "serving"
    reply = daemon.client.get("/v1/search", q="espresso")
    assert reply["results"] and reply["rebuilding"] is False
    assert daemon.stop() == 0
    assert snapshot(database) == reference


def test_a_lock_held_by_another_process_is_not_damage(start_daemon: Start, short_tmp: Path) -> None:
    """Another DuckDB client holding the file: refused with its own message, nothing moved."""
    config = base_config(short_tmp)
    database = Path(config["storage"]["database"])
    database.parent.mkdir(parents=True)
    duckdb.connect(str(database)).close()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, sys, time; c = duckdb.connect({str(database)!r}); "
         "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        daemon = start_daemon(config, wait=False)
        # 73: the unit's RestartPreventExitStatus, so systemd does not loop on it.
        assert daemon.process.wait(60) == 73
        assert "Another jarvisd (or any DuckDB client) has it open" in daemon.output()
        assert "Traceback" not in daemon.output()
        assert not list(database.parent.glob("*.broken-*"))
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------- a kill mid-sync


# Few notes, so the two model loads are most of the cost.
SYNCED = {
    "a.md": "# Alpha\n\nSee [[b]] and [[folder/c|the third]], and [[Ghost]].\n",
    "b.md": "---\ntitle: Beta\n---\nBack to [[a#Alpha]].\n",
    "folder/c.md": "# Gamma\n\n[[b]] twice: [[b]].\n",
    "lonely.md": "No links here.\n",
}


@requires_boltstub
@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_kill_9_during_a_neo4j_sync_restarts_to_a_clean_index_and_the_sync_finishes(
    start_daemon: Start, short_tmp: Path, tmp_path: Path
) -> None:
    """Killed while the server holds the notes but not yet their links (the stub takes
    the link transaction and never answers it); the next life finishes the projection."""
    from benchmarks.reliability import Reference, compare, fingerprint
    from jarvisd.graph.neo4j_queries import REPLACE_LINKS
    from jarvisd.graph.sync import read_projection

    vault = short_tmp / "vault"
    (vault / "folder").mkdir(parents=True)
    for name, text in SYNCED.items():
        (vault / name).write_text(text, encoding="utf-8")
    config = base_config(
        short_tmp,
        vaults=[{"name": "v", "path": str(vault)}],
        embedding={"quantize": "int8"},
        indexing={"on_start": True},
    )
    (short_tmp / "ref").mkdir()
    reference = Reference(short_tmp / "ref", config)
    try:
        reference.index()
        projection = read_projection(reference.store, "v")
        want = reference.fingerprint()
    finally:
        reference.close()

    def on(stub: BoltStub) -> dict[str, Any]:
        neo4j = {"uri": stub.uri, "database": "", "max_retry_time": "0s"}
        return {**config, "graph": {"backend": "neo4j", "neo4j": neo4j}}

    sync = sync_transactions([projection], {})
    stall = next(n for n, step in enumerate(sync) if step.query == REPLACE_LINKS)
    with BoltStub("stalled.script", {}, tmp_path, sync_script(sync, stall), idle=600) as stub:
        daemon = start_daemon(on(stub))
        deadline = time.monotonic() + 300
        while stub.log().count("C: PULL_ALL") <= stall:  # the link query is taken, unanswered
            assert time.monotonic() < deadline, stub.log()[-3000:] + daemon.output()[-3000:]
            time.sleep(0.05)
        kill_9(daemon)
    held = played(sync, {}, stall)
    assert sorted(held["v"]) == sorted(note.path for note in projection.notes)
    assert set(held["v"].values()) == {None}  # nodes without links: the sync was cut there

    rest = sync_transactions([projection], held)
    with BoltStub("resumed.script", {}, tmp_path, sync_script(rest), idle=600) as stub:
        daemon = start_daemon(on(stub))
        synced = daemon.wait_event("graph.synced", timeout=300)[-1]
        assert synced["notes"] == len(projection.notes), synced
        assert daemon.client.get("/v1/graph")["last_sync"]["ok"] is True
        assert daemon.stop() == 0
        assert stub.finish() == 0, stub.log()[-3000:]  # every remaining write, then GOODBYE
    assert not daemon.events("store.recovered")
    differences = compare(fingerprint(Path(config["storage"]["database"])), want)
    assert differences == dict.fromkeys(differences, 0), differences
