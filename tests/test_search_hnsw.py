"""Semantic search through DuckDB's HNSW index, checked against exact search.

A copy of the example vault is indexed once with `storage.hnsw.enabled: true`
(real model, real DuckDB with the vss extension). Each check ranks the same
request twice: on the snapshot the service builds (no matrix, the index asks
DuckDB) and on its exact twin (the same snapshot with the chunk matrix), and
the answers must agree. On 15 notes HNSW is exact, so they agree exactly; the
recall of larger collections is measured by `python -m benchmarks.hnsw`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from jarvisd.config import HnswConfig, SearchConfig, StorageConfig
from jarvisd.lifecycle import deadline_in
from jarvisd.search import SearchService, semantic
from jarvisd.search.ranking import rank
from jarvisd.search.request import parse_request
from jarvisd.search.snapshot import Snapshot, build_snapshot
from jarvisd.search.terms import Stemmer
from jarvisd.store import Store
from jarvisd.store.vectors import nearest_sql, vector_literal
from jarvisd.testing import IndexedVault, copy_example_vault, vault_config

pytestmark = pytest.mark.slow
QUERIES = (
    "my levain went pink and smells strange",
    "espresso grind size",
    "how do I plan a trip",
    "notes",
)


Indexed = IndexedVault


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Indexed]:
    root = tmp_path_factory.mktemp("hnsw")
    database = root / "db" / "jarvis.duckdb"
    config = vault_config(
        copy_example_vault(root / "vault"),
        database,
        storage=StorageConfig(database=database, threads=1, hnsw=HnswConfig(enabled=True)),
        search=SearchConfig(max_limit=20, default_limit=5),
    )
    with IndexedVault.indexed(config) as state:
        assert state.store.has_vector_index
        yield state


def exact_twin(store: Store, snapshot: Snapshot) -> Snapshot:
    """The same snapshot with the chunk matrix in it, as the store without HNSW gives it."""
    matrix = store.chunk_matrix()
    rows, known = snapshot.rows_of(matrix.ids)
    assert known.all()
    vectors = np.zeros_like(matrix.vectors)
    vectors[rows] = matrix.vectors
    return dataclasses.replace(snapshot, vectors=vectors, vector_table=None, delta_vectors=None)


def ranked(indexed: Indexed, snapshot: Snapshot, **params: Any) -> list[tuple[str, float]]:
    request = parse_request({k: str(v) for k, v in params.items()}, indexed.config.search)
    found = rank(
        indexed.store,
        Stemmer(),
        snapshot,
        request,
        indexed.config.search,
        indexed.embedder.encode_query,
    )
    return [(hit.path, hit.score) for hit in found.results]


def assert_same(indexed: Indexed, snapshot: Snapshot, **params: Any) -> list[tuple[str, float]]:
    by_index = ranked(indexed, snapshot, **params)
    exact = ranked(indexed, exact_twin(indexed.store, snapshot), **params)
    assert [path for path, _ in by_index] == [path for path, _ in exact], params
    assert np.allclose([s for _, s in by_index], [s for _, s in exact], atol=1e-5), params
    return by_index


# ---------------------------------------------------------------------------- the path


def test_with_hnsw_the_snapshot_holds_no_matrix_and_duckdb_uses_the_index(
    indexed: Indexed,
) -> None:
    snapshot = build_snapshot(indexed.store, 0, with_vectors=True)
    assert snapshot.vector_index and snapshot.vectors is None
    assert snapshot.describe()["semantic_source"] == "hnsw"
    assert snapshot.vector_table is not None and snapshot.delta_rows.shape == (0,)
    vector = indexed.embedder.encode_query("espresso")
    literal = vector_literal(vector, indexed.store.dimension)
    plan = indexed.store.reader().execute(
        "EXPLAIN " + nearest_sql(snapshot.vector_table.name, literal, 10)
    )
    assert "HNSW_INDEX_SCAN" in str(plan.fetchall())


@pytest.mark.parametrize("mode", ["semantic", "hybrid"])
@pytest.mark.parametrize("query", QUERIES)
def test_the_index_answers_as_exact_search_does(indexed: Indexed, mode: str, query: str) -> None:
    snapshot = build_snapshot(indexed.store, 0, with_vectors=True)
    results = assert_same(indexed, snapshot, q=query, mode=mode, limit=10, threshold=0)
    assert results
    # Filters, a threshold and a later page too.
    assert_same(indexed, snapshot, q=query, mode=mode, folder="Coffee", threshold=0)
    assert_same(indexed, snapshot, q=query, mode=mode, tag="baking", threshold=0)
    assert_same(indexed, snapshot, q=query, mode=mode, threshold=0.3)
    assert_same(indexed, snapshot, q=query, mode=mode, limit=4, offset=4, threshold=0)


def test_the_fetch_grows_until_enough_notes_qualify(
    indexed: Indexed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few chunks per fetch and no exact shortcut: the same answer, from several fetches."""
    monkeypatch.setattr(semantic, "EXACT_CHUNKS", 0)
    monkeypatch.setattr(semantic, "MIN_FETCH", 1)
    monkeypatch.setattr(semantic, "FETCH_PER_NOTE", 1)
    fetches: list[int] = []
    nearest = indexed.store.nearest_chunks

    def counted(table: str, vector: Any, k: int) -> Any:
        fetches.append(k)
        return nearest(table, vector, k)

    monkeypatch.setattr(indexed.store, "nearest_chunks", counted)
    snapshot = build_snapshot(indexed.store, 0, with_vectors=True)
    results = assert_same(indexed, snapshot, q="coffee", mode="semantic", limit=8, threshold=0)
    assert len(results) == 8
    assert len(fetches) >= 2 and fetches == sorted(fetches)  # grew, 4x at a time
    # A threshold ends the growth once the last chunk fetched is below it.
    fetches.clear()
    assert_same(indexed, snapshot, q="coffee", mode="semantic", limit=20, threshold=0.95)
    assert len(fetches) == 1


