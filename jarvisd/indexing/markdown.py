"""Parsing one note: bytes in, a `ParsedNote` out.

The body is read in one line-oriented pass that tracks fenced code, so that
nothing inside code counts as a heading, tag or link; the same pass collects
the blocks (paragraphs and fences) of each section, which are then cut into
chunks that never cross a heading. Obsidian's behaviour is the reference
wherever Markdown is silent: tags, wikilinks, frontmatter and titles follow
what Obsidian shows its user.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import math
import posixpath
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

import yaml

from jarvisd.indexing.chunking import (
    INLINE_CODE,
    WIKILINK,
    Block,
    Section,
    TokenCounter,
    build_chunks,
    estimate_tokens,
    title_chunk,
)
from jarvisd.indexing.parsed import Heading, Link, ParsedNote

__all__ = ["NoteError", "estimate_tokens", "link_key", "parse_note"]

NoteErrorReason = Literal["binary", "not_utf8"]


class NoteError(ValueError):
    """A file that cannot be read as a note; `reason` is "binary" or "not_utf8"."""

    def __init__(self, path: str, reason: NoteErrorReason, message: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {message}")


# ------------------------------------------------------------------ bytes to text

_BOM = b"\xef\xbb\xbf"
# Tab, newline, vertical tab, form feed and carriage return are text; other
# C0 controls almost never occur in prose but make up ~10 % of random bytes.
_CONTROL_BYTES = bytes([*range(0, 9), *range(14, 32), 127])
_TEXT_BYTES = bytes(sorted(set(range(256)) - set(_CONTROL_BYTES)))
_BINARY_SAMPLE = 8192
_BINARY_CONTROL_RATIO = 0.05


def decode_note(path: str, raw: bytes) -> str:
    """UTF-8 text with `\\n` line ends, or NoteError saying why the bytes are not a note."""
    sample = raw[:_BINARY_SAMPLE]
    control = len(sample.translate(None, _TEXT_BYTES))
    if b"\x00" in raw or control > _BINARY_CONTROL_RATIO * len(sample):
        raise NoteError(
            path,
            "binary",
            "holds NUL or control bytes, so it is a binary file, not a markdown note; "
            "rename it or add it to the vault's exclude list",
        )
    skipped = len(_BOM) if raw.startswith(_BOM) else 0
    try:
        text = raw[skipped:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start + skipped
        line = raw.count(b"\n", 0, offset) + 1
        raise NoteError(
            path,
            "not_utf8",
            f"not valid UTF-8 at byte {offset} (line {line}); re-save the file as UTF-8",
        ) from error
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


# ------------------------------------------------------------------- frontmatter

_FRONTMATTER_END = re.compile(r"^---[ \t]*$", re.MULTILINE)
# The C loader is the same safe loader, about ten times faster.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAX_FRONTMATTER_NODES = 10_000  # YAML aliases can expand a small file into a huge tree


class _TooComplex(Exception):
    pass


def split_frontmatter(text: str) -> tuple[str | None, str, int, str | None]:
    """(YAML text or None, body, lines before the body, warning or None).

    Like Obsidian, frontmatter exists only when the very first line is `---`.
    """
    first_end = text.find("\n")
    if not text.startswith("---") or first_end == -1 or text[3:first_end].strip():
        return None, text, 0, None
    match = _FRONTMATTER_END.search(text, first_end + 1)
    if match is None:
        warning = "frontmatter starts on line 1 but has no closing '---'; read as body text"
        return None, text, 0, warning
    body_start = text.find("\n", match.end())
    body_start = len(text) if body_start == -1 else body_start + 1
    lines_before = text.count("\n", 0, body_start)
    return text[first_end + 1 : match.start()], text[body_start:], lines_before, None


def load_frontmatter(yaml_text: str) -> tuple[dict[str, Any], str | None]:
    """The frontmatter as JSON-able data, or {} and a warning when it cannot be read."""
    try:
        data = yaml.load(yaml_text, Loader=_YAML_LOADER)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        # +2: marks are 0-based and the opening `---` is line 1 of the file
        where = f" at line {mark.line + 2}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        return {}, f"frontmatter is not valid YAML{where}: {problem}; indexed without it"
    except (ValueError, TypeError, RecursionError) as error:  # e.g. a date like 2024-13-45
        return {}, f"frontmatter could not be read ({error}); indexed without it"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return {}, "frontmatter is not a mapping of `key: value` lines; indexed without it"
    budget = [_MAX_FRONTMATTER_NODES]
    try:
        return {_json_key(key): _jsonable(value, budget) for key, value in data.items()}, None
    except (_TooComplex, RecursionError):
        return {}, "frontmatter is too large or self-referencing; indexed without it"


def _json_key(key: object) -> str:
    if isinstance(key, datetime.date | datetime.time):
        return key.isoformat()
    return str(key)


def _jsonable(value: object, budget: list[int]) -> Any:
    """YAML values as JSON values: dates become ISO strings, sets lists, bytes base64."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooComplex
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {_json_key(key): _jsonable(item, budget) for key, item in value.items()}
    if isinstance(value, set):
        return sorted((_jsonable(item, budget) for item in value), key=str)
    if isinstance(value, list | tuple):
        return [_jsonable(item, budget) for item in value]
    return str(value)


