"""Upgrades (issue #16, point 8): yesterday's database opens, tomorrow's is refused untouched.

The previous release's database is made in the set-up from git history: the
`jarvisd` package of commit e413a49 is extracted with `git archive` and indexes
the example vault into a file with THAT code; the current daemon then opens it,
migrates, serves and finds the notes. A database stamped with a schema version
newer than this jarvisd knows is refused with exit 73 and a message saying what
to do, and is left byte-for-byte as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from jarvisd.store.schema import LATEST_VERSION
from tests.conftest import REPO, DaemonProcess, base_config

pytestmark = pytest.mark.serial

Start = Callable[..., DaemonProcess]
PREVIOUS_RELEASE = "e413a49"
EXAMPLE = REPO / "jarvisd" / "example_vault"

INDEX_WITH_OLD_CODE = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    import jarvisd
    assert jarvisd.__file__.startswith(sys.argv[3]), jarvisd.__file__  # the old code
    from jarvisd.config import Config
    from jarvisd.indexing.indexer import Indexer
    from jarvisd.model.embedder import Embedder
    from jarvisd.observe.metrics import Metrics
    from jarvisd.pools import Pools
    from jarvisd.store import Store
    config = Config.model_validate({
        "vaults": [{"name": "v", "path": sys.argv[1]}],
        "storage": {"database": sys.argv[2]},
        "embedding": {"quantize": "int8"},
    })
    pools, metrics, embedder = Pools(config.threads), Metrics(), Embedder(config.embedding)
    store = Store(config.database_path, config.storage, embedder.probe_dimension())
    report = asyncio.run(Indexer(config, store, embedder, pools, metrics).run())
    assert report.state == "done", report.error
    store.checkpoint()
    store.close()
    pools.shutdown()
    print("indexed", report.files_indexed)
""")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def old_database(short_tmp: Path) -> Path:
    """A database written by the previous release's code (from git history)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the previous release comes from git history")
    probe = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"this checkout has no git history with {PREVIOUS_RELEASE}")
    old = short_tmp / "old"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", PREVIOUS_RELEASE, "jarvisd"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    database = short_tmp / "data" / "jarvis.duckdb"
    database.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": str(old)}
    done = subprocess.run(
        [sys.executable, "-c", INDEX_WITH_OLD_CODE, str(EXAMPLE), str(database), str(old)],
        capture_output=True,
        text=True,
        env=env,
        cwd=short_tmp,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "indexed 15" in done.stdout.splitlines(), done.stdout[-3000:]
    return database


def test_a_database_of_the_previous_release_opens_migrates_and_serves(
    start_daemon: Start, short_tmp: Path, old_database: Path
) -> None:
    config = base_config(
        short_tmp,
        vaults=[{"name": "v", "path": str(EXAMPLE)}],
        embedding={"quantize": "int8"},
        indexing={"on_start": False, "watch": False},
    )
    daemon = start_daemon(config)
    assert daemon.client.get("/v1/status")["state"] == "running"
    # The notes the old code indexed are served without a re-index.
    hits = daemon.client.get("/v1/search", q="sourdough starter", mode="keyword")["results"]
    assert "Baking/Sourdough.md" in [hit["path"] for hit in hits]
    hits = daemon.client.get("/v1/search", q="how to bake bread", mode="semantic")["results"]
    assert any(hit["path"].startswith("Baking/") for hit in hits)
    assert not daemon.events("store.recovered")  # opened, not set aside
    assert daemon.stop() == 0
    with duckdb.connect(str(old_database), read_only=True) as db:
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        assert row is not None and row[0] == LATEST_VERSION
        notes = db.execute("SELECT count(*) FROM notes").fetchone()
        assert notes is not None and notes[0] == 15


def test_a_database_from_a_newer_jarvisd_is_refused_and_left_untouched(
    start_daemon: Start, short_tmp: Path
) -> None:
    database = short_tmp / "data" / "jarvis.duckdb"
    database.parent.mkdir()
    with duckdb.connect(str(database)) as db:
        db.execute(
            "CREATE TABLE schema_version "
            "(version INTEGER PRIMARY KEY, description VARCHAR NOT NULL, applied_at DOUBLE)"
        )
        db.execute(
            "INSERT INTO schema_version VALUES (?, 'from the future', 0)", [LATEST_VERSION + 5]
        )
        db.execute("CHECKPOINT")

    def files() -> list[str]:  # the daemon's own lock file beside it is not the database
        return sorted(path.name for path in database.parent.iterdir() if path.suffix != ".lock")

    before = files()
    sha = digest(database)

    daemon = start_daemon(base_config(short_tmp), wait=False)
    assert daemon.process.wait(120) == 73  # EX_CANTCREAT: systemd does not restart it
    output = daemon.output()
    assert f"has schema version {LATEST_VERSION + 5}" in output
    assert "upgrade jarvisd, or point storage.database at another file" in output
    assert digest(database) == sha
    assert files() == before  # no WAL, nothing set aside