@pytest.mark.parametrize("fusion", ["adaptive", "convex", "rrf"])
@pytest.mark.parametrize("query", QUERIES)
def test_hybrid_scores_only_the_keyword_candidates_that_could_reach_the_page(
    indexed: Indexed, monkeypatch: pytest.MonkeyPatch, fusion: str, query: str
) -> None:
    """A small fetch leaves keyword candidates without a cosine: the answer stays exact."""
    monkeypatch.setattr(semantic, "MIN_FETCH", 1)
    monkeypatch.setattr(semantic, "FETCH_PER_NOTE", 1)
    hybrid = indexed.config.search.hybrid.model_copy(update={"candidates": 3, "fusion": fusion})
    search = indexed.config.search.model_copy(update={"hybrid": hybrid})
    monkeypatch.setattr(indexed, "config", indexed.config.model_copy(update={"search": search}))
    filled: list[int] = []
    similarities = indexed.store.chunk_similarities

    def counted(vector: Any, note_ids: Any) -> Any:
        filled.append(len(note_ids))
        return similarities(vector, note_ids)

    monkeypatch.setattr(indexed.store, "chunk_similarities", counted)
    snapshot = build_snapshot(indexed.store, 0, with_vectors=True)
    for limit in (1, 3):
        assert_same(indexed, snapshot, q=query, mode="hybrid", limit=limit, threshold=0)
    assert sum(filled) <= 2 * 3  # never more than the keyword side's candidates


