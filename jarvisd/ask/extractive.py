"""The answer when no model answers: the best sentences of the best passages, cited.

A sentence's score is its cosine with the question, plus a little for the
share of the question's words it holds, less `RANK_PENALTY` for each rank its
passage sits below the first: retrieval already weighed keywords and meaning
over the whole note, and a sentence-level cosine alone prefers a sentence that
repeats the question's words (a link list: "Espresso: how I pull shots") to
the one that answers it ("18 g in, 36 g out, in 27 to 32 seconds"). Without
the embedding model (MINIMAL memory mode), the share of words stands alone.
The sentences are quoted as written, so each is supported by the passage it
is quoted from, by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from jarvisd.ask.citations import CheckedAnswer, citation
from jarvisd.ask.replies import SentenceCheck
from jarvisd.ask.sentences import SentenceTable, words
from jarvisd.search.passages import Passage

# Per rank below the first passage. 0.08 cited a second, wrong note often enough to hold
# extractive citation precision at 0.886 on the Obsidian help questions (benchmarks.ask).
RANK_PENALTY = 0.15
WORD_WEIGHT = 0.1  # of the share of the question's words a sentence holds
_STOPWORDS = frozenset(
    ("a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from",
     "how", "i", "in", "is", "it", "my", "of", "on", "or", "so", "that", "the", "this", "to",
     "was", "what", "when", "where", "which", "who", "why", "with", "you", "your")
)  # fmt: skip
NOTHING = "Your notes have nothing on this."


def extractive_answer(
    question: str,
    question_vector: npt.NDArray[np.float32] | None,
    passages: Sequence[Passage],
    table: SentenceTable,
    count: int,
) -> CheckedAnswer:
    if not table.texts:
        return CheckedAnswer(NOTHING, (), ())
    scores = _scores(question, question_vector, table)
    scores = scores - RANK_PENALTY * table.owners.astype(np.float32)
    chosen: list[int] = []
    seen: set[str] = set()
    for row in np.argsort(-scores, kind="stable"):
        key = " ".join(words(table.texts[row]))
        if key in seen:
            continue
        seen.add(key)
        chosen.append(int(row))
        if len(chosen) == count:
            break
    chosen.sort()  # passage order, then the order within the passage: it reads as written
    numbers: dict[int, int] = {}
    pieces: list[str] = []
    checks: list[SentenceCheck] = []
    for row in chosen:
        owner = int(table.owners[row])
        number = numbers.setdefault(owner, len(numbers) + 1)
        text = table.texts[row]
        pieces.append(f"{text} [{number}]")
        checks.append(SentenceCheck(text, (number,), 1.0, unsupported=False))
    citations = tuple(citation(number, passages[owner]) for owner, number in numbers.items())
    return CheckedAnswer(" ".join(pieces), citations, tuple(checks))


def _scores(
    question: str, question_vector: npt.NDArray[np.float32] | None, table: SentenceTable
) -> npt.NDArray[np.float32]:
    wanted = {_stem(word) for word in words(question) if word not in _STOPWORDS}
    overlap = np.asarray(
        [
            len(wanted & {_stem(word) for word in words(text)}) / max(1, len(wanted))
            for text in table.texts
        ],
        dtype=np.float32,
    )
    if question_vector is None or table.vectors is None:
        return overlap
    cosines: npt.NDArray[np.float32] = table.vectors @ question_vector
    return cosines + WORD_WEIGHT * overlap


def _stem(word: str) -> str:
    """Crude but enough to match `shots` with `shot`, `brewing` with `brew`."""
    for suffix in ("ing", "es", "ed", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word
