"""Fusion methods compared offline, on the same per-mode lists, on two halves of the queries.

Each method turns a query's semantic list (cosine) and keyword list (BM25) into
one ranking. The production method lives in jarvisd/search/fusion.py; the
others are here so the choice stays reproducible (`python -m benchmarks.beir
--study`). Tune on one half, read the other: a method that only wins where it
was tuned is not a choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jarvisd.config import HybridConfig
from jarvisd.search.fusion import fused_scores

Ranked = list[tuple[str, float]]
Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class ModeLists:
    semantic: Ranked
    keyword: Ranked
    keyword_bound: float  # the query's highest possible BM25 (jarvisd.search.postings)


Method = Callable[[ModeLists], list[str]]


def _union(lists: ModeLists) -> list[str]:
    return list(
        dict.fromkeys([doc for doc, _ in lists.semantic] + [doc for doc, _ in lists.keyword])
    )


def rrf(k: int, keyword_weight: float = 1.0) -> Method:
    def method(lists: ModeLists) -> list[str]:
        scores: dict[str, float] = {}
        for rank, (doc, _) in enumerate(lists.semantic):
            scores[doc] = scores.get(doc, 0.0) + 1 / (k + 1 + rank)
        for rank, (doc, _) in enumerate(lists.keyword):
            scores[doc] = scores.get(doc, 0.0) + keyword_weight / (k + 1 + rank)
        return sorted(scores, key=lambda doc: -scores[doc])

    return method


def convex(alpha: float) -> Method:
    """alpha * min-max(cosine) + (1 - alpha) * min-max(BM25); absent = 0."""

    def method(lists: ModeLists) -> list[str]:
        semantic = _min_max(dict(lists.semantic))
        keyword = _min_max(dict(lists.keyword))
        docs = _union(lists)
        return sorted(
            docs, key=lambda d: -(alpha * semantic.get(d, 0.0) + (1 - alpha) * keyword.get(d, 0.0))
        )

    return method


def calibrated(alpha: float) -> Method:
    """alpha * cosine + (1 - alpha) * BM25 / bound: both on absolute scales, no min-max."""

    def method(lists: ModeLists) -> list[str]:
        bound = lists.keyword_bound or 1.0
        semantic = dict(lists.semantic)
        keyword = {doc: score / bound for doc, score in lists.keyword}
        docs = _union(lists)
        return sorted(
            docs, key=lambda d: -(alpha * semantic.get(d, 0.0) + (1 - alpha) * keyword.get(d, 0.0))
        )

    return method


def production(hybrid: HybridConfig) -> Method:
    """jarvisd's own fusion (jarvisd.search.fusion.fused_scores) on the same lists.

    The lists only carry each mode's own top 100, so a note one mode did not list
    scores 0 on that side here, where the service uses its true cosine.
    """

    def method(lists: ModeLists) -> list[str]:
        docs = _union(lists)
        semantic, keyword = dict(lists.semantic), dict(lists.keyword)
        semantic_rank = {doc: rank for rank, (doc, _) in enumerate(lists.semantic)}
        keyword_rank = {doc: rank for rank, (doc, _) in enumerate(lists.keyword)}
        scores = fused_scores(
            np.array([semantic.get(doc, -np.inf) for doc in docs], dtype=np.float64),
            np.array([semantic_rank.get(doc, -1) for doc in docs], dtype=np.int64),
            np.array([keyword.get(doc, -np.inf) for doc in docs], dtype=np.float64),
            np.array([keyword_rank.get(doc, -1) for doc in docs], dtype=np.int64),
            lists.keyword_bound,
            hybrid,
        )
        order = np.lexsort((np.arange(len(docs)), -scores))
        return [docs[row] for row in order]

    return method


def _min_max(scores: dict[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {doc: (value - low) / span if span > 0 else 1.0 for doc, value in scores.items()}


def _ndcg(ranked: Sequence[str], judged: dict[str, int], k: int = 10) -> float:
    positives = sorted((gain for gain in judged.values() if gain > 0), reverse=True)
    if not positives:
        return math.nan
    dcg = sum(judged.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(positives[:k]))
    return dcg / ideal


def methods() -> dict[str, Method]:
    found: dict[str, Method] = {
        "semantic_only": lambda lists: [doc for doc, _ in lists.semantic],
        "keyword_only": lambda lists: [doc for doc, _ in lists.keyword],
        "production_convex": production(HybridConfig()),
        "production_rrf": production(HybridConfig(fusion="rrf")),
    }
    for k in (10, 30, 60):
        found[f"rrf_k{k}"] = rrf(k)
    for weight in (0.5, 0.7):
        found[f"rrf_k60_keyword{weight}"] = rrf(60, weight)
    for alpha in (0.3, 0.5, 0.7, 0.8):
        found[f"convex_{alpha}"] = convex(alpha)
    for alpha in (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7):
        found[f"calibrated_{alpha}"] = calibrated(alpha)
    return found


def study(
    lists: dict[str, ModeLists], qrels: Qrels, tune: Sequence[str], holdout: Sequence[str]
) -> dict[str, Any]:
    """nDCG@10 of every method on the tune and holdout halves (and all queries).

    Also on the queries where one mode fails outright (nDCG@10 of 0 while the
    other finds something): how much of the working mode a fusion keeps when
    the other one misleads.
    """
    out: dict[str, Any] = {}
    per_method = {
        name: {qid: _ndcg(method(lists[qid]), qrels.get(qid, {})) for qid in lists}
        for name, method in methods().items()
    }
    semantic, keyword = per_method["semantic_only"], per_method["keyword_only"]
    keyword_fails = [q for q in lists if keyword[q] == 0 < semantic[q]]
    semantic_fails = [q for q in lists if semantic[q] == 0 < keyword[q]]
    for name, values in per_method.items():
        out[name] = {
            "tune": _mean(values, tune),
            "holdout": _mean(values, holdout),
            "all": _mean(values, list(values)),
            "where_keyword_fails": _mean(values, keyword_fails),
            "where_semantic_fails": _mean(values, semantic_fails),
        }
    out["queries_where_keyword_fails"] = len(keyword_fails)
    out["queries_where_semantic_fails"] = len(semantic_fails)
    return out


def _mean(values: dict[str, float], qids: Sequence[str]) -> float:
    kept = [values[qid] for qid in qids if qid in values and not math.isnan(values[qid])]
    return round(sum(kept) / len(kept), 4) if kept else 0.0
