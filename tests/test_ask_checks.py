"""The citation check and template matching with the real search model (MiniLM)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jarvisd.ask.citations import check_answer
from jarvisd.ask.sentences import sentence_table
from jarvisd.ask.templates import Names, TemplateMatcher, load_templates
from jarvisd.config import AskConfig, EmbeddingConfig
from jarvisd.model.embedder import Embedder
from jarvisd.search.passages import Passage
from jarvisd.search.snapshot import NoteInfo

pytestmark = pytest.mark.slow
THRESHOLD = AskConfig().support_threshold

ESPRESSO = Passage(
    "v", "Coffee/Espresso.md", "Espresso at home", ("Recipe",), (17, 21),
    "Dose 18 g of coffee into the basket. Pull the shot to 36 g in 28 to 30 seconds. "
    "Keep the water at 93 degrees.", 0.9,
)  # fmt: skip
SOURDOUGH = Passage(
    "v", "Baking/Sourdough.md", "Sourdough", ("Feeding the starter",), (5, 9),
    "Feed the starter twice a day with equal weights of flour and water. A lively starter "
    "doubles in four to six hours.", 0.8,
)  # fmt: skip


@pytest.fixture(scope="module")
def embedder() -> Iterator[Embedder]:
    model = Embedder(EmbeddingConfig())
    model.load()
    yield model
    model.unload()


def test_a_supported_sentence_cites_its_passage_and_an_invented_one_is_unsupported(
    embedder: Embedder,
) -> None:
    passages = [SOURDOUGH, ESPRESSO]
    table = sentence_table(passages, embedder.encode)
    # The model cited [1] (Sourdough) for an espresso fact: the check says [2], renumbered 1.
    answer = (
        "Pull the espresso shot to 36 g in about 30 seconds [1]. "
        "The moon landing happened in 1969 and was filmed in Nevada [2]."
    )
    checked = check_answer(answer, passages, table, embedder.encode, THRESHOLD)
    supported, invented = checked.sentences
    assert not supported.unsupported and supported.citations == (1,)
    assert supported.score is not None and supported.score >= THRESHOLD
    assert invented.unsupported and invented.citations == ()
    assert invented.score is not None and invented.score < THRESHOLD
    assert [c.path for c in checked.citations] == ["Coffee/Espresso.md"]
    assert checked.citations[0].heading == "Recipe" and checked.citations[0].lines == (17, 21)
    assert checked.answer == (
        "Pull the espresso shot to 36 g in about 30 seconds. [1] "
        "The moon landing happened in 1969 and was filmed in Nevada."
    )


def test_a_marker_the_check_agrees_with_is_kept(embedder: Embedder) -> None:
    passages = [ESPRESSO, SOURDOUGH]
    table = sentence_table(passages, embedder.encode)
    answer = "Feed the starter twice a day with equal flour and water [2]."
    checked = check_answer(answer, passages, table, embedder.encode, THRESHOLD)
    assert checked.sentences[0].citations == (1,)
    assert checked.citations[0].path == "Baking/Sourdough.md"


NOTES = [
    NoteInfo(1, "v", "Coffee/Espresso.md", "Espresso", 1, ("coffee",)),
    NoteInfo(2, "v", "Baking/Sourdough.md", "Sourdough", 2, ("baking", "baking/bread")),
]


def test_templates_hit_with_their_slot_and_miss_questions_for_the_notes(
    embedder: Embedder,
) -> None:
    matcher = TemplateMatcher(load_templates(None), embedder.encode)
    names = Names.of(NOTES)

    def match(question: str, threshold: float = 0.7) -> tuple[str | None, dict[str, str], float]:
        found = matcher.match(question, names, embedder.encode_query, threshold)
        return (found.intent.name if found.intent else None), found.slots, found.score

    assert match("How many notes do I have?")[:2] == ("note_count", {})
    assert match("which notes link to espresso")[:2] == ("backlinks", {"note": "Espresso"})
    assert match("show me notes tagged #baking")[:2] == ("notes_tagged", {"tag": "baking"})
    assert match("search my notes for grinder burrs")[:2] == ("search", {"query": "grinder burrs"})
    assert match("how long should an espresso shot take?")[0] is None
    assert match("what flour goes into sourdough?")[0] is None
    # Backlinks need a note: a question naming none cannot be answered by that intent.
    assert match("which notes link to the thing I wrote")[0] != "backlinks"


def test_the_threshold_decides_around_the_measured_cosine(embedder: Embedder) -> None:
    matcher = TemplateMatcher(load_templates(None), embedder.encode)
    names = Names.of(NOTES)
    question = "roughly how many notes are stored in here"
    score = matcher.match(question, names, embedder.encode_query, 0.0).score
    assert 0.3 < score < 1.0
    above = matcher.match(question, names, embedder.encode_query, score - 0.01)
    below = matcher.match(question, names, embedder.encode_query, score + 0.01)
    assert above.intent is not None and above.intent.name == "note_count"
    assert below.intent is None and below.score == pytest.approx(score)
