"""The prompt: instructions, the best passages packed into the token budget, the question.

Passages go in by rank until `llm.context_tokens - llm.max_tokens` is used up;
the one that does not fit whole is cut at a line, or left out when less than
`MIN_PASSAGE_TOKENS` of it would fit. Each is numbered and named (note title
and heading path), so the model can point at it and a person can find it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from jarvisd.ask.generator import Message
from jarvisd.ask.sentences import readable
from jarvisd.search.passages import Passage

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages from the user's notes. "
    "Answer in one to three short sentences. After each sentence, write the number of the "
    "passage it comes from in brackets, like [1]. If the passages do not contain the answer, "
    "say that the notes do not say."
)
MIN_PASSAGE_TOKENS = 48
RESERVE_TOKENS = 16  # the chat template's own tokens around each message


@dataclass(frozen=True, slots=True)
class Prompt:
    messages: list[Message]
    passages: list[Passage]  # the passages shown, possibly the last one cut


def user_message(question: str, passages: Sequence[Passage]) -> str:
    blocks = [f"[{number}] {passage.label}\n{readable(passage.text)}" for number, passage in
              enumerate(passages, start=1)]  # fmt: skip
    return "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"


def build_prompt(
    question: str,
    passages: Sequence[Passage],
    count_tokens: Callable[[str], int],
    budget: int,
) -> Prompt:
    """The messages for `question`, with as many passages as fit in `budget` tokens."""
    fixed = count_tokens(SYSTEM_PROMPT) + count_tokens(user_message(question, [])) + RESERVE_TOKENS
    left = budget - fixed
    shown: list[Passage] = []
    for number, passage in enumerate(passages, start=1):
        block = f"[{number}] {passage.label}\n{readable(passage.text)}\n\n"
        cost = count_tokens(block)
        if cost <= left:
            shown.append(passage)
            left -= cost
            continue
        if left >= MIN_PASSAGE_TOKENS:
            cut = _cut(passage, count_tokens, left)
            if cut is not None:
                shown.append(cut)
        break
    messages: list[Message] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(question, shown)},
    ]
    return Prompt(messages, shown)


def _cut(passage: Passage, count_tokens: Callable[[str], int], budget: int) -> Passage | None:
    """The passage's leading lines that fit in `budget` tokens (None: not even one)."""
    lines = readable(passage.text).splitlines()
    header = count_tokens(f"[99] {passage.label}\n")
    kept: list[str] = []
    used = header
    for line in lines:
        cost = count_tokens(line + "\n")
        if used + cost > budget:
            break
        kept.append(line)
        used += cost
    if not kept:
        return None
    first = passage.lines[0]
    return replace(passage, text="\n".join(kept), lines=(first, first + len(kept) - 1))
