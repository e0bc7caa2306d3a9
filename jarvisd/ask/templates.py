"""Templates: intents with example phrasings, matched by the search model's embeddings.

The examples of every intent are encoded once, in one batch (normalised, so
a cosine is a dot product), the first time a question needs them, with the
model search already loaded. A question is then one more query embedding,
usually from the embedder's cache (search encoded it a moment before).

Slots: an example like `which notes link to {note}` needs a note from the
question. Known note titles, tags (`#coffee`, or a tag the notes use) and a
free `{query}` (the words where an example has it) are found in the question
and replaced by the slot's word (`note`, `tag`, `topic`), and the examples are
encoded with the same words: `which notes link to Espresso?` is compared as
`which notes link to note?`, so the title does not pull the cosine down.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jarvisd.config.loading import (
    ConfigError,
    check_yaml,
    read_config_bytes,
    validation_problems,
)
from jarvisd.search.snapshot import NoteInfo

BUILTIN = Path(__file__).with_name("templates.yaml")
Slot = Literal["tag", "note", "query"]
SLOT_WORDS: dict[str, str] = {"tag": "tag", "note": "note", "query": "topic"}
ACTIONS: dict[str, tuple[Slot | None, frozenset[str]]] = {
    "note_count": (None, frozenset({"count", "chunks", "vaults"})),
    "index_status": (None, frozenset({"notes", "chunks", "links", "last_run", "state"})),
    "recent_notes": (None, frozenset({"count"})),
    "notes_tagged": ("tag", frozenset({"tag", "count"})),
    "backlinks": ("note", frozenset({"note", "count"})),
    "search": ("query", frozenset({"query", "count"})),
}
_FIELD = re.compile(r"\{(\w+)\}")
_HASHTAG = re.compile(r"#([A-Za-z0-9_][\w/-]*)")
_AFTER_TAG = re.compile(r"\btag(?:ged|s)?\s+(?:with\s+|as\s+)?([\w/-]+)", re.IGNORECASE)
_QUOTED = re.compile(r"\[\[([^\]|#]+)[^\]]*\]\]|\"([^\"]+)\"|“([^”]+)”")
Vectors = npt.NDArray[np.float32]


class TemplateFileError(Exception):
    """A templates file that cannot be used, with every problem, its key path and line."""


class _Intent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    action: str
    examples: list[str] = Field(min_length=1)
    response: str

    @field_validator("action")
    @classmethod
    def _known_action(cls, value: str) -> str:
        if value not in ACTIONS:
            raise ValueError(f"unknown action {value!r}; known: {', '.join(ACTIONS)}")
        return value


class _TemplateFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    intents: list[_Intent] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Intent:
    name: str
    action: str
    examples: tuple[str, ...]
    response: str

    @property
    def slot(self) -> Slot | None:
        return ACTIONS[self.action][0]


@dataclass(frozen=True, slots=True)
class TemplateSet:
    intents: tuple[Intent, ...]
    source: str

    @property
    def slots(self) -> frozenset[str]:
        return frozenset(intent.slot for intent in self.intents if intent.slot)


def load_templates(path: Path | None) -> TemplateSet:
    """The intents in `path` (None: the built-in set), or TemplateFileError naming the problems."""
    file = path or BUILTIN
    source = str(file)
    try:
        # The config's bounds: a regular file of at most 1 MiB, aliases that stay small.
        text = read_config_bytes(file).decode("utf-8")
        check_yaml(text, source)
        data = yaml.safe_load(text) or {}
    except ConfigError as error:
        raise TemplateFileError(str(error)) from error
    except (OSError, UnicodeDecodeError) as error:
        raise TemplateFileError(f"{source}: cannot read: {error}") from error
    except yaml.YAMLError as error:
        raise TemplateFileError(f"{source}: malformed YAML: {error}") from error
    try:
        parsed = _TemplateFile.model_validate(data)
    except ValidationError as error:
        problems = validation_problems(error, text)
        raise TemplateFileError(f"{source}: " + "; ".join(problems)) from error
    problems = _check(parsed, text)
    if problems:
        raise TemplateFileError(f"{source}: " + "; ".join(problems))
    intents = tuple(
        Intent(item.name, item.action, tuple(item.examples), item.response)
        for item in parsed.intents
    )
    return TemplateSet(intents, source)


def _check(parsed: _TemplateFile, text: str) -> list[str]:
    """What the schema cannot say: unique names, the action's slot in every example, fields."""
    problems: list[str] = []
    names = [intent.name for intent in parsed.intents]
    for index, intent in enumerate(parsed.intents):
        where = f"intents[{index}] ({intent.name})"
        if names.count(intent.name) > 1:
            problems.append(f"{where}: the name {intent.name!r} is used more than once")
        slot, fields = ACTIONS[intent.action]
        for example in intent.examples:
            used = set(_FIELD.findall(example))
            wanted = {slot} if slot else set()
            if used != wanted:
                need = f"{{{slot}}}" if slot else "no slot"
                problems.append(f"{where}: example {example!r} must use {need}")
        unknown = sorted(set(_FIELD.findall(intent.response)) - fields)
        if unknown:
            problems.append(
                f"{where}: the response uses {', '.join(unknown)}, which {intent.action} does "
                f"not give (it gives {', '.join(sorted(fields))})"
            )
    return problems


# ---------------------------------------------------------------------- the names in notes