def _property_values(
    frontmatter: dict[str, Any], names: tuple[str, ...], separators: re.Pattern[str]
) -> list[str]:
    """The values under any of `names` (any case): the items of a list, or a
    single string split at `separators`, as Obsidian reads a one-line value."""
    values: list[str] = []
    for key, value in frontmatter.items():
        if key.lower() not in names:
            continue
        if isinstance(value, str):
            value = separators.split(value)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str | int | float) and not isinstance(item, bool):
                values.append(str(item).strip())
    return [value for value in values if value]


# -------------------------------------------------------------------------- tags

# Obsidian's tag alphabet: anything but whitespace and ASCII/Unicode punctuation,
# except `_`, `-` and `/` (nesting). Letters, digits and emoji all qualify.
_TAG_CHARS = r"[^\s\u2000-\u206f\u2e00-\u2e7f'!\"#$%&()*+,.:;<=>?@^`{|}~\[\]\\]"
# A tag starts a line or follows whitespace: that rules out headings' extra
# hashes, URL fragments (`/#anchor`), HTML entities (`&#123;`) and `[[Note#H]]`.
_INLINE_TAG = re.compile(rf"(?<!\S)#({_TAG_CHARS}+)")
_VALID_TAG = re.compile(rf"{_TAG_CHARS}+")
_TAG_SEPARATORS = re.compile(r"[\s,]+")
_ALIAS_SEPARATORS = re.compile(r",")


def normalize_tag(raw: str) -> str | None:
    """`#Inbox/To-Read` -> `inbox/to-read`; None unless Obsidian would accept it."""
    tag = raw.strip().lstrip("#").strip("/").lower()
    if not tag or not _VALID_TAG.fullmatch(tag):
        return None
    # "Tags must contain at least one non-numerical character" (Obsidian help),
    # and a tag of only separators (`#-`, `#_/`) names nothing.
    if tag.isdigit() or not tag.strip("-_/"):
        return None
    return tag


def _frontmatter_tags(frontmatter: dict[str, Any], warnings: list[str]) -> list[str]:
    tags: list[str] = []
    for value in _property_values(frontmatter, ("tags", "tag"), _TAG_SEPARATORS):
        tag = normalize_tag(value)
        if tag is None:
            warnings.append(f"frontmatter tag {value!r} is not a valid tag; ignored")
        else:
            tags.append(tag)
    return tags


def _frontmatter_aliases(frontmatter: dict[str, Any]) -> tuple[str, ...]:
    values = _property_values(frontmatter, ("aliases", "alias"), _ALIAS_SEPARATORS)
    return tuple(dict.fromkeys(values))


# ------------------------------------------------------------------------- links

