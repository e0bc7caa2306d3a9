"""Search requests as values: every parameter past its range is a clear 4xx, never a 500."""

from __future__ import annotations

from datetime import datetime

import pytest

from jarvisd.api.errors import from_domain
from jarvisd.config import SearchConfig
from jarvisd.search.request import SearchError, SearchRequest, parse_request

NOW = datetime(2024, 6, 1, 12, 0).astimezone().timestamp()


def parse(vaults: tuple[str, ...] | None = ("notes", "work"), **params: str) -> SearchRequest:
    return parse_request({"q": "coffee", **params}, SearchConfig(), NOW, vaults)


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("since", "99999999999d"),  # issue 16: was a 500, "year ... out of range"
        ("before", "99999999999d"),
        ("since", "9" * 400 + "w"),  # a float overflowing to infinity
        ("since", "0001-01-01"),
        ("before", "0001-01-01T00:00+05:00"),
        ("before", "9999-12-31T23:59"),
    ],
)
def test_a_date_or_age_past_the_range_is_a_400_that_names_it(parameter: str, value: str) -> None:
    with pytest.raises(SearchError) as caught:
        parse(**{parameter: value})
    assert (from_domain(caught.value).status, caught.value.code) == (400, "out_of_range")
    assert caught.value.parameter == parameter
    assert "between 0001-01-02 and 9999-12-30" in caught.value.message


def test_dates_and_ages_inside_the_range_are_taken() -> None:
    request = parse(since="2w", before="9999-12-01")
    filters = request.filters
    assert filters.since_ns == int((NOW - 14 * 86_400) * 1_000_000_000)
    assert filters.as_dict()["before"].startswith("9999-12-01")
    assert parse(since="0001-01-03").filters.since_ns is not None


def test_a_vault_that_is_not_configured_is_a_404() -> None:
    with pytest.raises(SearchError) as caught:
        parse(vault="nosuch")
    assert (from_domain(caught.value).status, caught.value.code, caught.value.parameter) == (
        404,
        "not_found",
        "vault",
    )
    assert caught.value.message == "no vault named 'nosuch'; configured: notes, work"
    assert parse(vault="work").filters.vault == "work"
