"""One search, start to finish, on one snapshot: modes, fusion, page, snippets.

Blocking (numpy, the store's stems of new words, the query encoder): the
service runs it in the `search` thread pool, one pool hop per request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import numpy.typing as npt

from jarvisd.config import SearchConfig
from jarvisd.search.fusion import (
    fused_scores,
    query_content,
    query_rarity,
    query_shape,
    semantic_weight_for,
)
from jarvisd.search.hits import FloatArray, IntArray, NoteScores, found, top
from jarvisd.search.keyword import keyword_scores
from jarvisd.search.replies import SearchHit
from jarvisd.search.request import NANOSECONDS, SearchRequest
from jarvisd.search.semantic import (
    credit_subjects,
    indexed_semantic_scores,
    semantic_scores,
    subject_cosines,
    with_exact_scores,
)
from jarvisd.search.snapshot import Snapshot
from jarvisd.search.snippets import make_snippets
from jarvisd.search.terms import Stemmer, query_stems, tokenize
from jarvisd.store import Store

Encoder = Callable[[str], npt.NDArray[np.float32]]


@dataclass(frozen=True, slots=True)
class Ranked:
    """The page of a search, and how many notes matched in all."""

    results: tuple[SearchHit, ...]
    total: int
    chunks: tuple[int, ...] = ()  # the snapshot row of each result's chunk (for passages)
    semantic_weight: float | None = None  # the cosine's weight in a convex fusion (hybrid)


@dataclass(frozen=True, slots=True)
class Verdicts:
    """What each mode said: raw scores, and which notes it found (filters, threshold applied)."""

    semantic: NoteScores | None
    keyword: NoteScores | None
    semantic_found: FloatArray | None
    keyword_found: FloatArray | None


def rank(
    store: Store,
    stemmer: Stemmer,
    snapshot: Snapshot,
    request: SearchRequest,
    config: SearchConfig,
    encode: Encoder | None,
) -> Ranked:
    """`encode` None: no semantic side (keyword only, e.g. the model is away)."""
    mask = snapshot.note_mask(request.filters)
    stems = query_stems(store, stemmer, request.query)
    use_semantic = request.mode != "keyword" and encode is not None
    use_keyword = request.mode != "semantic" or encode is None
    wanted = request.offset + request.limit
    keep = max(config.hybrid.candidates, wanted) if use_semantic and use_keyword else wanted
    semantic = keyword = semantic_found = keyword_found = None
    weight: float | None = None  # the cosine's weight in this query's fusion
    if use_keyword:
        keyword = keyword_scores(snapshot, snapshot.postings.score(stems))
        keyword_found = keyword.eligible(mask)
    if use_semantic and encode is not None:
        query_vector = encode(request.query)
        if snapshot.vector_index:
            semantic = indexed_semantic_scores(
                store, snapshot, query_vector, keep, mask, request.threshold
            )
            semantic = credit_subjects(snapshot, query_vector, semantic, config.subject_mix)
            if keyword is not None and keyword_found is not None:
                # Fusion needs the true cosine of the keyword side's candidates too.
                eligible = semantic.eligible(mask, request.threshold)
                weight = _weight(
                    snapshot, request, stems, eligible, keyword, keyword_found, keep, config
                )
                subjects = subject_cosines(snapshot, query_vector, top(keyword_found, keep))
                needed = _needing_cosines(
                    semantic, eligible, keyword, keyword_found, keep, wanted, config, weight,
                    subjects,
                )  # fmt: skip
                semantic = with_exact_scores(store, snapshot, query_vector, semantic, needed)
                semantic = credit_subjects(
                    snapshot, query_vector, semantic, config.subject_mix, needed
                )
        else:
            semantic = credit_subjects(
                snapshot, query_vector, semantic_scores(snapshot, query_vector), config.subject_mix
            )
        semantic_found = semantic.eligible(mask, request.threshold)
    verdicts = Verdicts(semantic, keyword, semantic_found, keyword_found)
    if semantic_found is not None and keyword_found is not None:
        assert keyword is not None
        if weight is None:
            weight = _weight(
                snapshot, request, stems, semantic_found, keyword, keyword_found, keep, config
            )
        notes, scores, total = _hybrid(verdicts, keep, config, weight)
    else:
        single = semantic_found if semantic_found is not None else keyword_found
        assert single is not None
        notes = top(single, wanted)
        scores, total = single[notes], found(single)
    page = range(request.offset, min(wanted, notes.shape[0]))
    unsnipped = [_result(snapshot, verdicts, int(notes[i]), float(scores[i])) for i in page]
    chunks = [chunk for _, chunk in unsnipped]
    texts = [str(snapshot.texts[chunk]) for chunk in chunks]
    snippets = make_snippets(store, stemmer, texts, frozenset(stems))
    results = tuple(
        replace(hit, snippet=snippet.text, highlights=tuple(snippet.highlights))
        for (hit, _), snippet in zip(unsnipped, snippets, strict=True)
    )
    fused = semantic_found is not None and keyword_found is not None
    if not fused or weight is None or config.hybrid.fusion == "rrf":
        weight = None
    return Ranked(results, total, tuple(chunks), None if weight is None else round(weight, 4))


def _weight(
    snapshot: Snapshot,
    request: SearchRequest,
    stems: list[str],
    semantic_found: FloatArray,
    keyword: NoteScores,
    keyword_found: FloatArray,
    keep: int,
    config: SearchConfig,
) -> float:
    """The cosine's weight for this query (jarvisd.search.fusion.semantic_weight_for)."""
    if config.hybrid.fusion != "adaptive":
        return config.hybrid.semantic_weight
    semantic_top, keyword_top = top(semantic_found, keep), top(keyword_found, keep)
    candidates = np.unique(np.concatenate((semantic_top, keyword_top)))
    shape = query_shape(
        semantic_found[candidates],
        _ranks(semantic_top, candidates),
        keyword_found[candidates],
        _ranks(keyword_top, candidates),
        keyword.bound,
        query_rarity(snapshot.postings, stems, snapshot.chunk_count),
        query_content(snapshot.postings, stems, len(tokenize(request.query))),
    )
    return semantic_weight_for(shape, config.hybrid)