# [text](destination "title"): the destination may be <wrapped> or hold one
# level of balanced parentheses, as CommonMark allows.
_MARKDOWN_LINK = re.compile(
    r"(!?)\[((?:[^\[\]\n]|\[[^\[\]\n]*\])*)\]"
    r"\(\s*(<[^<>\n]*>|[^\s()<>]*(?:\([^\s()]*\)[^\s()<>]*)*)"
    r"(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^()\n]*\)))?\s*\)"
)
_URL_SCHEME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*:|//)")
_BLOCK_SUFFIX = re.compile(r"\^[\w-]+$")
_SLASH_RUNS = re.compile(r"[\\/]+")
_SPACE_RUNS = re.compile(r"\s+")


def link_key(target: str) -> str:
    """The lookup key of a link target: lowercase, `.md`-less, slashes and spaces tidied.

    `Folder\\\\Sub//Note.MD` and `folder/sub/note` have the same key, so a resolver
    can match what the user typed against file names with one dict lookup.
    """
    key = target if target.isascii() else unicodedata.normalize("NFC", target)
    key = _SPACE_RUNS.sub(" ", key).strip()
    if "\\" in key or "/" in key:
        key = "/".join(part.strip() for part in _SLASH_RUNS.split(key) if part.strip(" ."))
    key = key.lower()
    if key.endswith(".md"):
        key = key[:-3].rstrip()
    return key


def _in_folder(folder: str, path: str) -> str | None:
    """`path` relative to `folder`, as a vault path; None when it climbs out of the vault."""
    base = "" if path.startswith("/") else folder  # a leading slash means the vault root
    joined = posixpath.normpath(posixpath.join(base, path.lstrip("/")))
    if joined == ".." or joined.startswith("../"):
        return None
    return "" if joined == "." else joined


def _wikilink(inner: str, embed: bool, line: int, folder: str) -> Link | None:
    target, bar, alias = inner.partition("|")
    if bar and target.endswith("\\"):  # `[[Note\|alias]]`: the pipe escaped inside a table
        target = target[:-1]
    target, _, heading = target.partition("#")
    target = _BLOCK_SUFFIX.sub("", target.strip()).strip()
    if target.startswith(("./", "../")):
        relative = _in_folder(folder, target)
        if relative is None:
            return None
        target = relative
    if not target:  # [[#Heading]] points into the same note, not at another one
        return None
    heading = heading.strip()
    return Link(
        target=target,
        key=link_key(target),
        kind="embed" if embed else "wikilink",
        heading=heading if heading and not heading.startswith("^") else None,
        alias=alias.strip() or None,
        line=line,
    )


def _markdown_link(text: str, destination: str, line: int, folder: str) -> Link | None:
    if destination.startswith("<"):
        destination = destination[1:-1]
    destination = destination.strip()
    if not destination or destination.startswith("#") or _URL_SCHEME.match(destination):
        return None  # same-note anchors and external URLs (http:, mailto:, obsidian:)
    path, _, fragment = destination.partition("#")
    target = _in_folder(folder, unquote(path.partition("?")[0]))
    if not target:
        return None
    heading = unquote(fragment).strip()
    return Link(
        target=target,
        key=link_key(target),
        kind="markdown",
        heading=heading if heading and not heading.startswith("^") else None,
        alias=text.strip() or None,
        line=line,
    )


# --------------------------------------------------------------------- the pass

_FENCE = re.compile(r"^[ \t]*(?:>[ \t]*)*(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")


@dataclass(slots=True)
class _Scan:
    folder: str
    headings: list[Heading] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=lambda: [Section(())])
    open_headings: list[Heading] = field(default_factory=list)  # the current heading path


def _scan_inline(scan: _Scan, line: str, number: int) -> None:
    """Links and tags of one line outside code: each found span is blanked so
    that a later pattern cannot see inside it (no tags in link targets)."""
    if "`" in line:
        line = INLINE_CODE.sub(lambda match: " " * len(match.group(0)), line)

    def take_wikilink(match: re.Match[str]) -> str:
        link = _wikilink(match.group(2), match.group(1) == "!", number, scan.folder)
        if link is not None:
            scan.links.append(link)
        return " " * len(match.group(0))

    def take_markdown_link(match: re.Match[str]) -> str:
        link = _markdown_link(match.group(2), match.group(3), number, scan.folder)
        if link is not None:
            scan.links.append(link)
        return " " * len(match.group(0))

    if "[[" in line:
        line = WIKILINK.sub(take_wikilink, line)
    if "](" in line:
        line = _MARKDOWN_LINK.sub(take_markdown_link, line)
    if "#" in line:
        for match in _INLINE_TAG.finditer(line):
            tag = normalize_tag(match.group(1))
            if tag is not None:
                scan.tags.append(tag)


