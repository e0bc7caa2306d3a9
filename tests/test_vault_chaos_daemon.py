"""Vault chaos under the watcher (issue #16, point 3), with the real daemon.

One daemon watches a vault (debounce 0.2 s) while the test does to it what
people and their tools do: a burst of edits, a folder deleted and restored, a
folder renamed, files that change while being read, an editor's atomic save,
`git checkout` of another branch, a note turned into a folder, special files,
symlink loops, a 50 MB file, binary and invalid UTF-8 `.md` files, empty files,
broken frontmatter, deeply nested lists, and the vault folder disappearing and
coming back. The daemon must not crash, must log every skip with its reason,
and at the end its index must equal a clean index of the same files (the
benchmark's `Reference`).

Permission-denied files cannot be made here: the suite runs as root, which
reads any mode. A FIFO named `.md` is used instead (a file the indexer cannot
read as a note) and a dangling symlink; tests/test_vault.py covers modes as
another uid.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, DaemonProcess, base_config

pytestmark = pytest.mark.serial

Start = Callable[..., DaemonProcess]
EXAMPLE = REPO / "jarvisd" / "example_vault"
BULK = 40  # notes in the folder that is edited, deleted, restored and renamed


def quiet(daemon: DaemonProcess, since: int, timeout: float = 240.0) -> dict[str, Any]:
    """Wait for an index run after `since` and then 1.5 s with no run: the watcher caught up."""
    deadline = time.monotonic() + timeout
    still_since: float | None = None
    last_id = since
    while time.monotonic() < deadline:
        assert daemon.process.poll() is None, f"jarvisd died:\n{daemon.output()[-4000:]}"
        state: dict[str, Any] = daemon.client.get("/v1/index")
        run = state.get("last_run") or {}
        run_id = int(run.get("id") or 0)
        if state["running"] or run_id == since:
            still_since = None
        elif run_id != last_id or still_since is None:
            last_id, still_since = run_id, time.monotonic()
        elif time.monotonic() - still_since > 1.5:
            return run
        time.sleep(0.1)
    raise AssertionError(f"the watcher did not catch up:\n{daemon.output()[-4000:]}")


def last_id(daemon: DaemonProcess) -> int:
    run = daemon.client.get("/v1/index").get("last_run") or {}
    return int(run.get("id") or 0)


def git(vault: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(vault), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


def skipped(daemon: DaemonProcess) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for event in daemon.events("index.skipped"):
        assert event.get("reason"), event  # every skip says why
        out.setdefault(str(event["path"]), set()).add(str(event["reason"]))
    return out


@pytest.mark.heavy
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_index_survives_vault_chaos_and_matches_the_files_on_disk(
    start_daemon: Start, short_tmp: Path
) -> None:
    from benchmarks.reliability import Reference, compare, fingerprint, rewrite_while_read

    vault = short_tmp / "vault"
    shutil.copytree(EXAMPLE, vault)
    bulk = vault / "bulk"
    bulk.mkdir()
    for number in range(BULK):
        (bulk / f"n{number:03d}.md").write_text(
            f"# Bulk {number}\n\nNote {number} links [[Espresso]] #bulk\n", encoding="utf-8"
        )
    config = base_config(
        short_tmp,
        vaults=[{"name": "v", "path": str(vault)}],
        embedding={"quantize": "int8"},
        indexing={"on_start": True, "watch": True, "debounce": "200ms"},
    )
    daemon = start_daemon(config)
    since = quiet(daemon, 0)["id"]
    rng = random.Random(16)

    def step(action: Callable[[], None]) -> None:
        nonlocal since
        action()
        since = quiet(daemon, since)["id"]

    def burst() -> None:  # 200 edits as fast as they can be written
        for edit in range(200):
            note = bulk / f"n{rng.randrange(BULK):03d}.md"
            note.write_text(f"# Bulk\n\nEdit {edit} of {note.name}\n", encoding="utf-8")

    step(burst)
    aside = short_tmp / "bulk-aside"
    step(lambda: os.rename(bulk, aside))  # mass delete of a folder
    step(lambda: os.rename(aside, bulk))  # ... and restore
    step(lambda: os.rename(bulk, vault / "renamed"))  # a folder of many notes renamed
    # Files that change while being read: rewritten in two writes, swapped for a FIFO
    # and back, grown past the limit and cut back, for 2 s under the watcher's runs.
    step(lambda: rewrite_while_read(vault / "renamed", 2.0, rng))

    def atomic_save() -> None:  # an editor's save: a temp file renamed over the note
        temp = vault / ".Espresso.md.swp"
        temp.write_text("# Espresso\n\nSaved atomically: crema.\n", encoding="utf-8")
        os.replace(temp, vault / "Espresso.md")

    step(atomic_save)

    def checkout() -> None:  # another branch of the vault, checked out under the watcher
        git(vault, "init", "-q", "-b", "main")
        git(vault, "add", "-A")
        git(vault, "commit", "-q", "-m", "main")
        git(vault, "checkout", "-q", "-b", "other")
        shutil.rmtree(vault / "renamed")
        (vault / "branch-only.md").write_text("# Branch\n\nOnly on the other branch.\n")
        git(vault, "add", "-A")
        git(vault, "commit", "-q", "-m", "other")
        git(vault, "checkout", "-q", "main")
        git(vault, "checkout", "-q", "other")

    step(checkout)

    def note_to_folder() -> None:
        (vault / "turned.md").write_text("# Turned\n\nA note, for now.\n")
        time.sleep(0.5)
        (vault / "turned.md").unlink()
        (vault / "turned.md").mkdir()
        (vault / "turned.md" / "inside.md").write_text("# Inside\n\nIn a folder named .md\n")

    step(note_to_folder)

    def bad_files() -> None:
        os.mkfifo(vault / "fifo.md")  # never a note; reading it would block
        os.symlink("nowhere.md", vault / "dangling.md")
        os.symlink("self.md", vault / "self.md")
        os.symlink("pong.md", vault / "ping.md")
        os.symlink("ping.md", vault / "pong.md")
        os.symlink(".", vault / "loop")  # a folder symlink to its own folder
        with (vault / "huge.md").open("wb") as file:  # 50 MB, over max_file_bytes (5 MB)
            file.truncate(50_000_000)
        (vault / "binary.md").write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
        (vault / "latin1.md").write_bytes("# Caf\xe9\n\nna\xefve\n".encode("latin-1"))
        (vault / "empty.md").write_bytes(b"")
        (vault / "yaml.md").write_text("---\ntitle: [unclosed\n: : :\n---\n# Yaml\n\nBody.\n")
        nested = "".join("  " * depth + f"- level {depth}\n" for depth in range(400))
        (vault / "nested.md").write_text("# Nested\n\n" + nested)

    step(bad_files)

    # The vault folder disappears (an unmounted drive) and comes back.
    gone = short_tmp / "vault-gone"
    before = last_id(daemon)
    os.rename(vault, gone)
    time.sleep(2.0)
    assert daemon.process.poll() is None
    # It comes back as a new folder (a remounted drive: new inodes, so the old
    # inotify watches are gone); `cp -a` copies the FIFO and the symlinks as they are.
    subprocess.run(["cp", "-a", str(gone), str(vault)], check=True)
    shutil.rmtree(gone)
    since = quiet(daemon, before)["id"]
    # Watching again: a new note after the return is indexed without being asked.
    (vault / "back.md").write_text("# Back\n\nThe drive came back with a zucchini.\n")
    since = quiet(daemon, since)["id"]
    hits = daemon.client.get("/v1/search", q="zucchini", mode="keyword")["results"]
    assert [hit["path"] for hit in hits] == ["back.md"], daemon.output()[-3000:]

    assert daemon.client.get("/v1/status")["state"] == "running"
    reasons = skipped(daemon)
    assert "too_large" in reasons["huge.md"]
    assert "binary" in reasons["binary.md"]
    assert "not_utf8" in reasons["latin1.md"]
    assert "symlink_broken" in reasons["dangling.md"]
    assert "symlink_broken" in reasons["self.md"]
    assert "symlink_broken" in reasons["ping.md"]
    assert "not_a_file" in reasons["fifo.md"]
    assert daemon.stop() == 0

    (short_tmp / "ref").mkdir()
    reference = Reference(short_tmp / "ref", daemon.config)
    try:
        reference.index()
        want = reference.fingerprint()
    finally:
        reference.close()
    got = fingerprint(Path(config["storage"]["database"]))
    differences = compare(got, want)
    assert differences == dict.fromkeys(differences, 0), differences
    paths = {path for _vault, path in got["by_note"]}
    assert "branch-only.md" in paths and "turned.md/inside.md" in paths
    assert not any(path.startswith(("renamed/", "bulk/")) for path in paths)
    assert {"empty.md", "yaml.md", "nested.md", "back.md"} <= paths
