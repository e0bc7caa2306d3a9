"""A long note, a page at a time: whole lines, up to a budget of characters.

The daemon sends the whole note (at most `indexing.max_file_bytes`); a model
gets it in pages so one call never floods its context. 20,000 characters is
about 5,000 tokens of English prose: every note of the example vault and 172
of the 173 notes of the Obsidian help vault (the largest is 33 kB) fit in one
page. Lines are 1-based, as in search results, so a result's `lines` can be
read directly.
"""

from __future__ import annotations

from dataclasses import dataclass

PAGE_CHARACTERS = 20_000


class ArgumentProblem(ValueError):
    """A line range that does not fit the note; the message says what would."""


@dataclass(frozen=True, slots=True)
class Page:
    text: str
    start: int  # first line given (0 for an empty note)
    end: int  # last line given
    total: int  # lines in the note
    next_start: int | None  # the line after this page; None when the page ends the note


def page_of(
    content: str | None, start: int, end: int | None, budget: int = PAGE_CHARACTERS
) -> Page:
    """Lines `start`..`end` (inclusive, 1-based) of `content`, whole lines within `budget`."""
    lines = (content or "").splitlines(keepends=True)
    total = len(lines)
    if start < 1:
        raise ArgumentProblem(f"start_line must be 1 or more, got {start}")
    if end is not None and end < start:
        raise ArgumentProblem(f"end_line ({end}) must not be before start_line ({start})")
    if total == 0:
        if start > 1:
            raise ArgumentProblem(f"start_line {start} is past the end: the note is empty")
        return Page("", 0, 0, 0, None)
    if start > total:
        raise ArgumentProblem(
            f"start_line {start} is past the end: the note has {total} lines; "
            f"ask for a start_line from 1 to {total}"
        )
    stop = total if end is None else min(end, total)
    chosen: list[str] = []
    size = 0
    for line in lines[start - 1 : stop]:
        # At least one line, however long, so every call makes progress.
        if chosen and size + len(line) > budget:
            break
        chosen.append(line)
        size += len(line)
    last = start + len(chosen) - 1
    return Page("".join(chosen), start, last, total, last + 1 if last < total else None)
