"""Parsing one note: decoding, frontmatter, tags, links, headings and chunks."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import textwrap

import pytest

from jarvisd.config import example_vault_path
from jarvisd.indexing.markdown import NoteError, estimate_tokens, link_key, parse_note
from jarvisd.indexing.parsed import Chunk, Link, ParsedNote


def note(text: str, path: str = "Folder/Note.md") -> ParsedNote:
    return parse_note(path, textwrap.dedent(text).encode("utf-8"))


def words(text: str) -> int:
    """A predictable token counter for chunking tests: one token per word."""
    return len(text.split())


def targets(parsed: ParsedNote) -> list[str]:
    return [link.target for link in parsed.links]


# ----------------------------------------------------------------------- decoding


def test_content_hash_is_the_sha256_of_the_raw_bytes() -> None:
    raw = b"# Title\r\n\r\nSome text.\r\n"
    assert parse_note("a.md", raw).content_hash == hashlib.sha256(raw).hexdigest()


def test_a_byte_order_mark_and_crlf_line_ends_are_fine() -> None:
    raw = "\ufeff---\r\ntags: [x]\r\n---\r\n# Head\r\nText #inline\r\n".encode()
    parsed = parse_note("a.md", raw)
    assert parsed.tags == ("x", "inline")
    assert parsed.headings[0].text == "Head"
    assert parsed.headings[0].line == 4
    assert "\r" not in parsed.chunks[0].text


def test_old_mac_line_ends_count_as_lines() -> None:
    parsed = parse_note("a.md", b"# One\rtext\r## Two\rmore\r")
    assert [(heading.text, heading.line) for heading in parsed.headings] == [("One", 1), ("Two", 3)]


@pytest.mark.parametrize(
    "raw",
    [
        b"PK\x03\x04\x00\x00binary zip header",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        bytes(range(1, 9)) * 200,  # control bytes but no NUL
    ],
)
def test_binary_files_are_refused_as_binary(raw: bytes) -> None:
    with pytest.raises(NoteError) as caught:
        parse_note("image.md", raw)
    assert caught.value.reason == "binary"
    assert "image.md" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_non_utf8_text_is_refused_with_the_byte_offset_and_line() -> None:
    raw = b"first line\ncaf" + "é and more".encode("latin-1")
    with pytest.raises(NoteError) as caught:
        parse_note("Notes/latin.md", raw)
    assert caught.value.reason == "not_utf8"
    assert "byte 14" in str(caught.value)
    assert "line 2" in str(caught.value)
    assert "Notes/latin.md" in str(caught.value)


def test_the_byte_offset_counts_the_bom() -> None:
    with pytest.raises(NoteError) as caught:
        parse_note("a.md", b"\xef\xbb\xbfab\xff")
    assert "byte 5" in str(caught.value)


# ------------------------------------------------------------------------- titles


def test_title_is_the_file_name_not_the_first_heading() -> None:
    parsed = note("# Something else\n\nText.\n", path="Deep/Folder/Obsidian 1.0 release.MD")
    assert parsed.title == "Obsidian 1.0 release"


def test_frontmatter_title_wins() -> None:
    parsed = note("---\ntitle: A Better Title\n---\nText.\n")
    assert parsed.title == "A Better Title"


def test_a_blank_or_non_string_frontmatter_title_is_ignored() -> None:
    assert note("---\ntitle: ''\n---\nText.\n").title == "Note"
    assert note("---\ntitle: [a, b]\n---\nText.\n").title == "Note"


# -------------------------------------------------------------------- frontmatter


def test_frontmatter_is_json_serialisable_with_dates_as_iso_strings() -> None:
    parsed = note(
        """\
        ---
        created: 2024-03-12
        updated: 2024-03-12T08:30:00
        rating: 4.5
        done: false
        nested: {when: 2023-01-01, list: [1, 2]}
        2024-01-01: a date as a key
        weird: .nan
        ---
        Body.
        """
    )
    assert parsed.frontmatter["created"] == "2024-03-12"
    assert parsed.frontmatter["updated"] == "2024-03-12T08:30:00"
    assert parsed.frontmatter["nested"] == {"when": "2023-01-01", "list": [1, 2]}
    assert parsed.frontmatter["2024-01-01"] == "a date as a key"
    assert parsed.frontmatter["weird"] == "nan"
    json.dumps(parsed.frontmatter, allow_nan=False)
    assert parsed.warnings == ()


@pytest.mark.parametrize(
    ("frontmatter", "expected"),
    [
        ("tags: [Recipe, '#cooking/Bread']", ("recipe", "cooking/bread")),
        ("tags:\n  - one\n  - '#two'", ("one", "two")),
        ("tags: 'one, two #three'", ("one", "two", "three")),
        ("tags: one #a YAML comment, not a tag", ("one",)),
        ("tag: single", ("single",)),
        ("Tags: [Capital-Key]", ("capital-key",)),
        ("tags: [dup, DUP, dup]", ("dup",)),
    ],
)
def test_frontmatter_tags(frontmatter: str, expected: tuple[str, ...]) -> None:
    assert note(f"---\n{frontmatter}\n---\nBody.\n").tags == expected


def test_an_invalid_frontmatter_tag_is_dropped_with_a_warning() -> None:
    parsed = note("---\ntags: [1984, ok]\n---\nBody.\n")
    assert parsed.tags == ("ok",)
    assert any("1984" in warning for warning in parsed.warnings)


def test_frontmatter_and_inline_tags_merge_without_duplicates() -> None:
    parsed = note("---\ntags: [coffee]\n---\nA #Coffee note about #espresso.\n")
    assert parsed.tags == ("coffee", "espresso")


@pytest.mark.parametrize(
    ("frontmatter", "expected"),
    [
        ("aliases: [One, Two]", ("One", "Two")),
        ("aliases:\n  - 'Thinking, Fast and Slow'", ("Thinking, Fast and Slow",)),
        ("aliases: One, Two", ("One", "Two")),
        ("alias: Solo", ("Solo",)),
        ("aliases: [Dup, Dup]", ("Dup",)),
        ("aliases:", ()),
    ],
)
def test_frontmatter_aliases(frontmatter: str, expected: tuple[str, ...]) -> None:
    assert note(f"---\n{frontmatter}\n---\nBody.\n").aliases == expected


def test_malformed_frontmatter_keeps_the_body_and_says_where() -> None:
    parsed = note(
        """\
        ---
        title: ok
        tags: [unclosed
        ---
        # Heading

        See [[Other]] and #inline.
        """
    )
    assert parsed.frontmatter == {}
    assert parsed.title == "Note"
    assert parsed.tags == ("inline",)
    assert targets(parsed) == ["Other"]
    assert len(parsed.warnings) == 1
    assert "not valid YAML" in parsed.warnings[0]
    assert "line" in parsed.warnings[0]
    assert all("unclosed" not in chunk.text for chunk in parsed.chunks)


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("- a list\n- not a mapping", "not a mapping"),
        ("when: 2024-13-45", "could not be read"),
        (
            "a: &a [*a, *a]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: &d [*c, *c]\n"
            "e: &e [*d, *d]\nf: &f [*e, *e]\ng: &g [*f, *f]\nh: [*g, *g, *g, *g]",
            "too large",
        ),
    ],
)
def test_unusable_frontmatter_is_ignored_with_a_warning(yaml_text: str, fragment: str) -> None:
    parsed = note(f"---\n{yaml_text}\n---\nBody text.\n")
    assert parsed.frontmatter == {}
    assert any(fragment in warning for warning in parsed.warnings), parsed.warnings
    assert parsed.chunks[0].text == "Body text."


def test_unclosed_frontmatter_is_read_as_body_with_a_warning() -> None:
    parsed = note("---\ntags: [x]\nno closing line\n")
    assert parsed.frontmatter == {}
    assert "no closing" in parsed.warnings[0]


def test_frontmatter_never_reaches_chunks_and_line_numbers_count_it() -> None:
    parsed = note("---\nsecret: frontmatter value\ntags: [a]\n---\nFirst body line.\n")
    assert len(parsed.chunks) == 1
    assert "frontmatter value" not in parsed.chunks[0].text
    assert "frontmatter value" not in parsed.chunks[0].embed_text
    assert parsed.chunks[0].start_line == 5


def test_a_dashed_rule_later_in_the_note_is_not_frontmatter() -> None:
    parsed = note("Intro.\n\n---\ntags: [x]\n---\n")
    assert parsed.frontmatter == {}
    assert parsed.tags == ()


# -------------------------------------------------------------------------- tags


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("plain #tag here", ["tag"]),
        ("#StartOfLine", ["startofline"]),
        ("nested #Inbox/To-Read and #a_b", ["inbox/to-read", "a_b"]),
        ("ends a sentence #tag. Then #other, and (#paren)", ["tag", "other"]),
        ("unicode #café and emoji #🍞bread", ["café", "🍞bread"]),
        ("numbers #1984 are not tags but #y1984 and #2024-05 are", ["y1984", "2024-05"]),
        ("not glued: word#tag, url http://x.org/#anchor, entity &#123;", []),
        ("inline `#code` is not a tag", []),
        ("link [[Note#Heading]] and [text](#anchor) hold no tags", []),
        ("a lone # or ## is not a tag", []),
    ],
)
def test_inline_tags(line: str, expected: list[str]) -> None:
    assert list(note(line + "\n").tags) == expected


def test_headings_are_not_tags_but_tags_in_headings_are() -> None:
    parsed = note("# Title\n## Sub #important\n####### seven hashes\n")
    assert parsed.tags == ("important",)
    assert [heading.text for heading in parsed.headings] == ["Title", "Sub #important"]


def test_nothing_inside_fenced_code_counts() -> None:
    parsed = note(
        """\
        ```python
        # a comment, not a heading
        x = "#notatag [[notalink]] [md](notmd.md)"
        ```

        ~~~~
        ```
        still code #nope
        ~~~~

        > ```md
        > [[quoted code]] #quoted
        > ```

        After #real [[Real]].
        """
    )
    assert parsed.tags == ("real",)
    assert targets(parsed) == ["Real"]
    assert parsed.headings == ()


def test_an_unclosed_fence_runs_to_the_end_of_the_note() -> None:
    parsed = note("Before #yes\n\n```\ncode #no [[No]]\n")
    assert parsed.tags == ("yes",)
    assert parsed.links == ()
    assert parsed.chunks[-1].text.endswith("```")


# ------------------------------------------------------------------------- links


def test_wikilink_forms() -> None:
    parsed = note(
        """\
        [[Plain]] [[Aliased|shown text]] [[Headed#Section]] [[Both#Section|text]]
        ![[Embedded note]] ![[diagram.png|300]] [[Blocked^abc-1]] [[Blocked2#^para]]
        [[#Same note heading]] [[Folder/Sub/Deep note.md]]
        | [[Table\\|escaped]] | cell |
        """
    )
    got = [(link.target, link.kind, link.heading, link.alias) for link in parsed.links]
    assert got == [
        ("Plain", "wikilink", None, None),
        ("Aliased", "wikilink", None, "shown text"),
        ("Headed", "wikilink", "Section", None),
        ("Both", "wikilink", "Section", "text"),
        ("Embedded note", "embed", None, None),
        ("diagram.png", "embed", None, "300"),
        ("Blocked", "wikilink", None, None),
        ("Blocked2", "wikilink", None, None),
        ("Folder/Sub/Deep note.md", "wikilink", None, None),
        ("Table", "wikilink", None, "escaped"),
    ]
    assert [link.line for link in parsed.links] == [1, 1, 1, 1, 2, 2, 2, 2, 3, 4]
    assert parsed.links[8].key == "folder/sub/deep note"


def test_relative_wikilinks_are_normalised_against_the_note_folder() -> None:
    parsed = note("[[../Other]] [[./Sibling|s]] [[../../../Outside]]\n", path="A/B/Note.md")
    assert targets(parsed) == ["A/Other", "A/B/Sibling"]


def test_markdown_links() -> None:
    parsed = note(
        """\
        [up](../Other.md) [spaced](other%20note.md#Some%20Heading) [angle](<With Space.md>)
        [root](/Top/Level.md) [titled](Plain.md "a title") [bare](No%20Extension)
        ![image](pics/photo.jpg) [pdf](files/paper.pdf)
        [web](https://example.com/a.md) [mail](mailto:me@example.com) [app](obsidian://open?x)
        [anchor](#local) [escape](../../../etc/passwd.md) [proto](//cdn.example.com/x.md)
        """,
        path="Notes/Sub/Note.md",
    )
    got = [(link.target, link.heading, link.alias, link.kind) for link in parsed.links]
    assert got == [
        ("Notes/Other.md", None, "up", "markdown"),
        ("Notes/Sub/other note.md", "Some Heading", "spaced", "markdown"),
        ("Notes/Sub/With Space.md", None, "angle", "markdown"),
        ("Top/Level.md", None, "root", "markdown"),
        ("Notes/Sub/Plain.md", None, "titled", "markdown"),
        ("Notes/Sub/No Extension", None, "bare", "markdown"),
        ("Notes/Sub/pics/photo.jpg", None, "image", "markdown"),
        ("Notes/Sub/files/paper.pdf", None, "pdf", "markdown"),
    ]
    assert [link.targets_note for link in parsed.links] == [True] * 6 + [False] * 2
    assert parsed.links[1].key == "notes/sub/other note"


def test_links_inside_inline_code_do_not_count() -> None:
    parsed = note("Type `[[Not a link]]` or ``[md](x.md)`` but [[Yes]].\n")
    assert targets(parsed) == ["Yes"]


@pytest.mark.parametrize(
    ("target", "key"),
    [
        ("Some Note", "some note"),
        ("Some Note.md", "some note"),
        ("Folder/Note.MD", "folder/note"),
        ("  Folder\\\\Sub//Note  ", "folder/sub/note"),
        ("./Folder/ Note ", "folder/note"),
        ("Many   spaces\there", "many spaces here"),
        ("Obsidian 1.0 release", "obsidian 1.0 release"),
        ("Cafe\u0301", "café"),
        ("image.PNG", "image.png"),
    ],
)
def test_link_key(target: str, key: str) -> None:
    assert link_key(target) == key
    assert link_key(key) == key


@pytest.mark.parametrize(
    ("target", "is_note"),
    [
        ("Note", True),
        ("Note.md", True),
        ("Obsidian 1.0 release", True),
        ("Mr. Smith", True),
        ("folder.with.dots/Note", True),
        ("image.PNG", False),
        ("file.pdf", False),
        ("Board.canvas", False),
        ("Books.base", False),
        ("song.mp3", False),
        ("clip.mp4", False),
        (".png", True),
    ],
)
def test_targets_note(target: str, is_note: bool) -> None:
    assert Link(target=target, key=link_key(target), kind="wikilink").targets_note is is_note


# ---------------------------------------------------------------------- headings


def test_atx_headings_with_levels_and_lines() -> None:
    parsed = note(
        """\
        # One
        text
        ## Two ##
        ###   Three with spaces
           #### Indented three spaces
            ##### Indented four is code-ish, not a heading
        ###### Six
        #NoSpace is a tag
        #
        """
    )
    got = [(heading.level, heading.text, heading.line) for heading in parsed.headings]
    assert got == [
        (1, "One", 1),
        (2, "Two", 3),
        (3, "Three with spaces", 4),
        (4, "Indented three spaces", 5),
        (6, "Six", 7),
    ]


# ------------------------------------------------------------------------ chunks


def test_chunks_follow_sections_and_carry_the_heading_path() -> None:
    parsed = note(
        """\
        Preamble text.

        # Main
        Main text.
        ## Sub A
        A text.
        ### Deeper
        Deep text.
        ## Sub B
        B text.
        # Other
        ## Empty
        ## Filled
        Filled text.
        """,
        path="Topic.md",
    )
    got = [(chunk.heading_path, chunk.text, chunk.start_line) for chunk in parsed.chunks]
    assert got == [
        ((), "Preamble text.", 1),
        (("Main",), "Main text.", 4),
        (("Main", "Sub A"), "A text.", 6),
        (("Main", "Sub A", "Deeper"), "Deep text.", 8),
        (("Main", "Sub B"), "B text.", 10),
        (("Other", "Filled"), "Filled text.", 14),
    ]
    assert [chunk.ordinal for chunk in parsed.chunks] == list(range(6))
    assert parsed.chunks[0].embed_text == "Topic\nPreamble text."
    assert parsed.chunks[3].embed_text == "Topic > Main > Sub A > Deeper\nDeep text."


def test_a_first_heading_repeating_the_title_is_not_repeated_in_embed_text() -> None:
    parsed = note("# Espresso\n## Recipe\n18 g in, 36 g out.\n", path="Coffee/Espresso.md")
    assert parsed.chunks[0].embed_text == "Espresso > Recipe\n18 g in, 36 g out."
    assert parsed.chunks[0].heading_path == ("Espresso", "Recipe")


def test_long_sections_split_with_overlap_and_stay_within_the_limit() -> None:
    sentences = [f"Sentence number {index} talks about espresso and bread." for index in range(60)]
    body = "# Long\n\n" + " ".join(sentences[:30]) + "\n\n" + " ".join(sentences[30:]) + "\n"
    parsed = parse_note(
        "Long.md", body.encode(), chunk_tokens=60, chunk_overlap=10, count_tokens=words
    )
    chunks = parsed.chunks
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.token_count <= 60
        assert chunk.heading_path == ("Long",)
    for before, after in itertools.pairwise(chunks):
        last_sentence = re.split(r"(?<=\.)\s+", before.text)[-1]
        assert last_sentence in after.text, "consecutive chunks share their boundary sentence"
    every_sentence = " ".join(chunk.text for chunk in chunks)
    assert all(sentence.rstrip(".") in every_sentence for sentence in sentences)


def test_a_single_giant_sentence_is_split_by_words() -> None:
    body = "# Giant\n" + " ".join(f"word{index}" for index in range(500)) + "\n"
    parsed = parse_note("G.md", body.encode(), chunk_tokens=50, chunk_overlap=5, count_tokens=words)
    assert len(parsed.chunks) >= 10
    assert all(chunk.token_count <= 50 for chunk in parsed.chunks)
    assert "word499" in parsed.chunks[-1].text


def test_zero_overlap_repeats_nothing() -> None:
    body = "# H\n" + " ".join(f"Sentence {index} here." for index in range(40)) + "\n"
    parsed = parse_note("O.md", body.encode(), chunk_tokens=30, chunk_overlap=0, count_tokens=words)
    joined = " ".join(chunk.text for chunk in parsed.chunks)
    assert joined.count("Sentence 7 here.") == 1


def test_invalid_chunk_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="chunk_overlap"):
        parse_note("a.md", b"x", chunk_tokens=10, chunk_overlap=10)


