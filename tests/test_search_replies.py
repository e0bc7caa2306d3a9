"""Search replies as values: the JSON they make is the shape the README documents."""

from __future__ import annotations

import json

from jarvisd.indexing.progress import Progress
from jarvisd.search.replies import SearchHit, SearchReply

HIT = SearchHit(
    vault="notes",
    path="Coffee/Espresso.md",
    title="Espresso",
    score=0.8125,
    scores={"semantic": 0.61, "keyword": 7.25},
    modes=("semantic", "keyword"),
    snippet="Grind finer when the shot runs fast.",
    highlights=((0, 5), (20, 24)),
    heading_path=("Espresso", "Dial-in"),
    lines=(12, 18),
    tags=("coffee/espresso",),
    modified="2024-03-01T12:00:00+00:00",
)


def test_a_reply_is_the_json_clients_read_with_arrays_as_lists() -> None:
    reply = SearchReply(
        query="espresso grind",
        mode="hybrid",
        limit=5,
        offset=0,
        total=1,
        next_offset=None,
        filters=None,
        results=(HIT,),
    ).answered(cached=False, took_ms=3.5, rebuilding=None, indexing=None)
    assert reply.as_dict() == {
        "query": "espresso grind",
        "mode": "hybrid",
        "limit": 5,
        "offset": 0,
        "total": 1,
        "next_offset": None,
        "filters": None,
        "degraded": False,
        "results": [
            {
                "vault": "notes",
                "path": "Coffee/Espresso.md",
                "title": "Espresso",
                "score": 0.8125,
                "scores": {"semantic": 0.61, "keyword": 7.25},
                "modes": ["semantic", "keyword"],
                "snippet": "Grind finer when the shot runs fast.",
                "highlights": [[0, 5], [20, 24]],
                "heading_path": ["Espresso", "Dial-in"],
                "lines": [12, 18],
                "tags": ["coffee/espresso"],
                "modified": "2024-03-01T12:00:00+00:00",
            }
        ],
        "rebuilding": False,
        "indexing": None,
        "cached": False,
        "took_ms": 3.5,
    }


def test_reasons_and_the_first_runs_progress_appear_only_when_there_are_some() -> None:
    cached = SearchReply(
        query="espresso",
        mode="semantic",
        limit=5,
        offset=0,
        total=0,
        next_offset=None,
        filters={"vault": "notes", "folder": None},
        results=(),
        degraded_reason="keyword search only",
    )
    first_run = Progress(run=1, phase="encoding", done=120, total=5000, chunks_encoded=900)
    sent = cached.answered(
        cached=True, took_ms=0.2, rebuilding="recovered", indexing=first_run
    ).as_dict()
    assert list(sent) == [
        "query",
        "mode",
        "limit",
        "offset",
        "total",
        "next_offset",
        "filters",
        "degraded",
        "results",
        "degraded_reason",
        "rebuilding",
        "rebuilding_reason",
        "indexing",
        "cached",
        "took_ms",
    ]
    assert sent["degraded"] is True and sent["degraded_reason"] == "keyword search only"
    assert sent["rebuilding"] is True and sent["rebuilding_reason"] == "recovered"
    assert sent["indexing"] == {"done": 120, "total": 5000, "phase": "encoding"}
    assert json.loads(json.dumps(sent)) == sent
    assert not cached.cached and cached.indexing is None  # the cached value is unchanged
