"""A search request as a value: parsed from query parameters, bounded, normalised.

Every bound is checked here, before any work is done, and a request past one is
a `SearchError` that names the parameter, the bound and the config key that sets
it, so the client can fix the request (or the config) without reading code.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dt_time
from typing import Literal

from jarvisd.config import SearchConfig
from jarvisd.errors import DomainError
from jarvisd.indexing.markdown import normalize_tag

Mode = Literal["hybrid", "semantic", "keyword"]
MODES: tuple[Mode, ...] = ("hybrid", "semantic", "keyword")
# Pages further than this are never useful to a person and only cost work.
MAX_OFFSET = 10_000
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_WHITESPACE = re.compile(r"\s+")
NANOSECONDS = 1_000_000_000
# The moments a filter may name: what a datetime can show in any time zone (a day
# inside years 1..9999), so an age like 99999999999d is a 400, not an overflow.
_EARLIEST_DATE, _LATEST_DATE = date(1, 1, 2), date(9999, 12, 30)
EARLIEST = datetime.combine(_EARLIEST_DATE, dt_time(), UTC).timestamp()
LATEST = datetime.combine(_LATEST_DATE, dt_time(), UTC).timestamp()


class SearchError(DomainError):
    """A request the service refuses; `parameter` is the query parameter at fault."""

    code = "bad_request"

    def __init__(self, parameter: str, message: str, code: str = "bad_request") -> None:
        super().__init__(message, code=code, parameter=parameter)
        self.parameter = parameter


@dataclass(frozen=True, slots=True)
class Filters:
    """Which notes may appear; None means no restriction."""

    vault: str | None = None
    folder: str | None = None  # vault-relative, no leading or trailing slash
    tag: str | None = None  # normalised like the parser stores tags; matches nested tags
    since_ns: int | None = None  # note mtime >= since
    before_ns: int | None = None  # note mtime < before

    @property
    def active(self) -> bool:
        return any(
            value is not None
            for value in (self.vault, self.folder, self.tag, self.since_ns, self.before_ns)
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "vault": self.vault,
            "folder": self.folder,
            "tag": self.tag,
            "since": _iso(self.since_ns),
            "before": _iso(self.before_ns),
        }


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str
    mode: Mode = "hybrid"
    limit: int = 10
    offset: int = 0
    threshold: float = 0.2
    filters: Filters = field(default_factory=Filters)

    @property
    def cache_key(self) -> tuple[object, ...]:
        return (self.query, self.mode, self.limit, self.offset, self.threshold, self.filters)


def parse_request(
    params: Mapping[str, str],
    config: SearchConfig,
    now: float | None = None,
    vaults: Collection[str] | None = None,
) -> SearchRequest:
    """The request in `params` (query-string values), or SearchError naming what is wrong.

    With `vaults` (the configured names), a `vault=` naming none of them is a 404.
    """
    query = normalise_query(params.get("q", ""))
    if not query:
        raise SearchError("q", "q is empty: give the text to search for, e.g. ?q=espresso")
    if len(query) > config.max_query_chars:
        raise SearchError(
            "q",
            f"the query is {len(query)} characters long; the longest accepted is "
            f"{config.max_query_chars} (search.max_query_chars)",
            code="query_too_long",
        )
    mode = params.get("mode") or "hybrid"
    if mode not in MODES:
        raise SearchError("mode", f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    limit = _integer(params, "limit", config.default_limit)
    if not 1 <= limit <= config.max_limit:
        raise SearchError(
            "limit",
            f"limit must be between 1 and {config.max_limit} (search.max_limit), got {limit}",
            code="limit_out_of_range",
        )
    offset = _integer(params, "offset", 0)
    if not 0 <= offset <= MAX_OFFSET:
        raise SearchError("offset", f"offset must be between 0 and {MAX_OFFSET}, got {offset}")
    threshold = _threshold(params, config.similarity_threshold)
    return SearchRequest(
        query=query,
        mode=mode,
        limit=limit,
        offset=offset,
        threshold=threshold,
        filters=parse_filters(params, time.time() if now is None else now, vaults),
    )


def normalise_query(text: str) -> str:
    """Whitespace runs become one space: `a  b` and `a b` are the same search (and cache key)."""
    return _WHITESPACE.sub(" ", text).strip()


def parse_filters(
    params: Mapping[str, str], now: float, vaults: Collection[str] | None = None
) -> Filters:
    vault = params.get("vault", "").strip() or None
    if vault is not None and vaults is not None and vault not in vaults:
        known = ", ".join(vaults) or "none"
        raise SearchError("vault", f"no vault named {vault!r}; configured: {known}", "not_found")
    folder = params.get("folder", "").strip().strip("/") or None
    raw_tag = params.get("tag", "").strip()
    tag = None
    if raw_tag:
        tag = normalize_tag(raw_tag)
        if tag is None:
            raise SearchError(
                "tag", f"{raw_tag!r} is not a valid tag (e.g. coffee or #coffee/beans)"
            )
    since = parse_moment(params.get("since", ""), "since", now)
    before = parse_moment(params.get("before", ""), "before", now)
    if since is not None and before is not None and since >= before:
        raise SearchError("since", "since must be earlier than before")
    return Filters(
        vault=vault,
        folder=folder,
        tag=tag,
        since_ns=since,
        before_ns=before,
    )


def parse_moment(raw: str, parameter: str, now: float) -> int | None:
    """`2024-05-01`, `2024-05-01T08:30`, or an age like `90m`, `12h`, `7d`, `2w`: Unix ns."""
    text = raw.strip()
    if not text:
        return None
    relative = _RELATIVE.match(text.lower())
    if relative:
        seconds = now - float(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise SearchError(
                parameter,
                f"{parameter} must be a date (2024-05-01), a date and time (2024-05-01T08:30) "
                f"or an age (90m, 12h, 7d, 2w), got {raw!r}",
            ) from None
        try:
            # A date without a zone is the reader's local time, as a person means it.
            seconds = moment.astimezone().timestamp()
        except (ValueError, OverflowError, OSError):
            seconds = math.nan  # at the very edge of year 1 or 9999: outside the range
    if not EARLIEST <= seconds <= LATEST:
        raise SearchError(
            parameter,
            f"{parameter} {raw!r} is out of range: a date or age must fall between "
            f"{_EARLIEST_DATE} and {_LATEST_DATE}",
            code="out_of_range",
        )
    return int(seconds * NANOSECONDS)


def _integer(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SearchError(name, f"{name} must be a whole number, got {raw!r}") from None


def _threshold(params: Mapping[str, str], default: float) -> float:
    raw = params.get("threshold", "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SearchError("threshold", f"threshold must be a number, got {raw!r}") from None
    if not -1.0 <= value <= 1.0:
        raise SearchError(
            "threshold", f"threshold is a cosine similarity between -1 and 1, got {value}"
        )
    return value


def _iso(nanoseconds: int | None) -> str | None:
    if nanoseconds is None:
        return None
    return datetime.fromtimestamp(nanoseconds / NANOSECONDS).astimezone().isoformat()