def test_chunk_text_shows_wikilinks_as_their_display_text() -> None:
    parsed = note("See [[Espresso|my shots]], [[Beans#Storage]], [[Plain]] and `[[code]]`. ^blk1\n")
    chunk = parsed.chunks[0]
    assert chunk.text == "See my shots, Beans > Storage, Plain and `[[code]]`."
    assert "^blk1" not in chunk.embed_text


def test_embed_text_drops_link_destinations() -> None:
    parsed = note("Read [the docs](https://example.com/very/long/url) and ![a cat](cat.png).\n")
    assert parsed.chunks[0].text.startswith("Read [the docs](https://example.com")
    assert parsed.chunks[0].embed_text == "Note\nRead the docs and a cat."


def test_code_is_kept_in_text_but_abbreviated_in_embed_text() -> None:
    code = "\n".join(f"line_{index} = {index}" for index in range(30))
    parsed = note(f"# Script\nWhat it does.\n\n```python\n{code}\n```\n\nAfter the code.\n")
    (chunk,) = parsed.chunks
    assert "line_29 = 29" in chunk.text
    assert "line_3 = 3" in chunk.embed_text
    assert "line_4 = 4" not in chunk.embed_text
    assert "26 more lines of code" in chunk.embed_text
    assert chunk.embed_text.endswith("After the code.")


