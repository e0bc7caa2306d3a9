"""What a question gets back, as frozen values; JSON only at the API edge (`as_dict`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

AnswerPath = Literal["template", "llm", "extractive"]
PATHS: tuple[AnswerPath, ...] = ("template", "llm", "extractive")


@dataclass(frozen=True, slots=True)
class Citation:
    """A note an answer cites; `number` is the `[n]` marker in the answer."""

    number: int
    vault: str
    path: str
    title: str
    heading: str | None
    lines: tuple[int, int] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "vault": self.vault,
            "path": self.path,
            "title": self.title,
            "heading": self.heading,
            "lines": list(self.lines) if self.lines else None,
        }


@dataclass(frozen=True, slots=True)
class SentenceCheck:
    """One sentence of the answer and the passages jarvisd found that support it."""

    text: str
    citations: tuple[int, ...]
    score: float | None  # best cosine with a passage sentence; None: not checked
    unsupported: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "citations": list(self.citations),
            "score": None if self.score is None else round(self.score, 4),
            "unsupported": self.unsupported,
        }


@dataclass(frozen=True, slots=True)
class Timings:
    retrieval_seconds: float = 0.0
    prompt_tokens: int = 0
    first_token_seconds: float | None = None
    generation_seconds: float | None = None
    tokens: int = 0
    check_seconds: float = 0.0
    total_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float | None:
        if not self.tokens or not self.generation_seconds or self.first_token_seconds is None:
            return None
        decoding = self.generation_seconds - self.first_token_seconds
        if self.tokens < 2 or decoding <= 0:
            return None
        return (self.tokens - 1) / decoding

    def as_dict(self) -> dict[str, Any]:
        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000, 2)

        rate = self.tokens_per_second
        return {
            "retrieval_ms": ms(self.retrieval_seconds),
            "prompt_tokens": self.prompt_tokens,
            "first_token_ms": ms(self.first_token_seconds),
            "generation_ms": ms(self.generation_seconds),
            "tokens": self.tokens,
            "tokens_per_second": None if rate is None else round(rate, 2),
            "check_ms": ms(self.check_seconds),
            "total_ms": ms(self.total_seconds),
        }


@dataclass(frozen=True, slots=True)
class AskReply:
    question: str
    answer: str
    path: AnswerPath
    citations: tuple[Citation, ...] = ()
    sentences: tuple[SentenceCheck, ...] = ()
    reason: str | None = None  # why no model answered (extractive), or what a template did
    template: str | None = None  # the intent that answered, on the template path
    model: str | None = None  # the LLM folder that answered, on the llm path
    timings: Timings = field(default_factory=Timings)

    @property
    def unsupported_share(self) -> float | None:
        checked = [sentence for sentence in self.sentences if sentence.score is not None]
        if not checked:
            return None
        return sum(sentence.unsupported for sentence in checked) / len(checked)

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "path": self.path,
            "citations": [citation.as_dict() for citation in self.citations],
            "sentences": [sentence.as_dict() for sentence in self.sentences],
            "reason": self.reason,
            "template": self.template,
            "model": self.model,
            "timings": self.timings.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class Token:
    """A piece of answer text as the LLM produced it (streamed before the final reply)."""

    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"type": "token", "text": self.text}
