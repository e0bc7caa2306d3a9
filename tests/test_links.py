"""Resolving links to notes, on small vaults, the example vault and the Obsidian help vault."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from jarvisd.config import example_vault_path
from jarvisd.indexing.links import LinkResolver
from jarvisd.indexing.markdown import link_key, parse_note
from jarvisd.indexing.parsed import ParsedNote

OBSIDIAN_HELP = Path(__file__).resolve().parents[2] / "shared" / "data" / "obsidian-help"

PATHS = [
    "Home.md",
    "Coffee/Espresso.md",
    "Coffee/Templates.md",
    "Plugins/Templates.md",
    "Archive/Old/Plugins/Templates.md",
    "Zeta/Dup.md",
    "Beta/Dup.md",
    "Projects/Obsidian 1.0 release.md",
    "Café.md",
]


def resolver(aliases: dict[str, list[str]] | None = None) -> LinkResolver:
    aliases = aliases or {}
    return LinkResolver.from_notes((path, aliases.get(path, [])) for path in PATHS)


def resolve(target: str, source: str | None = None) -> str | None:
    return resolver().resolve(link_key(target), source)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("Home", "Home.md"),
        ("home", "Home.md"),
        ("HOME.md", "Home.md"),
        ("Espresso", "Coffee/Espresso.md"),
        ("Coffee/Espresso", "Coffee/Espresso.md"),
        ("coffee/espresso.md", "Coffee/Espresso.md"),
        ("Obsidian 1.0 release", "Projects/Obsidian 1.0 release.md"),
        ("Cafe\u0301", "Café.md"),
        ("Missing", None),
        ("Coffee/Missing", None),
        ("Wrong/Espresso", None),
        ("", None),
    ],
)
def test_resolve_by_name_and_path(target: str, expected: str | None) -> None:
    assert resolve(target) == expected


def test_a_partial_path_matches_the_end_of_a_path() -> None:
    assert resolve("Plugins/Templates") == "Plugins/Templates.md"
    assert resolve("Old/Plugins/Templates") == "Archive/Old/Plugins/Templates.md"
    assert resolve("Archive/Old/Plugins/Templates") == "Archive/Old/Plugins/Templates.md"
    assert resolve("ugins/Templates") is None, "a suffix is whole folders, not characters"


def test_ambiguity_goes_to_the_shallowest_then_shortest_path_then_alphabetical() -> None:
    # fewest folders first, then fewest characters
    assert resolve("Templates") == "Coffee/Templates.md"
    assert (
        LinkResolver.from_notes([("A/B/Note.md", []), ("Long folder/Note.md", [])]).resolve("note")
        == "Long folder/Note.md"
    )
    assert resolve("Dup") == "Beta/Dup.md"


def test_ambiguity_prefers_the_linking_notes_own_folder() -> None:
    assert resolve("Templates", "Plugins/Core plugins.md") == "Plugins/Templates.md"
    assert resolve("Dup", "Zeta/Other.md") == "Zeta/Dup.md"
    assert resolve("Templates", "Elsewhere/Note.md") == "Coffee/Templates.md"


def test_aliases_resolve_after_file_names() -> None:
    aliased = resolver({"Coffee/Espresso.md": ["Shots", "Home"], "Beta/Dup.md": ["Shots"]})
    assert aliased.resolve(link_key("Shots")) == "Beta/Dup.md"
    assert aliased.resolve(link_key("Home")) == "Home.md", "a real file name beats an alias"


def test_a_markdown_link_written_from_the_vault_root_still_resolves() -> None:
    # `[x](Coffee/Espresso.md)` in `Projects/Plan.md` is parsed as Projects/Coffee/Espresso.md
    plan = parse_note("Projects/Plan.md", b"[x](Coffee/Espresso.md) [y](Espresso.md)\n")
    found = [resolver().resolve(link.key, plan.path) for link in plan.links]
    assert found == ["Coffee/Espresso.md", "Coffee/Espresso.md"]


def test_a_raw_target_is_normalised_when_it_misses() -> None:
    assert resolver().resolve("Coffee\\Espresso.MD") == "Coffee/Espresso.md"


def test_case_variants_of_one_path_keep_one_note() -> None:
    both = LinkResolver.from_notes([("b/Note.md", []), ("b/note.md", [])])
    assert len(both) == 1
    assert both.resolve("b/note") in {"b/Note.md", "b/note.md"}


def test_a_large_vault_resolves_every_link() -> None:
    paths = [f"Area {index % 50}/Topic {index // 50}/Note {index}.md" for index in range(20_000)]
    large = LinkResolver.from_notes((path, [f"alias {index}"]) for index, path in enumerate(paths))
    keys = [link_key(f"Note {index}") for index in range(0, 20_000, 7)]
    keys += [link_key(f"alias {index}") for index in range(0, 20_000, 11)]
    assert all(large.resolve(key) is not None for key in keys)
    assert large.resolve("topic 3/note 150") == "Area 0/Topic 3/Note 150.md"


# ------------------------------------------------------------------ whole vaults


def parse_vault(root: Path) -> list[ParsedNote]:
    return [
        parse_note(path.relative_to(root).as_posix(), path.read_bytes())
        for path in sorted(root.rglob("*.md"))
    ]


def test_the_example_vault_has_exactly_one_unresolved_link() -> None:
    notes = parse_vault(example_vault_path())
    vault = LinkResolver.from_notes((note.path, note.aliases) for note in notes)
    unresolved = [
        (note.path, link.target)
        for note in notes
        for link in note.links
        if vault.resolve(link.key, note.path) is None
    ]
    assert unresolved == [("Baking/Focaccia.md", "Pizza oven")]


@pytest.mark.skipif(
    not OBSIDIAN_HELP.is_dir(),
    reason=f"the Obsidian help vault is not at {OBSIDIAN_HELP} (it lives in shared/data, "
    "beside the repository)",
)
def test_the_obsidian_help_vault_resolves_like_obsidian() -> None:
    notes = parse_vault(OBSIDIAN_HELP)
    vault = LinkResolver.from_notes((note.path, note.aliases) for note in notes)
    wikilinks = [link for note in notes for link in note.links if link.kind != "markdown"]
    note_links = [
        (note.path, link)
        for note in notes
        for link in note.links
        if link.kind != "markdown" and link.targets_note
    ]
    unresolved = sorted(
        {link.target for path, link in note_links if vault.resolve(link.key, path) is None}
    )
    resolved = sum(1 for path, link in note_links if vault.resolve(link.key, path) is not None)
    print(
        f"obsidian-help: {len(notes)} notes, {len(wikilinks)} wikilinks and embeds "
        f"(same-note [[#h]] links not counted), {len(note_links)} to notes, "
        f"{resolved} resolved, unresolved: {unresolved}"
    )
    assert len(notes) == 173
    assert resolved >= 1_400
    assert unresolved == ["Example"]  # the help's own placeholder
    # No warnings: every note's frontmatter is valid YAML.
    assert [note.path for note in notes if note.warnings] == []


# ------------------------------------------------------------ kept up to date


def _answers(resolver: LinkResolver, keys: list[str], sources: list[str]) -> list[str | None]:
    return [resolver.resolve(key, source) for key in keys for source in sources]


def test_a_resolver_updated_note_by_note_answers_like_one_built_afresh() -> None:
    # Notes come, go, move and change aliases, with case variants of one path and
    # names shared across folders; after each change every lookup is compared.
    rng = random.Random(7)
    names = ["Note", "note", "Dup", "Templates", "Home", "Deep"]
    folders = ["", "a/", "b/", "a/b/", "Archive/Old/"]
    held: dict[str, list[str]] = {}
    kept = LinkResolver.from_notes([])
    keys = sorted({link_key(f"{f}{n}") for f in folders for n in names} | {"shots", "other"})
    sources = ["Home.md", "a/x.md", "b/x.md", "a/b/x.md", "Elsewhere/x.md"]
    for _ in range(400):
        path = f"{rng.choice(folders)}{rng.choice(names)}.md"
        if path in held and rng.random() < 0.4:
            del held[path]
            kept.update(path, None)
        else:
            held[path] = rng.sample(["Shots", "Other", "Home", "Dup", "Deep"], rng.randrange(3))
            kept.update(path, held[path])
        fresh = LinkResolver.from_notes(sorted(held.items()))
        assert _answers(kept, keys, sources) == _answers(fresh, keys, sources)
        assert len(kept) == len(fresh)
    kept.update("never/there.md", None)  # nothing to forget: nothing changes
    assert _answers(kept, keys, sources) == _answers(fresh, keys, sources)