def test_a_long_code_block_splits_into_self_contained_fences() -> None:
    code = "\n".join(f"value_{index} = compute({index})" for index in range(120))
    body = f"# Code\n```python\n{code}\n```\n"
    parsed = parse_note("C.md", body.encode(), chunk_tokens=60, chunk_overlap=8, count_tokens=words)
    assert len(parsed.chunks) > 3
    for chunk in parsed.chunks:
        assert chunk.text.startswith("```python\n")
        assert chunk.text.endswith("\n```")
    assert parsed.chunks[0].start_line == 2
    assert parsed.chunks[-1].end_line == 123


def test_a_note_without_a_body_still_has_one_chunk_with_its_title() -> None:
    for raw in (b"", b"   \n\n", b"---\ntags: [x]\n---\n"):
        parsed = parse_note("Empty idea.md", raw)
        assert parsed.chunks == (Chunk(0, (), "Empty idea", "Empty idea", 2, 1, 1),)


def test_a_note_of_only_headings_is_findable_by_them() -> None:
    parsed = note("# Plan\n## Later\n", path="Outline.md")
    (chunk,) = parsed.chunks
    assert chunk.text == "Outline\nPlan\nLater"


def test_a_custom_token_counter_is_used() -> None:
    seen: list[str] = []

    def counter(text: str) -> int:
        seen.append(text)
        return len(text)

    parsed = parse_note("a.md", b"Some words here.\n", count_tokens=counter)
    assert seen
    assert parsed.chunks[0].token_count == len(parsed.chunks[0].embed_text)


def test_estimate_tokens_is_close_to_a_wordpiece_count() -> None:
    # all-MiniLM-L6-v2's tokenizer counts 12 tokens here (checked once, offline).
    assert 11 <= estimate_tokens("The quick brown fox jumps over the lazy dog, twice.") <= 15
    assert estimate_tokens("") == 0


# ------------------------------------------------------------------ example vault


def test_the_example_vault_parses_cleanly() -> None:
    root = example_vault_path()
    paths = sorted(root.rglob("*.md"))
    assert 12 <= len(paths) <= 15
    parsed = [parse_note(path.relative_to(root).as_posix(), path.read_bytes()) for path in paths]
    assert all(note.warnings == () for note in parsed)
    all_tags = {tag for note in parsed for tag in note.tags}
    assert {"coffee/espresso", "baking/sourdough", "reading"} <= all_tags
    assert "notatag" not in all_tags
    assert all(link.target != "notalink" for note in parsed for link in note.links)
    kinds = {link.kind for note in parsed for link in note.links}
    assert kinds == {"wikilink", "embed", "markdown"}
    assert any(note.frontmatter.get("date") == "2024-03-12" for note in parsed)
    json.dumps([note.frontmatter for note in parsed])
