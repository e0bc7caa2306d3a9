"""A question as a value: parsed from the request body, bounded, normalised."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jarvisd.ask.errors import BadQuestion
from jarvisd.config import AskConfig

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class AskRequest:
    question: str
    stream: bool = False


def parse_ask(body: Mapping[str, Any], config: AskConfig) -> AskRequest:
    """`{"question": "...", "stream": false}`, or BadQuestion naming the field at fault."""
    unknown = sorted(set(body) - {"question", "stream"})
    if unknown:
        raise BadQuestion(
            f"unknown field(s) {', '.join(unknown)}; a question is "
            '{"question": "...", "stream": true|false}',
            parameter=unknown[0],
        )
    raw = body.get("question")
    if not isinstance(raw, str):
        raise BadQuestion(
            '"question" must be a string, e.g. {"question": "..."}', parameter="question"
        )
    question = _WHITESPACE.sub(" ", raw).strip()
    if not question:
        raise BadQuestion("the question is empty: ask something", parameter="question")
    if len(question) > config.max_question_chars:
        raise BadQuestion(
            f"the question is {len(question)} characters long; the longest accepted is "
            f"{config.max_question_chars} (ask.max_question_chars)",
            code="question_too_long",
            parameter="question",
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadQuestion('"stream" must be true or false', parameter="stream")
    return AskRequest(question, stream)
