"""Ask's pure parts: sentences and markers, requests, prompt packing, templates files, folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jarvisd.ask.errors import BadQuestion, ModelFolderError
from jarvisd.ask.extractive import NOTHING, extractive_answer
from jarvisd.ask.folder import inspect_folder
from jarvisd.ask.prompt import SYSTEM_PROMPT, build_prompt
from jarvisd.ask.request import parse_ask
from jarvisd.ask.sentences import sentence_table, split
from jarvisd.ask.templates import BUILTIN, TemplateFileError, load_templates
from jarvisd.config import AskConfig, ConfigError, parse_config
from jarvisd.search.passages import Passage

REPO = Path(__file__).resolve().parents[1]


def passage(text: str, title: str = "Espresso", heading: tuple[str, ...] = ("Recipe",)) -> Passage:
    return Passage("v", f"{title}.md", title, heading, (1, text.count("\n") + 1), text, 1.0)


def words(text: str) -> int:
    return len(text.split())


# ------------------------------------------------------------------------ sentences


def test_split_reads_markers_and_keeps_them_with_their_sentence() -> None:
    text = (
        "Pull the shot for 28 seconds [1]. Use 18 g of coffee. [2] Rest beans e.g. a week [1, 3]."
    )
    sentences = split(text)
    assert [s.text for s in sentences] == [
        "Pull the shot for 28 seconds.",
        "Use 18 g of coffee.",
        "Rest beans e.g. a week.",
    ]
    assert [s.markers for s in sentences] == [(1,), (2,), (1, 3)]


def test_split_strips_markdown_and_keeps_list_lines() -> None:
    text = (
        "## Recipe\n- **Dose** 18 g in a [[Baskets|basket]]\n- Yield [36 g](x.md)\n"
        "| a | b |\n|---|---|"
    )
    sentences = split(text)
    assert [s.text for s in sentences] == ["Recipe", "Dose 18 g in a basket", "Yield 36 g", "a b"]
    assert all(s.ends_line for s in sentences)


def test_sentence_table_keeps_sentences_that_say_something() -> None:
    table = sentence_table([passage("# Recipe\nShort.\nPull the shot for 28 seconds.")], None)
    assert table.texts == ["Pull the shot for 28 seconds."]
    assert table.vectors is None


def test_extractive_without_the_model_scores_by_the_question_words() -> None:
    passages = [
        passage("The grinder sits on the shelf. Pull the shot for 28 seconds at 93 degrees."),
        passage("Sourdough needs a lively starter fed twice a day.", title="Sourdough"),
    ]
    table = sentence_table(passages, None)
    checked = extractive_answer("how long is the shot?", None, passages, table, count=1)
    assert checked.answer == "Pull the shot for 28 seconds at 93 degrees. [1]"
    assert [c.path for c in checked.citations] == ["Espresso.md"]
    assert not checked.sentences[0].unsupported
    empty = extractive_answer("anything", None, [], sentence_table([], None), count=2)
    assert empty.answer == NOTHING and not empty.citations


# -------------------------------------------------------------------------- request


@pytest.mark.parametrize(
    ("body", "code", "parameter"),
    [
        ({}, "bad_request", "question"),
        ({"question": 3}, "bad_request", "question"),
        ({"question": "   "}, "bad_request", "question"),
        ({"question": "x" * 1001}, "question_too_long", "question"),
        ({"question": "hi", "stream": "yes"}, "bad_request", "stream"),
        ({"question": "hi", "limit": 3}, "bad_request", "limit"),
    ],
)
def test_bad_questions_are_refused_with_the_field_at_fault(
    body: dict[str, object], code: str, parameter: str
) -> None:
    with pytest.raises(BadQuestion) as caught:
        parse_ask(body, AskConfig())
    assert caught.value.code == code
    assert caught.value.details["parameter"] == parameter


def test_a_question_is_normalised() -> None:
    request = parse_ask({"question": "  how   long\n is it? ", "stream": True}, AskConfig())
    assert (request.question, request.stream) == ("how long is it?", True)


# --------------------------------------------------------------------------- prompt


def test_prompt_packs_passages_into_the_budget_and_cuts_the_last_at_a_line() -> None:
    long = "\n".join(f"line {i} of the passage about grinding coffee beans" for i in range(40))
    passages = [passage("Pull the shot for 28 seconds."), passage(long, title="Grinder")]
    fixed = words(SYSTEM_PROMPT) + 40
    prompt = build_prompt("how long?", passages, words, budget=fixed + 120)
    assert [p.title for p in prompt.passages] == ["Espresso", "Grinder"]
    cut = prompt.passages[1]
    assert 0 < len(cut.text.splitlines()) < 40 and cut.lines[1] < passages[1].lines[1]
    user = prompt.messages[1]["content"]
    assert "[1] Espresso > Recipe\nPull the shot" in user and "[2] Grinder > Recipe" in user
    assert user.endswith("Question: how long?")
    assert prompt.messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    tight = build_prompt("how long?", passages, words, budget=fixed)
    assert [p.title for p in tight.passages] == ["Espresso"]


# ------------------------------------------------------------------------ templates


def test_the_builtin_templates_load_and_etc_holds_a_copy() -> None:
    templates = load_templates(None)
    names = {intent.name for intent in templates.intents}
    assert {"note_count", "index_status", "recent_notes", "notes_tagged", "backlinks",
            "search"} <= names  # fmt: skip
    assert (REPO / "etc" / "templates.yaml").read_bytes() == BUILTIN.read_bytes()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("intents: [{name: a, action: fly, examples: [x], response: y}]", "unknown action 'fly'"),
        ("intents: [{name: a, action: backlinks, examples: [x], response: y}]", "must use {note}"),
        (
            "intents: [{name: a, action: note_count, examples: [x], response: '{nope}'}]",
            "uses nope, which note_count does not give",
        ),
        ("intents:\n  - name: a\n    examples: [x]\n    response: y\n",
         "intents[0].action (line 2)"),
        ("intents: [{name: a, action: note_count, examples: [x], response: y, extra: 1}]",
         "unknown key"),
        ("intents: [", "malformed YAML"),
    ],
)  # fmt: skip
def test_a_broken_templates_file_names_the_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    file = tmp_path / "templates.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(TemplateFileError) as caught:
        load_templates(file)
    assert expected in str(caught.value) and str(file) in str(caught.value)


def test_config_refuses_a_missing_templates_file_and_max_tokens_past_the_context() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("templates:\n  file: /nonexistent/t.yaml\n", "j.yaml")
    assert "templates.file (line 2)" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_config("llm:\n  max_tokens: 4096\n  context_tokens: 1024\n", "j.yaml")
    assert "max_tokens must be smaller than context_tokens" in str(caught.value)


# -------------------------------------------------------------------------- folders


def test_a_model_folder_is_checked_before_anything_loads(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="does not exist"):
        inspect_folder(tmp_path / "missing")
    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(ModelFolderError, match=r"config\.json is missing"):
        inspect_folder(folder)
    (folder / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        inspect_folder(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    with pytest.raises(ModelFolderError, match=r"no \*\.safetensors"):
        inspect_folder(folder)
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(ModelFolderError, match="no tokenizer"):
        inspect_folder(folder)
    (folder / "tokenizer.json").write_text("{}", encoding="utf-8")
    facts = inspect_folder(folder)
    assert facts.model_type == "llama" and facts.weight_bytes == 16 and not facts.chat_template


def test_sentence_vectors_encode_each_sentence_once() -> None:
    import numpy as np

    from jarvisd.ask.sentences import SentenceVectors

    batches: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        batches.append(texts)
        return np.asarray([[float(len(text)), 1.0] for text in texts], dtype=np.float32)

    vectors = SentenceVectors(encode)
    first = vectors(["a b c", "d e"])
    again = vectors(["d e", "f g h i", "a b c"])
    assert batches == [["a b c", "d e"], ["f g h i"]]
    assert first.shape == (2, 2) and again[0, 0] == 3.0 and again[2, 0] == 5.0


def test_an_answer_ends_where_the_model_starts_a_new_turn_and_says_each_thing_once() -> None:
    from jarvisd.ask.citations import claims

    text = "It is 5 MB [1]. It is 5 MB [1]. Is that a lot?\nQuestion: and on Plus? It is 200 MB."
    assert [s.text for s in claims(text)] == ["It is 5 MB.", "Is that a lot?"]


def test_prompt_passages_show_no_embeds_and_links_by_their_text() -> None:
    from jarvisd.ask.sentences import readable

    text = "Click **Open** ![[lucide-cog.svg#icon]] in the [[Ribbon|ribbon]].\nSee [docs](x.md)."
    assert readable(text) == "Click **Open**  in the ribbon.\nSee docs."


def test_a_templates_file_with_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    from test_config import billion_laughs

    bomb = tmp_path / "templates.yaml"
    bomb.write_text(billion_laughs(), encoding="utf-8")
    with pytest.raises(TemplateFileError, match="YAML aliases expand the document past"):
        load_templates(bomb)
