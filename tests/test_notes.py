"""Reading one note: by path or title, links both ways, content from disk, the vault fence.

A real store over a small real vault in tmp (parsed by the real parser, no model).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from graph_fixtures import build_store, write_vault

from jarvisd.api.errors import from_domain
from jarvisd.config import Config, ThreadsConfig
from jarvisd.notes.service import BadNoteRequest, NoteNotFoundError, NotesService
from jarvisd.pools import Pools

NOTES = {
    "Home.md": "# Home\nSee [[Espresso]] and [[Pizza oven]] and ![[photo.png]].\n",
    "Coffee/Espresso.md": (
        "---\ntitle: Espresso at home\naliases: [Shots]\ntags: [coffee]\n---\n"
        "# Espresso\n## Recipe\n18 g in, 36 g out. #coffee/espresso\n"
    ),
    "Coffee/Beans.md": "# Beans\nFor [[Espresso]].\n",
    "Archive/Old/Beans.md": "# Old beans\n",
    "Shots.md": "# A note named like an alias\n",
}


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    return write_vault(tmp_path / "vault", NOTES)


@pytest.fixture
def notes(tmp_path: Path, vault: Path) -> Iterator[NotesService]:
    store = build_store(tmp_path / "jarvis.duckdb", {"main": vault})
    config = Config.model_validate({"vaults": [{"name": "main", "path": str(vault)}]})
    pools = Pools(ThreadsConfig())
    yield NotesService(lambda: config, store, pools)
    pools.shutdown()
    store.close()


async def test_a_note_by_path_has_metadata_links_both_ways_and_content(
    notes: NotesService,
) -> None:
    view = (await notes.read(notes.vault(None), "Coffee/Espresso.md")).as_dict()
    assert view["title"] == "Espresso at home"
    assert view["aliases"] == ("Shots",)
    assert view["tags"] == ("coffee", "coffee/espresso")
    assert [(h["level"], h["text"]) for h in view["headings"]] == [(1, "Espresso"), (2, "Recipe")]
    assert view["frontmatter"]["tags"] == ["coffee"]
    assert {link["source_path"] for link in view["backlinks"]} == {"Home.md", "Coffee/Beans.md"}
    assert view["content"] == NOTES["Coffee/Espresso.md"]
    assert view["content_error"] is None


async def test_outgoing_links_say_whether_they_resolve(notes: NotesService) -> None:
    view = (await notes.read(notes.vault("main"), "Home.md")).as_dict()
    links = {link["target"]: link for link in view["links"]}
    assert links["Espresso"]["resolved_path"] == "Coffee/Espresso.md"
    assert links["Pizza oven"]["resolved_path"] is None and links["Pizza oven"]["targets_note"]
    assert links["photo.png"]["targets_note"] is False


@pytest.mark.parametrize("path", ["Coffee/Espresso", "./Coffee/Espresso.md", "Coffee//Espresso.md"])
async def test_equivalent_paths_find_the_same_note(notes: NotesService, path: str) -> None:
    view = await notes.read(notes.vault(None), path)
    assert view.detail.path == "Coffee/Espresso.md"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside.md", "climbs out of the vault folder with '..'"),
        ("Coffee/../../outside.md", "climbs out of the vault folder"),
        ("/etc/passwd", "is an absolute path"),
        ("escape.md", "symlink that leads outside the vault"),
    ],
)
async def test_paths_that_leave_the_vault_are_refused(
    notes: NotesService, vault: Path, tmp_path: Path, path: str, message: str
) -> None:
    secret = tmp_path / "secret.md"
    secret.write_text("# not yours\n", encoding="utf-8")
    (vault / "escape.md").symlink_to(secret)
    with pytest.raises(BadNoteRequest, match=message) as caught:
        await notes.read(notes.vault(None), path)
    assert from_domain(caught.value).status == 400


async def test_unknown_notes_and_vaults_are_not_found(notes: NotesService) -> None:
    with pytest.raises(NoteNotFoundError, match=r"no note 'Nope\.md' in vault 'main'"):
        await notes.read(notes.vault(None), "Nope.md")
    with pytest.raises(NoteNotFoundError, match="no vault named 'other'; configured: main"):
        notes.vault("other")
    with pytest.raises(NoteNotFoundError, match="no note titled"):
        await notes.read_by_title(notes.vault(None), "nothing like it")


async def test_a_title_matches_case_insensitively_title_then_file_name_then_alias(
    notes: NotesService,
) -> None:
    by_title = await notes.read_by_title(notes.vault(None), "ESPRESSO AT HOME")
    assert by_title.detail.path == "Coffee/Espresso.md"
    assert by_title.match is not None and by_title.match["matched_by"] == "title"
    assert by_title.match["ambiguous"] is False
    # "Shots" is Espresso's alias and Shots.md's title (from its file name): titles win.
    shots = await notes.read_by_title(notes.vault(None), "shots")
    assert shots.detail.path == "Shots.md"
    assert shots.match is not None and shots.match["matched_by"] == "title"
    named = await notes.read_by_title(notes.vault(None), "espresso")
    assert named.detail.path == "Coffee/Espresso.md"
    assert named.match is not None and named.match["matched_by"] == "file name"
    assert shots.match["candidates"] == ["Shots.md", "Coffee/Espresso.md"]


async def test_an_ambiguous_title_picks_the_shortest_path_and_says_so(
    notes: NotesService,
) -> None:
    view = await notes.read_by_title(notes.vault(None), "beans")
    assert view.detail.path == "Coffee/Beans.md"
    assert view.match is not None
    assert view.match["ambiguous"] is True
    assert view.match["candidates"] == ["Coffee/Beans.md", "Archive/Old/Beans.md"]
    assert "2 notes match 'beans'; showing Coffee/Beans.md" in view.match["message"]


async def test_a_note_deleted_since_indexing_keeps_its_metadata(
    notes: NotesService, vault: Path
) -> None:
    (vault / "Coffee" / "Beans.md").unlink()
    view = await notes.read(notes.vault(None), "Coffee/Beans.md")
    assert view.content is None
    assert view.content_error == "the file is gone since the last index run"
    assert view.detail.title == "Beans"


async def test_resolve_takes_a_path_or_else_a_title(notes: NotesService) -> None:
    vault = notes.vault(None)
    assert await notes.resolve(vault, "Coffee/Espresso.md") == "Coffee/Espresso.md"
    assert await notes.resolve(vault, "Coffee/Espresso") == "Coffee/Espresso.md"
    assert await notes.resolve(vault, "Espresso at home") == "Coffee/Espresso.md"
    with pytest.raises(BadNoteRequest):
        await notes.resolve(vault, "  ")


# ------------------------------------------------------------------ several vaults

WORK = {
    "Espresso.md": "# Espresso\nThe office machine.\n",
    "Projects/Only here.md": "# Only here\nLinks [[Espresso]].\n",
}


@pytest.fixture
def two_vaults(tmp_path: Path, vault: Path) -> Iterator[NotesService]:
    work = write_vault(tmp_path / "work", WORK)
    store = build_store(tmp_path / "two.duckdb", {"main": vault, "work": work})
    config = Config.model_validate(
        {"vaults": [{"name": "main", "path": str(vault)}, {"name": "work", "path": str(work)}]}
    )
    pools = Pools(ThreadsConfig())
    yield NotesService(lambda: config, store, pools)
    pools.shutdown()
    store.close()


async def test_with_no_vault_named_every_vault_is_looked_in(two_vaults: NotesService) -> None:
    # Only the second vault has it: the first one used to answer "not found".
    view = await two_vaults.lookup(None, "Only here", "title")
    assert view.vault == "work"
    assert view.detail.path == "Projects/Only here.md"
    assert view.match is not None and view.match["ambiguous"] is False
    by_path = await two_vaults.lookup(None, "Projects/Only here.md", "path")
    assert (by_path.vault, by_path.match) == ("work", None)
    assert by_path.as_dict()["vault"] == "work"


async def test_a_name_in_several_vaults_answers_with_every_candidate(
    two_vaults: NotesService,
) -> None:
    view = await two_vaults.lookup(None, "espresso", "title")
    # main's Espresso matches by file name, work's by title: the title wins.
    assert (view.vault, view.detail.path) == ("work", "Espresso.md")
    assert view.match is not None and view.match["ambiguous"] is True
    assert view.match["vaults"] == [
        {"vault": "main", "path": "Coffee/Espresso.md", "matched_by": "file name"},
        {"vault": "work", "path": "Espresso.md", "matched_by": "title"},
    ]
    assert "'espresso' is in 2 vaults (main, work)" in view.match["message"]
    assert "vault=" in view.match["message"]


async def test_naming_a_vault_looks_only_there(two_vaults: NotesService) -> None:
    view = await two_vaults.lookup("main", "espresso", "title")
    assert (view.vault, view.detail.path) == ("main", "Coffee/Espresso.md")
    assert view.match is not None and "vaults" not in view.match
    with pytest.raises(NoteNotFoundError, match="no note titled 'Only here' in vault 'main'"):
        await two_vaults.lookup("main", "Only here", "title")
    with pytest.raises(NoteNotFoundError, match="no vault named 'nosuch'; configured: main, work"):
        await two_vaults.lookup("nosuch", "espresso", "title")


async def test_a_note_in_no_vault_is_not_found_naming_every_vault(
    two_vaults: NotesService,
) -> None:
    with pytest.raises(NoteNotFoundError, match=r"no note 'Nope' in any vault \(main, work\)"):
        await two_vaults.lookup(None, "Nope", "title")
    with pytest.raises(BadNoteRequest):
        await two_vaults.lookup(None, "../outside.md", "path")


async def test_a_listing_pages_through_the_vault_in_path_order(notes: NotesService) -> None:
    vault = notes.vault(None)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await notes.list_notes(vault, cursor, 2)
        pages += 1
        assert page.total == len(NOTES) and len(page.notes) <= 2
        seen.extend(note.path for note in page.notes)
        if page.next_after is None:
            break
        cursor = page.next_after
    assert seen == sorted(NOTES) and pages == 3
    whole = await notes.list_notes(vault, None, len(NOTES))
    assert whole.next_after is None  # exactly one page: no empty page to ask for
    first = whole.notes[0].as_dict()
    assert first["path"] == "Archive/Old/Beans.md" and first["title"] == "Beans"
    assert set(first) == {"path", "title", "size", "modified"}


async def test_a_listing_refuses_limits_out_of_range_and_unknown_vaults(
    notes: NotesService,
) -> None:
    for limit in (0, -1, 1001):
        with pytest.raises(BadNoteRequest, match="limit must be between 1 and 1000") as caught:
            await notes.list_notes(notes.vault(None), None, limit)
        assert from_domain(caught.value).status == 400
    with pytest.raises(NoteNotFoundError, match="no vault named 'other'"):
        notes.vault("other")
    past_the_end = await notes.list_notes(notes.vault(None), "zzz", 10)
    assert past_the_end.notes == () and past_the_end.next_after is None
