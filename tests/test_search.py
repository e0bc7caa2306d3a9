"""Search in-process over a copy of the example vault: real model, real DuckDB, real indexer.

The vault is indexed once per module (the model loads once); each test builds
its own SearchService on that store, as Knowledge.start() does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from fixtures_bm25 import FtsReference

from jarvisd.api.errors import from_domain
from jarvisd.config import ResultCacheConfig, SearchConfig, diff_configs
from jarvisd.lifecycle import deadline_in
from jarvisd.model.intraop import IntraOpThreads
from jarvisd.observe.memory import MemoryMode
from jarvisd.search import SearchError, SearchService
from jarvisd.search.fusion import KEYWORD_SHARE_HIGH, KEYWORD_SHARE_LOW, query_content
from jarvisd.search.postings import ChunkScores
from jarvisd.search.snapshot import build_snapshot
from jarvisd.search.terms import Stemmer, query_stems, tokenize
from jarvisd.store import Store
from jarvisd.testing import IndexedVault, copy_example_vault, vault_config

pytestmark = pytest.mark.slow


Indexed = IndexedVault


def _moment(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone().timestamp())


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Indexed]:
    root = tmp_path_factory.mktemp("search")
    vault = copy_example_vault(root / "vault")
    # Known modification times for the date filters: 2023 for all, 2024 for two folders.
    for path in vault.rglob("*.md"):
        folder = path.relative_to(vault).parts[0]
        moment = {"Coffee": "2024-03-01T12:00", "Daily": "2024-05-01T12:00"}.get(
            folder, "2023-06-01T12:00"
        )
        os.utime(path, (_moment(moment), _moment(moment)))
    search = SearchConfig(max_limit=20, default_limit=5, max_query_chars=200)
    config = vault_config(vault, root / "db" / "jarvis.duckdb", search=search)
    with IndexedVault.indexed(config) as state:
        yield state


async def search(service: SearchService, **params: Any) -> dict[str, Any]:
    reply = await service.search_params({key: str(value) for key, value in params.items()})
    return reply.as_dict()  # as the wire carries it


def paths(reply: dict[str, Any]) -> list[str]:
    return [result["path"] for result in reply["results"]]


# ---------------------------------------------------------------------------- modes


async def test_keyword_mode_ranks_by_bm25_with_highlighted_stems(indexed: Indexed) -> None:
    reply = await search(indexed.service(), q="sourdough starter", mode="keyword")
    assert reply["mode"] == "keyword" and not reply["degraded"] and not reply["cached"]
    top = reply["results"][0]
    assert top["path"] in {"Baking/Starter maintenance.md", "Baking/Sourdough.md"}
    assert top["modes"] == ["keyword"] and set(top["scores"]) == {"keyword"}
    assert {"vault", "path", "title", "snippet", "highlights", "heading_path", "score"} <= set(top)
    marked = {top["snippet"][a:b].lower() for a, b in top["highlights"]}
    assert marked and marked <= {"sourdough", "starter", "starters"}
    # Stems match: `bake` marks `baking` and `bakes`.
    baked = await search(indexed.service(), q="bake", mode="keyword", limit=20)
    words = {r["snippet"][a:b].lower() for r in baked["results"] for a, b in r["highlights"]}
    assert {"baking", "bake"} & words and words <= {"bake", "bakes", "baking", "baked"}


async def test_semantic_mode_finds_meaning_without_shared_words(indexed: Indexed) -> None:
    query = "my levain went pink and smells strange"  # the note says starter, streaks, hooch
    reply = await search(indexed.service(), q=query, mode="semantic", threshold=0)
    assert reply["results"][0]["path"] == "Baking/Starter maintenance.md"
    assert all(r["modes"] == ["semantic"] for r in reply["results"])
    scores = [r["score"] for r in reply["results"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    # The threshold drops everything below it.
    strict = await search(indexed.service(), q=query, mode="semantic", threshold=0.99)
    assert strict["results"] == [] and strict["total"] == 0


async def test_hybrid_is_the_default_and_says_which_modes_found_each_note(indexed: Indexed) -> None:
    reply = await search(indexed.service(), q="espresso grind size")
    assert reply["mode"] == "hybrid"
    assert reply["results"][0]["path"] in {"Coffee/Espresso.md", "Coffee/Grinder dial-in log.md"}
    both = [r for r in reply["results"] if r["modes"] == ["semantic", "keyword"]]
    assert both and all(set(r["scores"]) == {"semantic", "keyword"} for r in both)
    assert len(set(paths(reply))) == len(paths(reply))  # one result per note


async def test_snippet_is_the_best_chunk_with_its_heading_path(indexed: Indexed) -> None:
    reply = await search(indexed.service(), q="hooch grey liquid", mode="keyword")
    top = reply["results"][0]
    assert top["path"] == "Baking/Starter maintenance.md"
    assert top["heading_path"][-1] == "When it looks wrong"
    assert "hooch" in top["snippet"].lower()
    first, last = top["lines"]
    assert 1 <= first <= last


# -------------------------------------------------------------------------- filters


async def test_folder_and_vault_filters(indexed: Indexed) -> None:
    service = indexed.service()
    reply = await search(service, q="notes about coffee", folder="Coffee/", limit=20)
    assert paths(reply) and all(p.startswith("Coffee/") for p in paths(reply))
    assert reply["filters"]["folder"] == "Coffee"
    with pytest.raises(SearchError) as unknown:  # a vault that is not configured: 404
        await search(service, q="coffee", vault="other")
    assert (from_domain(unknown.value).status, unknown.value.code) == (404, "not_found")
    assert paths(await search(service, q="coffee", vault="notes"))


async def test_tag_filter_matches_frontmatter_inline_and_nested_tags(indexed: Indexed) -> None:
    service = indexed.service()
    baking = await search(service, q="bread", tag="#baking", limit=20)
    assert set(paths(baking)) >= {"Baking/Sourdough.md", "Baking/Starter maintenance.md"}
    # `coffee/espresso` is only on Espresso (frontmatter and inline); nested under `coffee`.
    nested = await search(service, q="coffee", tag="coffee/espresso", limit=20)
    assert paths(nested) == ["Coffee/Espresso.md"]
    parent = await search(service, q="coffee", tag="coffee", limit=20)
    assert "Coffee/Espresso.md" in paths(parent)


async def test_modified_since_and_before(indexed: Indexed) -> None:
    service = indexed.service()
    recent = await search(service, q="coffee", since="2024-01-01", limit=20)
    assert paths(recent) and all(p.split("/")[0] in {"Coffee", "Daily"} for p in paths(recent))
    older = await search(service, q="coffee", before="2024-01-01", limit=20)
    assert paths(older) and not any(p.startswith("Coffee/") for p in paths(older))
    window = await search(service, q="coffee", since="2024-04-01", before="2024-06-01T00:00")
    assert paths(window) == ["Daily/2024-05-01.md"]
    assert (await search(service, q="coffee", since="1d"))["results"] == []  # an age


# ------------------------------------------------------------------------ pagination


async def test_pages_follow_each_other_without_overlap(indexed: Indexed) -> None:
    service = indexed.service()
    whole = await search(service, q="notes", mode="hybrid", limit=10)
    first = await search(service, q="notes", mode="hybrid", limit=4)
    second = await search(service, q="notes", mode="hybrid", limit=4, offset=first["next_offset"])
    assert first["next_offset"] == 4 and first["total"] == whole["total"] >= 8
    assert paths(first) + paths(second) == paths(whole)[:8]
    last = await search(service, q="notes", limit=4, offset=whole["total"] - 1)
    assert len(last["results"]) == 1 and last["next_offset"] is None


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("params", "code", "mentions"),
    [
        ({"q": "x" * 201}, "query_too_long", "search.max_query_chars"),
        ({"q": "coffee", "limit": "21"}, "limit_out_of_range", "search.max_limit"),
        ({"q": "coffee", "limit": "0"}, "limit_out_of_range", "between 1 and 20"),
        ({"q": "coffee", "limit": "ten"}, "bad_request", "whole number"),
        ({"q": "coffee", "offset": "-1"}, "bad_request", "offset"),
        ({"q": "coffee", "mode": "fuzzy"}, "bad_request", "hybrid, semantic, keyword"),
        ({"q": "coffee", "threshold": "2"}, "bad_request", "between -1 and 1"),
        ({"q": "coffee", "since": "last tuesday"}, "bad_request", "2024-05-01"),
        ({"q": "coffee", "tag": "#"}, "bad_request", "not a valid tag"),
        ({"q": "   "}, "bad_request", "q is empty"),
    ],
)
async def test_requests_past_a_bound_are_refused_with_the_bound_named(
    indexed: Indexed, params: dict[str, str], code: str, mentions: str
) -> None:
    with pytest.raises(SearchError) as raised:
        await indexed.service().search_params(params)
    assert raised.value.code == code
    assert mentions in raised.value.message


async def test_query_text_is_never_sql(indexed: Indexed) -> None:
    service = indexed.service()
    for query in ("'; DROP TABLE notes; --", '"); DELETE FROM chunks; --', "a' OR '1'='1"):
        for mode in ("keyword", "hybrid"):
            reply = await search(service, q=query, mode=mode, folder="x'; DROP TABLE tags; --")
            assert reply["query"] == query and reply["results"] == []
    counts = indexed.store.stats()
    assert counts["notes"] == 15 and counts["tags"] > 0


# ------------------------------------------------------------------------------ BM25


@pytest.mark.parametrize(
    "query",
    ["sourdough starter", "espresso grind finer sour", "Café 2024", "the flat white milk", "28"],
)
def test_bm25_scores_equal_match_bm25(indexed: Indexed, query: str) -> None:
    """The store's own index scores as DuckDB fts's `match_bm25` does over the same text."""
    stems = query_stems(indexed.store, Stemmer(), query)
    reference = FtsReference(indexed.store)
    try:
        theirs = reference.scores(query)
    finally:
        reference.close()
    assert theirs
    in_memory = build_snapshot(indexed.store, 0, with_vectors=False).postings.score(stems)
    in_sql = ChunkScores(*indexed.store.bm25_reference(stems), 0.0)
    for scores, tolerance in ((in_memory, 1e-6), (in_sql, 1e-9)):
        ours = dict(zip(scores.chunk_ids.tolist(), scores.scores.tolist(), strict=True))
        assert ours.keys() == theirs.keys()
        for chunk, score in theirs.items():
            assert ours[chunk] == pytest.approx(score, rel=tolerance)
    # The bound is what a chunk holding every term, saturated, would score.
    assert in_memory.bound >= max(theirs.values())


def test_tokenizer_matches_the_index_tokenizer(indexed: Indexed) -> None:
    text = "Café au lait, 93 °C; naïve RE-USE of the_V60 (2024-05-01)"
    reference = FtsReference(indexed.store)
    try:
        assert tokenize(text) == reference.tokenize(text)
    finally:
        reference.close()


# ---------------------------------------------------------------------------- caches


async def test_a_repeated_search_is_cached_and_counted(indexed: Indexed) -> None:
    service = indexed.service()
    first = await search(service, q="flat white milk")
    again = await search(service, q="  flat   white milk ")  # the same search, normalised
    assert not first["cached"] and again["cached"]
    assert again["results"] == first["results"]
    caches = service.stats()["caches"]
    assert caches["results"]["hits"] == 1 and caches["results"]["entries"] == 1
    assert caches["query_embeddings"]["capacity"] == indexed.config.embedding.query_cache_size
    hits = indexed.metrics.registry.get_sample_value(
        "jarvis_cache_hits_total", {"cache": "results"}
    )
    assert hits is not None and hits >= 1


async def test_a_change_reported_during_shutdown_builds_no_snapshot(indexed: Indexed) -> None:
    """Stopping cancels indexing, whose run still reports its change: the store is about
    to close, so nothing may start reading it (that failed with an error in the log)."""
    service = indexed.service()
    await service.start()
    await service.search_params({"q": "bread", "mode": "keyword"})
    await service.stop(deadline_in(10))
    service.invalidate()
    assert service._refresh is None


async def test_an_edit_is_searchable_at_once_and_the_old_text_is_gone(indexed: Indexed) -> None:
    service = indexed.service()
    await service.start()
    note = indexed.vault / "Projects" / "Workshop shelf.md"
    original = note.read_text(encoding="utf-8")
    before = await search(service, q="birch plywood", mode="keyword")
    assert "Projects/Workshop shelf.md" in paths(before)
    assert (await search(service, q="birch plywood", mode="keyword"))["cached"]
    try:
        note.write_text(original.replace("birch plywood", "walnut veneer"), encoding="utf-8")
        await indexed.index(service)
        for mode in ("keyword", "semantic", "hybrid"):
            new = await search(service, q="walnut veneer", mode=mode)
            assert not new["cached"]
            shelf = [r for r in new["results"] if r["path"] == "Projects/Workshop shelf.md"]
            assert shelf and "walnut veneer" in shelf[0]["snippet"]
            assert all("birch plywood" not in r["snippet"] for r in new["results"])
        old = await search(service, q="birch plywood", mode="keyword")
        assert "Projects/Workshop shelf.md" not in paths(old)
    finally:
        note.write_text(original, encoding="utf-8")
        await indexed.index(service)
        await service.stop(deadline_in(10))


async def test_a_note_subject_lifts_its_semantic_score_until_turned_off(indexed: Indexed) -> None:
    """A frontmatter description the text does not say: the note's subject vector (title,
    aliases, description) credits it, cosine = chunk + mix * max(0, subject - chunk), from
    the edit on (a patched snapshot); `search.subject_mix: 0` reloads live to chunks alone."""
    service = indexed.service()
    await service.start()
    note = indexed.vault / "Projects" / "Workshop shelf.md"
    original = note.read_text(encoding="utf-8")
    description = "Keeping hand tools dry and free of rust in a damp garage"
    query = "how do I stop my chisels rusting when the garage is humid"
    config = indexed.config
    off = config.model_copy(
        update={"search": config.search.model_copy(update={"subject_mix": 0.0})}
    )

    async def score() -> float:
        reply = await search(service, q=query, mode="semantic", threshold=0, limit=20)
        found = [r for r in reply["results"] if r["path"] == "Projects/Workshop shelf.md"]
        assert found, paths(reply)
        return float(found[0]["score"])

    try:
        note.write_text(
            original.replace("status: in progress", f"description: {description}"),
            encoding="utf-8",
        )
        await indexed.index(service)
        lifted = await score()
        assert service.stats()["snapshot"]["patched_notes"] == 1  # the edit, patched in
        service.reconfigure(off, diff_configs(config, off)[1])
        bare = await score()
        subject = indexed.embedder.encode([f"Workshop shelf. {description}"])[0]
        cosine = float(subject @ indexed.embedder.encode_query(query))
        assert cosine > bare  # the subject says what the text does not
        mix = config.search.subject_mix
        assert lifted == pytest.approx(bare + mix * (cosine - bare), abs=1e-5) and lifted > bare
    finally:
        service.reconfigure(config, diff_configs(off, config)[1])
        note.write_text(original, encoding="utf-8")
        await indexed.index(service)
        await service.stop(deadline_in(10))


async def test_hybrid_leans_on_meaning_for_questions_and_on_bm25_for_terms(
    indexed: Indexed,
) -> None:
    """The adaptive fusion weighs each query by the share of its words that are the index's
    terms (jarvisd.search.fusion): stopwords and words no note holds are not; a question
    made mostly of them gets the cosine at 0.9, a query of the vault's own words at 0.55,
    and the reply says which weight it got; a one-mode reply has none."""
    service = indexed.service()
    await service.start()
    postings = build_snapshot(indexed.store, 0, with_vectors=False).postings
    stemmer = Stemmer()

    def content(query: str) -> float:
        stems = query_stems(indexed.store, stemmer, query)
        return query_content(postings, stems, len(tokenize(query)))

    try:
        # "how", "do", "i", "it", "to", "be", "so" are stopwords; "bitter" is a term.
        question = "how do I get it to be so bitter"
        assert content(question) == pytest.approx(1 / 9)
        terms = "espresso grinder burr"
        assert content(terms) == 1.0
        assert content("espresso espresso") == 0.5  # repeats are words, one term
        assert content("espresso qwzxv") == 0.5  # no note holds the second word
        assert content("") == 0.0
        asked = await search(service, q=question, mode="hybrid")
        assert asked["semantic_weight"] == pytest.approx(1 - KEYWORD_SHARE_LOW)
        listed = await search(service, q=terms, mode="hybrid")
        assert listed["semantic_weight"] == pytest.approx(1 - KEYWORD_SHARE_HIGH)
        halfway = "espresso grinder burr the and of the and"  # 3 of 8: on the ramp's foot
        assert content(halfway) == pytest.approx(3 / 8)
        assert (await search(service, q=halfway))["semantic_weight"] == pytest.approx(0.9)
        assert "semantic_weight" not in await search(service, q=terms, mode="semantic")
        assert "semantic_weight" not in await search(service, q=terms, mode="keyword")
    finally:
        await service.stop(deadline_in(10))


async def test_edits_leave_dead_rows_that_a_background_build_compacts(indexed: Indexed) -> None:
    """Each edit is patched in (its old chunks dead); past 20 % dead rows the service
    builds a whole snapshot off the hot path and swaps it in, with the same answers."""
    service = indexed.service()
    await service.start()
    note = indexed.vault / "Projects" / "Workshop shelf.md"
    original = note.read_text(encoding="utf-8")
    dead: list[int] = []
    compacted = None
    try:
        for number in range(12):
            note.write_text(original + f"\n\nRevision marker zq{number}x.\n", encoding="utf-8")
            await indexed.index(service)
            reply = await search(service, q=f"zq{number}x", mode="keyword")
            assert paths(reply) == ["Projects/Workshop shelf.md"]
            snapshot = service._snapshot
            assert snapshot is not None
            dead.append(snapshot.dead_chunks)
            if service._compaction is not None:
                await service._compaction
                compacted = service._snapshot
                break
        assert compacted is not None and dead[-1] > 0, dead
        assert compacted.patched_notes == 0 and compacted.dead_chunks == 0
        assert dead == sorted(dead) and len(dead) >= 2  # patches until then, rows piling up
        after = await search(service, q=f"zq{len(dead) - 1}x", mode="hybrid")
        assert paths(after)[0] == "Projects/Workshop shelf.md"
        assert not (await search(service, q="zq0x", mode="keyword"))["results"]  # replaced
    finally:
        note.write_text(original, encoding="utf-8")
        await indexed.index(service)
        await service.stop(deadline_in(10))


async def test_caches_reconfigure_live_and_shrink_with_memory(indexed: Indexed) -> None:
    service = indexed.service()
    for number in range(6):
        await search(service, q=f"coffee {number}", mode="keyword")
    assert service.stats()["caches"]["results"]["entries"] == 6
    smaller = indexed.config.model_copy(
        update={
            "search": indexed.config.search.model_copy(
                update={"cache": ResultCacheConfig(size=4, ttl=60)}
            )
        }
    )
    service.reconfigure(smaller, diff_configs(indexed.config, smaller)[1])
    results = service.stats()["caches"]["results"]
    assert results["capacity"] == 4 and results["entries"] <= 4 and results["ttl_seconds"] == 60
    service.on_memory_mode(MemoryMode.LITE)
    assert service.stats()["caches"]["results"]["capacity"] == 2
    service.on_memory_mode(MemoryMode.FULL)
    assert service.stats()["caches"]["results"]["capacity"] == 4


# ---------------------------------------------------------------------- memory modes


async def test_minimal_memory_answers_from_keywords_and_says_so(indexed: Indexed) -> None:
    service = indexed.service()
    service.on_memory_mode(MemoryMode.MINIMAL)
    for mode in ("semantic", "hybrid"):
        reply = await search(service, q="sourdough starter", mode=mode)
        assert reply["degraded"] and "MINIMAL" in reply["degraded_reason"]
        assert reply["mode"] == mode and reply["results"]
        assert all(r["modes"] == ["keyword"] for r in reply["results"])
    keyword = await search(service, q="sourdough starter", mode="keyword")
    assert not keyword["degraded"]
    assert service.stats()["snapshot"]["vectors_loaded"] is False
    service.on_memory_mode(MemoryMode.FULL)
    back = await search(service, q="sourdough starter", mode="semantic")
    assert not back["degraded"] and back["results"][0]["modes"] == ["semantic"]
    assert service.stats()["snapshot"]["vectors_loaded"] is True


# ------------------------------------------------------------------- CPU sharing


def _in_thread(work: Callable[[], int]) -> int:
    """Torch sizes its thread team per calling thread: measure it in a fresh one."""
    found: list[int] = []
    thread = threading.Thread(target=lambda: found.append(work()))
    thread.start()
    thread.join()
    return found[0]


def test_indexing_batches_leave_a_core_to_searches(indexed: Indexed) -> None:
    import torch  # loaded with the model by the module fixture

    threads = IntraOpThreads(cores=2)

    def batch_width() -> int:
        with threads.batch():
            return int(torch.get_num_threads())

    def query_width() -> int:
        threads.query()
        return int(torch.get_num_threads())

    assert _in_thread(batch_width) == 2  # indexing alone (nobody searched yet): every core
    threads.mark_interactive()
    assert _in_thread(batch_width) == 1  # someone searches: one core stays free
    assert _in_thread(query_width) == 2  # a query with no batch running: every core
    with threads.batch():
        assert _in_thread(query_width) == 1  # beside a batch: its own core only


async def test_replies_say_when_the_index_is_being_rebuilt(indexed: Indexed) -> None:
    service = indexed.service()
    await service.start()
    try:
        reply = await search(service, q="bread", mode="keyword")
        assert reply["rebuilding"] is False and "rebuilding_reason" not in reply
        service.rebuilding = lambda: "the database was damaged and replaced"
        again = await search(service, q="bread", mode="keyword")  # cached, marked all the same
        assert again["cached"] and again["rebuilding"] is True
        assert again["rebuilding_reason"] == "the database was damaged and replaced"
        assert paths(again) == paths(reply)
    finally:
        await service.stop(deadline_in(10))


async def test_a_failed_search_reports_its_error_for_recovery(indexed: Indexed) -> None:
    """A store that cannot answer (closed here, damaged in the daemon) reaches on_error."""
    seen: list[BaseException] = []
    other = Store(indexed.config.database_path.with_name("other.duckdb"), indexed.config.storage)
    service = SearchService(indexed.config, other, indexed.embedder, indexed.pools,
                            indexed.metrics)  # fmt: skip
    service.on_error = seen.append
    other.close()
    with pytest.raises(Exception, match="closed"):
        await search(service, q="bread", mode="keyword")
    assert seen and "closed" in str(seen[-1])
    await service.stop(deadline_in(10))