@dataclass(frozen=True)
class Names:
    """Note titles and tags, to find a slot's value in a question."""

    titles: dict[str, NoteInfo]  # lower-case title -> note
    tags: frozenset[str]
    _pattern: re.Pattern[str] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, notes: Sequence[NoteInfo]) -> Names:
        titles: dict[str, NoteInfo] = {}
        for note in notes:
            if len(note.title) >= 3:
                titles.setdefault(note.title.lower(), note)
        tags = frozenset(tag for note in notes for tag in note.tags)
        # Longest first: "Espresso grinder" wins over "Espresso" where both fit.
        ordered = sorted(titles, key=len, reverse=True)
        pattern = (
            re.compile(r"(?<!\w)(" + "|".join(re.escape(t) for t in ordered) + r")(?!\w)", re.I)
            if ordered
            else None
        )
        return cls(titles, tags, pattern)

    def find_note(self, question: str) -> tuple[str, tuple[int, int]] | None:
        quoted = _QUOTED.search(question)
        if quoted:
            value = next(group for group in quoted.groups() if group)
            return value.strip(), quoted.span()
        if self._pattern is None:
            return None
        found = self._pattern.search(question)
        if found is None:
            return None
        return self.titles[found.group(1).lower()].title, found.span()

    def find_tag(self, question: str) -> tuple[str, tuple[int, int]] | None:
        hashtag = _HASHTAG.search(question)
        if hashtag:
            return hashtag.group(1).lower(), hashtag.span()
        # A bare word is a tag only right after "tag"/"tagged"/"tags" ("notes tagged
        # coffee"): "how do I add a tag to a note" names no tag, whatever tags exist.
        for word in _AFTER_TAG.finditer(question):
            if word.group(1).lower() in self.tags:
                return word.group(1).lower(), word.span(1)
        return None


# ---------------------------------------------------------------------------- matching


@dataclass(frozen=True, slots=True)
class Match:
    intent: Intent | None  # None: no intent reached the threshold
    score: float  # the best cosine of any intent whose slot the question fills
    slots: dict[str, str]


class TemplateMatcher:
    def __init__(self, templates: TemplateSet, encode: Callable[[list[str]], Vectors]) -> None:
        self.templates = templates
        rows: list[tuple[int, str]] = [
            (index, _fill(example))
            for index, intent in enumerate(templates.intents)
            for example in intent.examples
        ]
        self._owners = np.asarray([owner for owner, _ in rows], dtype=np.int64)
        texts = [text for _, text in rows]
        self._vectors = encode(texts) if texts else np.zeros((0, 1), dtype=np.float32)
        self._queries = [
            (index, _query_pattern(example))
            for index, intent in enumerate(templates.intents)
            if intent.slot == "query"
            for example in intent.examples
        ]

    def match(
        self,
        question: str,
        names: Names,
        encode_query: Callable[[str], Vectors],
        threshold: float,
    ) -> Match:
        """The intent for `question` (blocking: one or two query encodes)."""
        if not self.templates.intents:
            return Match(None, -1.0, {})
        slots, masked = self._slots(question, names)
        plain = encode_query(question)
        scores = np.full(len(self.templates.intents), -1.0, dtype=np.float32)
        masked_vector = encode_query(masked) if masked != question else plain
        for index, intent in enumerate(self.templates.intents):
            if intent.slot is not None and intent.slot not in slots:
                continue  # it could not be answered: the question names no such thing
            vector = plain if intent.slot is None else masked_vector
            rows = self._owners == index
            scores[index] = float((self._vectors[rows] @ vector).max())
        best = int(np.argmax(scores))
        score = float(scores[best])
        if score < threshold:
            return Match(None, score, {})
        chosen = self.templates.intents[best]
        wanted: dict[str, str] = {chosen.slot: slots[chosen.slot]} if chosen.slot else {}
        return Match(chosen, score, wanted)

    def _slots(self, question: str, names: Names) -> tuple[dict[str, str], str]:
        """The slot values found in the question, and the question with them masked."""
        wanted = self.templates.slots
        found: dict[str, tuple[str, tuple[int, int]]] = {}
        if "query" in wanted:
            for _, pattern in self._queries:
                hit = pattern.match(question.strip())
                if hit:
                    found["query"] = (hit.group("query").strip(" ?.!"), hit.span("query"))
                    break
        if "tag" in wanted and (tag := names.find_tag(question)):
            found["tag"] = tag
        if "note" in wanted and (note := names.find_note(question)):
            found["note"] = note
        masked = question
        # Right to left, so the earlier spans keep their offsets; an overlap keeps the first.
        taken: list[tuple[int, int]] = []
        for slot, (_, (start, end)) in sorted(found.items(), key=_right_to_left):
            if any(start < other_end and other_start < end for other_start, other_end in taken):
                continue
            taken.append((start, end))
            masked = masked[:start] + SLOT_WORDS[slot] + masked[end:]
        return {slot: value for slot, (value, _) in found.items()}, masked


def _right_to_left(item: tuple[str, tuple[str, tuple[int, int]]]) -> tuple[int, int]:
    """Later spans first; at the same place, a {query} wins over a title or tag in it."""
    slot, (_, (start, _end)) = item
    return (-start, 0 if slot == "query" else 1)


def _fill(example: str) -> str:
    return _FIELD.sub(lambda match: SLOT_WORDS.get(match.group(1), match.group(1)), example)


def _query_pattern(example: str) -> re.Pattern[str]:
    before, _, after = example.partition("{query}")
    words_before = r"\s+".join(re.escape(word) for word in before.split())
    words_after = r"\s+".join(re.escape(word) for word in after.split())
    pattern = (words_before + r"\s+" if words_before else "") + r"(?P<query>.+?)"
    pattern += (r"\s+" + words_after if words_after else "") + r"[\s?.!]*$"
    return re.compile(pattern, re.IGNORECASE)
