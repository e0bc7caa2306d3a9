"""Links resolved incrementally (only those edits can change) equal a whole resolution.

Real notes through the real parser: the example vault, and the Obsidian help
vault when `../shared/data/obsidian-help` is there. A seeded random sequence
of edits (links added and removed, notes created under names links wait for,
renamed within and across folders, deleted, aliases changed), an incremental
finalize after every few, and after each the stored targets of every link are
compared with what `LinkResolver` over the whole vault says.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from fixtures_store import DIMENSION, storage_config

from jarvisd.indexing.links import LinkResolver
from jarvisd.indexing.markdown import parse_note
from jarvisd.store import Store

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "jarvisd" / "example_vault"
HELP = REPO.parent / "shared" / "data" / "obsidian-help"


def _write(store: Store, path: str, text: str, stamp: int) -> None:
    note = parse_note(path, text.encode("utf-8"))
    vectors = np.full((len(note.chunks), DIMENSION), 0.05, np.float32)
    store.write_note("v", note, vectors, len(text), stamp)


def _stored(store: Store) -> dict[tuple[str, str], str | None]:
    rows = (
        store.reader()
        .execute(
            "SELECT DISTINCT n.path, l.key, t.path FROM links l JOIN notes n ON n.id = l.note_id "
            "LEFT JOIN notes t ON t.id = l.target_note_id WHERE l.targets_note"
        )
        .fetchall()
    )
    return {
        (str(source), str(key)): None if target is None else str(target)
        for source, key, target in rows
    }


def _whole(store: Store) -> dict[tuple[str, str], str | None]:
    resolver = LinkResolver.from_notes(store.note_paths_and_aliases("v"))
    return {
        (pair.source_path, pair.key): resolver.resolve(pair.key, pair.source_path)
        for pair in store.link_keys("v")
    }


def _edit(store: Store, rng: random.Random, texts: dict[str, str], step: int) -> str:
    paths = sorted(texts)
    names = [path.rsplit("/", 1)[-1].removesuffix(".md") for path in paths]
    waiting = [key for (_, key), target in _stored(store).items() if target is None]
    kind = rng.choice(["link", "unlink", "create", "rename", "move", "delete", "alias"])
    if kind == "link":
        path = rng.choice(paths)
        target = rng.choice([*names, *(waiting or ["Nowhere"]), "Future note", "sub/Deep"])
        texts[path] += f"\n\nSee [[{target}]] and [{target}]({target.replace(' ', '%20')}.md).\n"
        _write(store, path, texts[path], step)
    elif kind == "unlink":
        path = rng.choice(paths)
        texts[path] = texts[path].replace("[[", "[", 3)
        _write(store, path, texts[path], step)
    elif kind == "create":
        name = rng.choice([*(waiting or []), "Future note", "Deep", *names])
        folder = rng.choice(["", "sub/", "Coffee/", "new/nested/"])
        path = f"{folder}{name.rsplit('/', 1)[-1]}.md"
        if path in texts:
            return "create (exists)"
        texts[path] = f"# {name}\n\nLinks to [[{rng.choice(names)}]].\n"
        _write(store, path, texts[path], step)
    elif kind in ("rename", "move"):
        old = rng.choice(paths)
        base = old.rsplit("/", 1)[-1]
        new = f"moved/{base}" if kind == "move" else old.replace(base, f"Renamed {step}.md")
        if new in texts:
            return "rename (exists)"
        assert store.rename_note("v", old, new, len(texts[old]), step)
        texts[new] = texts.pop(old)
    elif kind == "delete":
        path = rng.choice(paths)
        assert store.delete_note("v", path)
        del texts[path]
    else:
        path = rng.choice(paths)
        alias = rng.choice([*names, *(waiting or ["Nowhere"]), "Another name"])
        body = texts[path].split("---\n", 2)[-1] if texts[path].startswith("---\n") else texts[path]
        texts[path] = f"---\naliases: [{alias!r}]\n---\n{body}"
        _write(store, path, texts[path], step)
    return kind


def _check_vault(root: Path, tmp_path: Path, steps: int, seed: int) -> int:
    texts = {
        path.relative_to(root).as_posix(): path.read_text(encoding="utf-8", errors="replace")
        for path in sorted(root.rglob("*.md"))
        if not any(part.startswith(".") for part in path.relative_to(root).parts)
    }
    store = Store(tmp_path / "links.duckdb", storage_config())
    try:
        for stamp, (path, text) in enumerate(texts.items()):
            _write(store, path, text, stamp)
        store.finalize(["v"], force=True)
        counts = store.stats()
        resolved = counts["note_links"] - counts["unresolved_links"]
        assert _stored(store) == _whole(store)
        rng = random.Random(seed)
        kinds = []
        for step in range(1, steps + 1):
            kinds.append(_edit(store, rng, texts, 10_000 + step))
            if step % 3 == 0:
                store.finalize(["v"])  # incremental: no whole resolution
                assert _stored(store) == _whole(store), kinds[-3:]
        assert {"link", "create", "rename", "move", "delete", "alias"} <= set(kinds)
        return resolved
    finally:
        store.close()


def test_incremental_links_equal_whole_resolution_on_the_example_vault(tmp_path: Path) -> None:
    assert _check_vault(EXAMPLE, tmp_path, steps=60, seed=10) > 0


@pytest.mark.skipif(not HELP.is_dir(), reason=f"the Obsidian help vault is not at {HELP}")
def test_incremental_links_equal_whole_resolution_on_the_help_vault(tmp_path: Path) -> None:
    # The help vault's resolved links, as a whole resolution (Obsidian's rules) finds them.
    assert _check_vault(HELP, tmp_path, steps=45, seed=11) == 1408


def test_a_note_created_under_a_waited_for_name_resolves_without_a_whole_pass(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "links.duckdb", storage_config())
    try:
        _write(store, "a/Source.md", "# Source\n\n[[Later]] and [[b/Later]]\n", 1)
        store.finalize(["v"], force=True)
        assert set(_stored(store).values()) == {None}
        _write(store, "b/Later.md", "# Later\n", 2)
        steps = dict(store.finalize(["v"]))
        assert "links:v" in steps
        assert set(_stored(store).values()) == {"b/Later.md"}
        assert store.rename_note("v", "b/Later.md", "c/Later.md", 1, 3)
        store.finalize(["v"])
        assert _stored(store) == {
            ("a/Source.md", "later"): "c/Later.md",
            ("a/Source.md", "b/later"): None,
        }
    finally:
        store.close()