def _start_section(scan: _Scan, level: int, text: str, number: int) -> None:
    heading = Heading(level=level, text=text, line=number)
    scan.headings.append(heading)
    while scan.open_headings and scan.open_headings[-1].level >= level:
        scan.open_headings.pop()
    scan.open_headings.append(heading)
    scan.sections.append(Section(tuple(item.text for item in scan.open_headings)))


def _scan_body(body: str, first_line: int, folder: str) -> _Scan:
    """Headings, links, tags and sectioned blocks of a body starting at `first_line`."""
    scan = _Scan(folder)
    block: Block | None = None
    fence: str | None = None  # the opening fence while inside fenced code
    for number, line in enumerate(body.split("\n"), start=first_line):
        if fence is not None:
            assert block is not None
            block.lines.append(line)
            block.end_line = number
            closing = _FENCE.match(line) if fence[0] in line else None
            if closing and closing.group(1).startswith(fence) and not closing.group(2).strip():
                block.closed = True
                fence, block = None, None
            continue
        opening = _FENCE.match(line) if ("`" in line or "~" in line) else None
        if opening and not (opening.group(1)[0] == "`" and "`" in opening.group(2)):
            fence = opening.group(1)
            block = Block([line], number, number, is_code=True, fence=fence)
            scan.sections[-1].blocks.append(block)
            continue
        if not line.strip():
            block = None
            continue
        heading = _HEADING.match(line) if line.lstrip(" ").startswith("#") else None
        if heading:
            _start_section(scan, len(heading.group(1)), heading.group(2).strip(), number)
            block = None
        elif block is None or block.is_code:
            block = Block([line], number, number)
            scan.sections[-1].blocks.append(block)
        else:
            block.lines.append(line)
            block.end_line = number
        if "[" in line or "#" in line:
            _scan_inline(scan, line, number)
    return scan


# ------------------------------------------------------------------------ a note


def parse_note(
    path: str,
    raw: bytes,
    *,
    chunk_tokens: int = 200,
    chunk_overlap: int = 32,
    count_tokens: TokenCounter | None = None,
) -> ParsedNote:
    """Parse one note. `path` is vault-relative POSIX; raises NoteError for non-notes."""
    if chunk_tokens < 1 or not 0 <= chunk_overlap < chunk_tokens:
        raise ValueError("need chunk_tokens >= 1 and 0 <= chunk_overlap < chunk_tokens")
    count = count_tokens or estimate_tokens
    text = decode_note(path, raw)
    warnings: list[str] = []
    yaml_text, body, lines_before, warning = split_frontmatter(text)
    frontmatter: dict[str, Any] = {}
    if warning is None and yaml_text is not None:
        frontmatter, warning = load_frontmatter(yaml_text)
    if warning is not None:
        warnings.append(warning)
    folder, _, file_name = path.rpartition("/")
    title = frontmatter.get("title")
    if not (isinstance(title, str) and title.strip()):
        title = file_name[:-3] if file_name.lower().endswith(".md") else file_name
    title = title.strip()
    scan = _scan_body(body, lines_before + 1, folder)
    tags = dict.fromkeys([*_frontmatter_tags(frontmatter, warnings), *scan.tags])
    chunks = build_chunks(title, scan.sections, chunk_tokens, chunk_overlap, count)
    return ParsedNote(
        path=path,
        title=title,
        content_hash=hashlib.sha256(raw).hexdigest(),
        frontmatter=frontmatter,
        tags=tuple(tags),
        aliases=_frontmatter_aliases(frontmatter),
        headings=tuple(scan.headings),
        links=tuple(scan.links),
        chunks=chunks or (title_chunk(title, scan.headings, count),),
        warnings=tuple(warnings),
    )