def test_past_the_fetch_limit_search_is_exact_in_duckdb(
    indexed: Indexed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(semantic, "EXACT_CHUNKS", 0)
    monkeypatch.setattr(semantic, "MIN_FETCH", 1)
    monkeypatch.setattr(semantic, "FETCH_PER_NOTE", 1)
    monkeypatch.setattr(semantic, "MAX_FETCH", 2)
    snapshot = build_snapshot(indexed.store, 0, with_vectors=True)
    results = assert_same(indexed, snapshot, q="bread", mode="semantic", limit=15, threshold=-1)
    assert len(results) == snapshot.note_count == 15
    assert_same(indexed, snapshot, q="bread", mode="semantic", folder="Baking", threshold=-1)


def test_chunks_written_after_the_snapshot_are_skipped(indexed: Indexed) -> None:
    """Mid-run the index already holds chunks the snapshot lacks: they never reach a result."""
    snapshot = build_snapshot(indexed.store, 0, with_vectors=True)
    ids = np.append(snapshot.chunk_ids[:3], snapshot.chunk_ids.max() + 1000)
    scores = semantic.scores_from_chunks(snapshot, ids, np.array([0.5, 0.9, 0.7, 1.0]))
    finite = np.flatnonzero(np.isfinite(scores.scores))
    assert 1 <= finite.shape[0] <= 3
    assert scores.scores.max() == pytest.approx(0.9)


async def test_notes_written_after_the_vector_table_are_found_before_any_rebuild(
    indexed: Indexed,
) -> None:
    """An edit does not rebuild the HNSW copy: its new chunks are scored exactly, the
    chunks it replaced are never returned, and the answer equals exact search's."""
    vault = indexed.config.vaults[0].path
    note = vault / "Garden" / "Slugs.md"
    note.parent.mkdir(exist_ok=True)
    note.write_text("# Slugs\n\nBeer traps and copper tape keep slugs off lettuce.\n")
    starter = vault / "Baking" / "Starter maintenance.md"
    original = starter.read_text(encoding="utf-8")
    starter.write_text(original + "\nThe jar now lives beside the oven.\n", encoding="utf-8")
    try:
        table = indexed.store.vector_table
        report = await indexed.indexer().run()
        assert report.state == "done" and report.changed
        assert indexed.store.vector_table == table  # far below the rebuild share
        snapshot = build_snapshot(indexed.store, 0, with_vectors=True)
        assert snapshot.delta_rows.shape[0] >= 2
        found = assert_same(indexed, snapshot, q="keeping slugs away", mode="semantic")
        assert found[0][0] == "Garden/Slugs.md"
        assert_same(indexed, snapshot, q="my levain went pink", mode="hybrid", threshold=0)
    finally:
        note.unlink()
        starter.write_text(original, encoding="utf-8")
        assert (await indexed.indexer().run()).state == "done"


def test_a_query_vector_of_the_wrong_shape_never_reaches_sql() -> None:
    with pytest.raises(ValueError, match="384"):
        vector_literal(np.zeros(3, dtype=np.float32), 384)
    with pytest.raises(ValueError, match="finite"):
        vector_literal(np.full(384, np.nan, dtype=np.float32), 384)
    literal = vector_literal(np.full(384, 0.5, dtype=np.float32), 384)
    assert literal.startswith("'[0.5,") and literal.endswith("]'::FLOAT[384]")


# ----------------------------------------------------------- the index comes and goes


async def test_the_service_follows_the_index_as_it_is_dropped_and_created(
    indexed: Indexed,
) -> None:
    service = SearchService(
        indexed.config, indexed.store, indexed.embedder, indexed.pools, indexed.metrics
    )
    indexer = indexed.indexer()
    indexer.on_change(service.invalidate)
    await service.start()
    try:
        params = {"q": "sourdough starter", "mode": "semantic", "threshold": "0"}
        with_index = await service.search_params(params)
        assert service.stats()["snapshot"]["semantic_source"] == "hnsw"
        # storage.hnsw.enabled: false; the next run drops the index, the snapshot follows.
        off = indexed.config.storage.model_copy(update={"hnsw": HnswConfig(enabled=False)})
        indexed.store.configure(off)
        report = await indexer.run()
        assert report.state == "done" and not report.changed
        assert not indexed.store.has_vector_index
        without = await service.search_params(params)
        assert service.stats()["snapshot"]["semantic_source"] == "matrix"
        assert [hit.path for hit in without.results] == [hit.path for hit in with_index.results]
    finally:
        indexed.store.configure(indexed.config.storage)
        await indexer.run()
        await service.stop(deadline_in(10))
    assert indexed.store.has_vector_index