def _hybrid(
    verdicts: Verdicts, keep: int, config: SearchConfig, weight: float
) -> tuple[IntArray, FloatArray, int]:
    semantic, keyword = verdicts.semantic, verdicts.keyword
    semantic_found, keyword_found = verdicts.semantic_found, verdicts.keyword_found
    assert semantic and keyword and semantic_found is not None and keyword_found is not None
    semantic_top, keyword_top = top(semantic_found, keep), top(keyword_found, keep)
    candidates = np.unique(np.concatenate((semantic_top, keyword_top)))
    scores = fused_scores(
        semantic.scores[candidates],
        _ranks(semantic_top, candidates),
        keyword_found[candidates],
        _ranks(keyword_top, candidates),
        keyword.bound,
        config.hybrid,
        weight,
    )
    order = np.lexsort((candidates, -scores))
    total = int(np.count_nonzero(np.isfinite(semantic_found) | np.isfinite(keyword_found)))
    return candidates[order], scores[order], total


def _needing_cosines(
    semantic: NoteScores,
    semantic_found: FloatArray,
    keyword: NoteScores,
    keyword_found: FloatArray,
    keep: int,
    wanted: int,
    config: SearchConfig,
    weight: float,
    subjects: FloatArray,
) -> IntArray:
    """The keyword candidates the HNSW fetch did not score whose cosine could matter.

    Each costs a scan in DuckDB, so with convex fusion only those that could
    still reach the page are scored: a note the index did not reach has a cosine
    of at most `semantic.ceiling`, so it scores at most w * ceiling + (1 - w) *
    its keyword coverage; below the `wanted`-th best fused score of the notes
    already known exactly, it cannot enter the page, whatever its cosine. With the
    subject credit (`credit_subjects`) the most is ceiling + mix * max(0, subject -
    ceiling); `subjects`: the subject cosine of each of the keyword side's top `keep`.
    """
    listed = top(keyword_found, keep)
    missing = listed[~np.isfinite(semantic.scores[listed])]
    if missing.shape[0] == 0 or config.hybrid.fusion == "rrf":
        return missing
    # The fusion's candidates whose both scores are known already.
    known = np.union1d(top(semantic_found, keep), listed[np.isfinite(semantic.scores[listed])])
    if known.shape[0] < wanted:
        return missing
    scale = keyword.bound if keyword.bound > 0 else 1.0
    coverage = np.where(np.isfinite(keyword_found), keyword_found, 0.0) / scale
    fused_known = weight * semantic.scores[known] + (1 - weight) * coverage[known]
    page_floor = np.partition(fused_known, fused_known.shape[0] - wanted)[-wanted]
    # Fusion counts an unknown cosine as 0, so the bound covers that too.
    ceiling = max(semantic.ceiling, 0.0)
    subject = subjects[~np.isfinite(semantic.scores[listed])]
    most = ceiling + config.subject_mix * np.maximum(0.0, np.nan_to_num(subject - ceiling))
    upper = weight * most + (1 - weight) * coverage[missing]
    needed: IntArray = missing[upper >= page_floor]
    return needed


def _ranks(listed: IntArray, candidates: IntArray) -> IntArray:
    """Each candidate's 0-based position in `listed`, -1 where absent."""
    ranks = np.full(candidates.shape[0], -1, dtype=np.int64)
    positions = np.searchsorted(candidates, listed)  # candidates is sorted and holds `listed`
    ranks[positions] = np.arange(listed.shape[0])
    return ranks


def _result(
    snapshot: Snapshot, verdicts: Verdicts, note_row: int, score: float
) -> tuple[SearchHit, int]:
    """One result without its snippet, and the chunk row the snippet comes from."""
    modes: list[str] = []
    scores: dict[str, float] = {}
    chunk = -1
    if (
        verdicts.semantic is not None
        and verdicts.semantic_found is not None
        and np.isfinite(verdicts.semantic.scores[note_row])  # the HNSW path scores fewer
    ):
        scores["semantic"] = round(float(verdicts.semantic.scores[note_row]), 6)
        chunk = int(verdicts.semantic.chunks[note_row])
        if np.isfinite(verdicts.semantic_found[note_row]):
            modes.append("semantic")
    if verdicts.keyword_found is not None and np.isfinite(verdicts.keyword_found[note_row]):
        assert verdicts.keyword is not None
        modes.append("keyword")
        scores["keyword"] = round(float(verdicts.keyword.scores[note_row]), 6)
        # The keyword chunk holds the query's words, so its snippet shows why it matched.
        chunk = int(verdicts.keyword.chunks[note_row])
    note = snapshot.notes[note_row]
    hit = SearchHit(
        vault=note.vault,
        path=note.path,
        title=note.title,
        score=round(score, 6),
        scores=scores,
        modes=tuple(modes),
        snippet="",
        highlights=(),
        heading_path=tuple(str(part) for part in snapshot.headings[chunk]),
        lines=(int(snapshot.first_lines[chunk]), int(snapshot.last_lines[chunk])),
        tags=tuple(note.tags),
        modified=datetime.fromtimestamp(note.mtime_ns / NANOSECONDS).astimezone().isoformat(),
    )
    return hit, chunk
