"""Hybrid ranking: one score per candidate note from its semantic and keyword scores.

The default (`search.hybrid.fusion: convex`) is a convex combination of the two
scores on absolute scales:

    score = w * cosine + (1 - w) * BM25 / bound        (w = search.hybrid.semantic_weight)

where `bound` is the highest BM25 the query could reach (every query term,
saturated: (k1 + 1) * sum of the terms' idf), so BM25 / bound is how much of the
query the note matched, weighted by rarity. Candidates are the union of each
mode's top `search.hybrid.candidates`, and both scores are exact for every
candidate (a note only one mode listed still gets its true cosine; a note no
query term occurs in has BM25 0, not a guess).

What was tried (python -m benchmarks.beir --study, on each mode's top-100
lists; nDCG@10 on the tune half / holdout half of SciFact's 300 test queries,
and on obsidian-help notes found by their title / by their frontmatter
description, a setting nothing was tuned on):

    method                       SciFact tune  holdout   titles  descriptions
    semantic only                    .674       .668      .893     .853
    keyword only                     .685       .662      .905     .888
    RRF k=60                         .712       .718      .936     .913
    RRF k=10                         .714       .719      .938     .914
    RRF k=60, keyword weight 0.7     .705       .704      .933     .909
    min-max convex, w=0.5            .731       .736      .931     .931
    calibrated convex, w=0.3         .727       .738      .943     .931
    (the service, exact scores)      .732       .739      .942     .931

Plain RRF ignores how far apart the scores are (only ranks count), so a
keyword list of near-equal weak matches pushes as hard as a decisive one.
Min-max normalisation keeps the score gaps but stretches every query's best
keyword match to 1, however weak it is. Dividing BM25 by the query's own bound
keeps both: a keyword list that matched only common words contributes little,
one that matched the rare words decisively dominates, which is the per-query
"how well did the keywords match" weight without a separate estimator (a
score-gap confidence on top of it, tried too, moved nothing beyond noise).
w = 0.25..0.4 form a plateau on the tune half (.724-.731); 0.3 is its middle.
On the queries where one mode finds nothing relevant, the calibrated fusion
keeps more of the working mode than RRF does (SciFact: where keyword fails,
.34 vs RRF's .31, semantic alone .59; where semantic fails, .39 vs .32,
keyword alone .59): no fusion keeps all of it, which is why the modes stay
selectable. `fusion: rrf` (with `rrf_k`) remains available.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jarvisd.config import HybridConfig
from jarvisd.search.hits import FloatArray, IntArray


def fused_scores(
    semantic: FloatArray,
    semantic_rank: IntArray,
    keyword: FloatArray,
    keyword_rank: IntArray,
    keyword_bound: float,
    hybrid: HybridConfig,
) -> FloatArray:
    """One score per candidate. Scores are -inf where a mode did not find the candidate;
    ranks are 0-based positions in each mode's list, -1 where absent."""
    if hybrid.fusion == "rrf":
        scores = np.zeros(semantic.shape[0], dtype=np.float64)
        for ranks in (semantic_rank, keyword_rank):
            listed = ranks >= 0
            scores[listed] += 1.0 / (hybrid.rrf_k + 1 + ranks[listed])
        return scores
    cosine = np.where(np.isfinite(semantic), semantic, 0.0)
    matched = np.where(np.isfinite(keyword), keyword, 0.0)
    coverage = matched / keyword_bound if keyword_bound > 0 else matched
    weight = hybrid.semantic_weight
    return np.asarray(weight * cosine + (1 - weight) * coverage, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class QueryShape:
    """What a query's two candidate lists look like, before any fusion."""

    keyword_top: float  # the best BM25 over the query's bound: how much of the query it matched
    keyword_margin: float  # (best - second best BM25) over the bound
    cosine_top: float  # the best cosine
    cosine_peak: float  # the best cosine minus the mean of the top 10
    agreement: float  # share of the semantic top 10 that is in the keyword top 10
    rarity: float  # mean idf of the query's known terms over the most an idf can be


def query_shape(
    semantic: FloatArray,
    semantic_rank: IntArray,
    keyword: FloatArray,
    keyword_rank: IntArray,
    keyword_bound: float,
    rarity: float = 0.0,
) -> QueryShape:
    """The features of one query's candidates (inputs as for `fused_scores`)."""
    scale = keyword_bound if keyword_bound > 0 else 1.0
    listed_keyword = np.sort(np.where(keyword_rank >= 0, keyword, -np.inf))[::-1]
    listed_keyword = listed_keyword[np.isfinite(listed_keyword)]
    first = float(listed_keyword[0]) / scale if listed_keyword.shape[0] else 0.0
    second = float(listed_keyword[1]) / scale if listed_keyword.shape[0] > 1 else 0.0
    listed_cosine = np.sort(np.where(semantic_rank >= 0, semantic, -np.inf))[::-1][:10]
    listed_cosine = listed_cosine[np.isfinite(listed_cosine)]
    best = float(listed_cosine[0]) if listed_cosine.shape[0] else 0.0
    peak = best - float(listed_cosine.mean()) if listed_cosine.shape[0] else 0.0
    both = np.count_nonzero(
        (semantic_rank >= 0) & (semantic_rank < 10) & (keyword_rank >= 0) & (keyword_rank < 10)
    )
    return QueryShape(first, first - second, best, peak, both / 10.0, rarity)
