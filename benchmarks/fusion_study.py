"""Fusion methods compared offline, on every collection at once, from the same candidates.

Each query's candidates are what the service fuses: the union of each mode's
top 100, each with its exact cosine and BM25 (`benchmarks.beir.query_lists`).
A method turns them into one ranking. The production method lives in
jarvisd/search/fusion.py; the others are here so the choice stays
reproducible (`python -m benchmarks.beir --all --study`).

Parameters are fixed for all collections: a method is judged by its worst
collection against that collection's best single mode, and by the median of
those margins, never by one collection. The learned method (a small model over
per-query features) is fit leave-one-collection-out: its figure on a
collection comes from a model that never saw that collection.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from jarvisd.config import HybridConfig, SearchConfig
from jarvisd.search.fusion import QueryShape, fused_scores, query_shape, semantic_weight_for

Qrels = dict[str, dict[str, int]]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class QueryLists:
    docs: list[str]
    cosine: list[float]
    bm25: list[float]  # 0 where no query term occurs in the note
    semantic_listed: list[bool]  # in the semantic top 100 (over the threshold)
    keyword_listed: list[bool]
    bound: float  # the query's highest possible BM25 (jarvisd.search.postings)
    words: int
    idf: list[float]  # of the query's stems the index knows
    max_idf: float
    subject: list[float | None]  # cosine with the note's title + aliases + description

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> QueryLists:
        return cls(**value)

    def arrays(self) -> tuple[FloatArray, FloatArray]:
        return np.asarray(self.cosine, dtype=np.float64), np.asarray(self.bm25, dtype=np.float64)

    def ranks(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        cosine, bm25 = self.arrays()
        return _ranks(cosine, np.asarray(self.semantic_listed)), _ranks(
            bm25, np.asarray(self.keyword_listed)
        )

    def shape(self) -> QueryShape:
        cosine, bm25 = self.arrays()
        semantic_rank, keyword_rank = self.ranks()
        rarity = sum(self.idf) / len(self.idf) / self.max_idf if self.idf and self.max_idf else 0.0
        # As jarvisd.search.fusion.query_content: `idf` holds the query's distinct stems
        # that the index has (df > 0), `words` every token of the query.
        content = min(1.0, len(self.idf) / self.words) if self.words else 0.0
        return query_shape(cosine, semantic_rank, bm25, keyword_rank, self.bound, rarity, content)


def _ranks(scores: FloatArray, listed: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    ranks = np.full(scores.shape[0], -1, dtype=np.int64)
    rows = np.flatnonzero(listed)
    order = rows[np.lexsort((rows, -scores[rows]))]
    ranks[order] = np.arange(order.shape[0])
    return ranks


Method = Callable[[QueryLists], FloatArray]  # one score per candidate, higher first
SHIPPED_MIX = SearchConfig().subject_mix
SCIFACT_FLOOR = 0.73


def semantic_only(lists: QueryLists) -> FloatArray:
    cosine, _ = lists.arrays()
    return np.where(np.asarray(lists.semantic_listed), cosine, -np.inf)


def keyword_only(lists: QueryLists) -> FloatArray:
    _, bm25 = lists.arrays()
    return np.where(np.asarray(lists.keyword_listed), bm25, -np.inf)


def production(hybrid: HybridConfig) -> Method:
    """jarvisd's own fusion (jarvisd.search.fusion.fused_scores) on the same candidates."""

    def method(lists: QueryLists) -> FloatArray:
        cosine, bm25 = lists.arrays()
        semantic_rank, keyword_rank = lists.ranks()
        bm25 = np.where(bm25 > 0, bm25, -np.inf)
        weight = semantic_weight_for(lists.shape(), hybrid)
        return fused_scores(cosine, semantic_rank, bm25, keyword_rank, lists.bound, hybrid, weight)

    return method


def rrf(k: int, keyword_weight: float = 1.0) -> Method:
    def method(lists: QueryLists) -> FloatArray:
        semantic_rank, keyword_rank = lists.ranks()
        scores = np.zeros(semantic_rank.shape[0])
        scores += np.where(semantic_rank >= 0, 1 / (k + 1 + semantic_rank), 0)
        scores += keyword_weight * np.where(keyword_rank >= 0, 1 / (k + 1 + keyword_rank), 0)
        return scores

    return method


def calibrated(weight: float) -> Method:
    """weight * cosine + (1 - weight) * BM25 / bound (the previous default, w = 0.3)."""

    def method(lists: QueryLists) -> FloatArray:
        cosine, bm25 = lists.arrays()
        coverage = bm25 / lists.bound if lists.bound > 0 else bm25
        return weight * cosine + (1 - weight) * coverage

    return method


def min_max(weight: float) -> Method:
    def method(lists: QueryLists) -> FloatArray:
        cosine, bm25 = lists.arrays()
        return weight * _stretch(cosine) + (1 - weight) * _stretch(bm25)

    return method


def z_score(weight: float) -> Method:
    """Each mode's scores as z-scores over the candidates (absent BM25 counts as 0)."""

    def method(lists: QueryLists) -> FloatArray:
        cosine, bm25 = lists.arrays()
        return weight * _z(cosine) + (1 - weight) * _z(bm25)

    return method


def _stretch(values: FloatArray) -> FloatArray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _z(values: FloatArray) -> FloatArray:
    spread = float(values.std())
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def adaptive(base: float, feature: str, gain: float, center: float) -> Method:
    """Calibrated convex with a per-query keyword weight: the base share of BM25 moved
    by gain * (feature - center), clipped to [0, 1]."""

    def method(lists: QueryLists) -> FloatArray:
        shape = lists.shape()
        value = getattr(shape, feature)
        keyword_share = min(1.0, max(0.0, (1 - base) + gain * (value - center)))
        cosine, bm25 = lists.arrays()
        coverage = bm25 / lists.bound if lists.bound > 0 else bm25
        return (1 - keyword_share) * cosine + keyword_share * coverage

    return method


def ramp(start: float, width: float, low: float, high: float) -> Method:
    """Calibrated convex with the keyword share `low` up to a content share of `start`,
    `high` from `start + width`, a straight line between (the shipped rule's family)."""

    def method(lists: QueryLists) -> FloatArray:
        rise = min(1.0, max(0.0, (lists.shape().content - start) / width))
        return calibrated(1 - (low + (high - low) * rise))(lists)

    return method


# ------------------------------------------------------------------------- the model


FEATURES = (
    "keyword_top",
    "keyword_margin",
    "cosine_top",
    "cosine_peak",
    "agreement",
    "rarity",
    "content",
)
SHARES = np.linspace(0.0, 1.0, 21)  # candidate keyword shares the model chooses among


def _share_curve(lists: QueryLists, qrels: dict[str, int]) -> FloatArray:
    """nDCG@10 of calibrated convex at every keyword share of SHARES."""
    return np.asarray([_ndcg(lists, calibrated(1 - share)(lists), qrels) for share in SHARES])


def _features(lists: QueryLists) -> FloatArray:
    shape = lists.shape()
    return np.asarray([1.0, *(getattr(shape, name) for name in FEATURES)], dtype=np.float64)


def fit_share_model(
    rows: Sequence[tuple[FloatArray, FloatArray]], ridge: float = 1.0
) -> FloatArray:
    """Least squares from features to the share that maximised each query's nDCG@10.

    A query whose curve is flat (every share equal) says nothing and is left
    out; each query's target is the middle of its best shares. Collections are
    weighted equally by the caller passing their rows with equal total weight."""
    x_rows, y_rows = [], []
    for features, curve in rows:
        if curve.max() - curve.min() < 1e-9:
            continue
        best = SHARES[curve >= curve.max() - 1e-9]
        x_rows.append(features)
        y_rows.append(float(np.median(best)))
    if not x_rows:  # nothing to learn from: the previous default's share, for every query
        return np.asarray([0.7] + [0.0] * len(FEATURES), dtype=np.float64)
    x, y = np.asarray(x_rows), np.asarray(y_rows)
    penalty = ridge * np.eye(x.shape[1])
    penalty[0, 0] = 0.0
    coefficients: FloatArray = np.linalg.solve(x.T @ x + penalty, x.T @ y)
    return coefficients


def learned(coefficients: FloatArray) -> Method:
    def method(lists: QueryLists) -> FloatArray:
        share = float(np.clip(_features(lists) @ coefficients, 0.0, 1.0))
        return calibrated(1 - share)(lists)

    return method


# --------------------------------------------------------------------------- scoring


def _ndcg(lists: QueryLists, scores: FloatArray, judged: dict[str, int], k: int = 10) -> float:
    positives = sorted((gain for gain in judged.values() if gain > 0), reverse=True)
    if not positives:
        return math.nan
    rows = np.flatnonzero(np.isfinite(scores))
    order = rows[np.lexsort((rows, -scores[rows]))][:k]
    dcg = sum(
        judged.get(lists.docs[row], 0) / math.log2(rank + 2) for rank, row in enumerate(order)
    )
    ideal = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(positives[:k]))
    return dcg / ideal


def _mean(values: Sequence[float]) -> float:
    kept = [value for value in values if not math.isnan(value)]
    return sum(kept) / len(kept) if kept else 0.0


def methods() -> dict[str, Method]:
    found: dict[str, Method] = {
        "semantic_only": semantic_only,
        "keyword_only": keyword_only,
        "production": production(HybridConfig()),
        "production_rrf": production(HybridConfig(fusion="rrf")),
        "production_convex_0.3": production(HybridConfig(fusion="convex", semantic_weight=0.3)),
        "production_adaptive": production(HybridConfig(fusion="adaptive")),
        # What the daemon serves with its defaults: the cosines credit the subject vector
        # at search.subject_mix, in semantic and hybrid alike.
        "shipped_semantic": with_subject(semantic_only, SHIPPED_MIX),
        "shipped_hybrid": with_subject(production(HybridConfig()), SHIPPED_MIX),
    }
    for k in (10, 60):
        found[f"rrf_k{k}"] = rrf(k)
    found["rrf_k60_keyword0.5"] = rrf(60, 0.5)
    for weight in (0.3, 0.5, 0.7):
        found[f"min_max_{weight}"] = min_max(weight)
        found[f"z_score_{weight}"] = z_score(weight)
    for weight in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        found[f"calibrated_{weight}"] = calibrated(weight)
    return found


def study(lists: dict[str, dict[str, QueryLists]], qrels: dict[str, Qrels]) -> dict[str, Any]:
    """nDCG@10 of every method on every collection; margins over the best single mode."""
    names = sorted(lists)
    table: dict[str, dict[str, float]] = {}
    for method_name, method in {**methods(), **extra_methods()}.items():
        table[method_name] = {
            name: round(
                _mean(
                    [
                        _ndcg(q, method(q), qrels[name].get(qid, {}))
                        for qid, q in lists[name].items()
                    ]
                ),
                4,
            )
            for name in names
        }
    # Leave one collection out: the model scored on a collection was fit on the others.
    curves = {
        name: {
            qid: (_features(q), _share_curve(q, qrels[name].get(qid, {})))
            for qid, q in lists[name].items()
        }
        for name in names
    }
    loco: dict[str, float] = {}
    fitted: dict[str, list[float]] = {}
    for held in names:
        rows = [row for name in names if name != held for row in curves[name].values()]
        coefficients = fit_share_model(rows)
        fitted[held] = [round(float(c), 4) for c in coefficients]
        method = learned(coefficients)
        loco[held] = round(
            _mean(
                [_ndcg(q, method(q), qrels[held].get(qid, {})) for qid, q in lists[held].items()]
            ),
            4,
        )
    table["learned_share_loco"] = loco
    oracle = {
        name: round(_mean([float(curve.max()) for _, curve in curves[name].values()]), 4)
        for name in names
    }
    table["oracle_share_per_query"] = oracle
    out: dict[str, Any] = {"ndcg@10": table, "learned_coefficients": fitted}
    out["features"] = ["intercept", *FEATURES]
    best_single = {
        name: max(table["semantic_only"][name], table["keyword_only"][name]) for name in names
    }
    targets = [name for name in names if ":" not in name]
    summary = {}
    for method_name, row in table.items():
        margins = [row[name] - best_single[name] for name in targets]
        if margins:
            summary[method_name] = {
                "worst_margin": round(min(margins), 4),
                "median_margin": round(statistics.median(margins), 4),
            }
    # Against what the daemon's semantic mode serves (with the subject vector).
    best_shipped = {
        name: max(table["shipped_semantic"][name], table["keyword_only"][name]) for name in names
    }
    shipped = [table["shipped_hybrid"][name] - best_shipped[name] for name in targets]
    summary["shipped_hybrid_vs_shipped_single"] = {
        "worst_margin": round(min(shipped), 4),
        "median_margin": round(statistics.median(shipped), 4),
    }
    out["margins_over_best_single"] = summary
    out["families"] = family_study(lists, qrels, best_single, targets, best_shipped)
    return out


def extra_methods() -> dict[str, Method]:
    """Fixed-parameter representatives of the adaptive rules (the grids are in families())."""
    found: dict[str, Method] = {}
    for gain in (0.5, 1.0):
        found[f"adaptive_margin_g{gain}"] = adaptive(0.5, "keyword_margin", gain, 0.1)
        found[f"adaptive_agreement_g{gain}"] = adaptive(0.5, "agreement", gain, 0.3)
        found[f"adaptive_rarity_g{gain}"] = adaptive(0.5, "rarity", gain, 0.5)
        found[f"adaptive_peak_g{gain}"] = adaptive(0.5, "cosine_peak", -gain, 0.1)
    # The subject vector with the shipped rule (adaptive, cosine peak) and alone: the
    # study's earlier rows had it only with a fixed convex weight.
    for mix in (0.25, 0.5, 0.75, 1.0):
        found[f"subject_semantic_mix{mix}"] = with_subject(semantic_only, mix)
        found[f"subject_production_mix{mix}"] = with_subject(production(HybridConfig()), mix)
    return found


def with_subject(method: Method, mix: float) -> Method:
    """`method` on cosines that also credit the note's subject (title, aliases, description):
    cosine' = max(cosine, subject) * mix + cosine * (1 - mix), where the note has one."""

    def wrapped(lists: QueryLists) -> FloatArray:
        cosine = np.asarray(lists.cosine, dtype=np.float64)
        subject = np.asarray([np.nan if v is None else v for v in lists.subject], dtype=np.float64)
        better = np.where(np.isnan(subject), cosine, np.maximum(cosine, subject))
        blended = mix * better + (1 - mix) * cosine
        return method(replace(lists, cosine=[float(v) for v in blended]))

    return wrapped


def families() -> dict[str, dict[str, Method]]:
    """Parameter grids; each family's pick is made on every collection at once."""
    grid = [round(x, 2) for x in np.arange(0.0, 1.01, 0.1)]
    found: dict[str, dict[str, Method]] = {
        "calibrated": {f"w={w}": calibrated(w) for w in np.round(np.arange(0.2, 0.91, 0.05), 2)},
        "rrf_weighted": {
            f"k={k},kw={kw}": rrf(k, kw) for k in (5, 20, 60) for kw in (0.3, 0.5, 0.7, 1.0)
        },
        "z_score": {f"w={w}": z_score(w) for w in grid},
        "min_max": {f"w={w}": min_max(w) for w in grid},
    }
    found["ramp_content"] = {
        f"start={start},width={width},low={low},high={high}": ramp(start, width, low, high)
        for start in (0.3, 0.35, 0.4, 0.45, 0.5)
        for width in (0.1, 0.2)
        for low in (0.0, 0.1)
        for high in (0.35, 0.45, 0.55)
    }
    for feature, centers in (
        ("content", (0.5, 0.6, 0.7)),
        ("rarity", (0.3, 0.4, 0.5)),
        ("keyword_top", (0.3, 0.5, 0.7)),
        ("keyword_margin", (0.05, 0.1, 0.2)),
        ("agreement", (0.2, 0.4)),
        ("cosine_peak", (0.05, 0.1)),
        ("cosine_top", (0.5, 0.6)),
    ):
        found[f"adaptive_{feature}"] = {
            f"base={base},gain={gain},center={center}": adaptive(base, feature, gain, center)
            for base in (0.4, 0.5, 0.6, 0.7)
            for gain in (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)
            for center in centers
        }
    return found


def pick(
    table: dict[str, dict[str, float]], best_single: dict[str, float], names: Sequence[str]
) -> str:
    """The label whose worst margin over `names` is best (then the median margin), among
    those that keep SciFact's hybrid at its floor when SciFact is one of `names` (the
    issue's "SciFact hybrid stays >= 0.73" is a target of its own, not a margin)."""

    def key(label: str) -> tuple[bool, float, float]:
        margins = [table[label][name] - best_single[name] for name in names]
        floor = "scifact" not in names or table[label]["scifact"] >= SCIFACT_FLOOR
        return (floor, round(min(margins), 4), statistics.median(margins))

    return max(table, key=key)


def family_study(
    lists: dict[str, dict[str, QueryLists]],
    qrels: dict[str, Qrels],
    best_single: dict[str, float],
    targets: Sequence[str],
    best_shipped: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Each family's pick on all target collections, and its leave-one-collection-out figure:
    the parameters picked on the other collections, scored on the one left out. Families
    over subject-credited cosines are judged against `best_shipped` (the best single mode
    with the subject vector), the others against `best_single`."""
    out: dict[str, Any] = {}
    wrapped = {"": families()}
    wrapped["with_subject"] = {
        "calibrated": {
            f"w={w},mix={mix}": with_subject(calibrated(w), mix)
            for w in np.round(np.arange(0.3, 0.81, 0.05), 2)
            for mix in (0.5, 1.0)
        },
        "adaptive": {
            f"mix={mix}": with_subject(production(HybridConfig()), mix)
            for mix in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
        },
        "ramp_content": {
            f"{label},mix={SHIPPED_MIX}": with_subject(method, SHIPPED_MIX)
            for label, method in families()["ramp_content"].items()
        },
    }
    for prefix, group in wrapped.items():
        judged_against = best_shipped if prefix and best_shipped else best_single
        for family, members in group.items():
            table = {
                label: {
                    name: _mean(
                        [
                            _ndcg(q, method(q), qrels[name].get(qid, {}))
                            for qid, q in lists[name].items()
                        ]
                    )
                    for name in lists
                }
                for label, method in members.items()
            }
            chosen = pick(table, judged_against, targets)
            loco = {}
            for held in targets if len(targets) > 1 else ():
                others = [name for name in targets if name != held]
                label = pick(table, judged_against, others)
                loco[held] = {"picked": label, "ndcg@10": round(table[label][held], 4)}
            out[f"{prefix}:{family}" if prefix else family] = {
                "picked": chosen,
                "ndcg@10": {name: round(value, 4) for name, value in table[chosen].items()},
                "margins": {
                    name: round(table[chosen][name] - judged_against[name], 4) for name in targets
                },
                "loco": loco,
            }
    return out


def load_saved(workdir: Path) -> tuple[dict[str, dict[str, QueryLists]], dict[str, Qrels]]:
    """The lists and qrels a `benchmarks.beir --study` run left under `workdir`."""
    lists: dict[str, dict[str, QueryLists]] = {}
    qrels: dict[str, Qrels] = {}
    for path in sorted(workdir.rglob("lists-*.json")):
        name = path.stem.removeprefix("lists-").replace("-titles", ":titles")
        name = name.replace("-descriptions", ":descriptions")
        saved = json.loads(path.read_text(encoding="utf-8"))
        lists[name] = {qid: QueryLists.from_json(value) for qid, value in saved["lists"].items()}
        judged: Qrels = {}
        qrels_path = path.with_name(path.name.replace("lists-", "qrels-").replace(".json", ".tsv"))
        with qrels_path.open(encoding="utf-8") as handle:
            for row in csv.reader(handle, delimiter="\t"):
                if len(row) >= 3 and row[0] != "query-id":
                    judged.setdefault(row[0], {})[row[1]] = int(float(row[2]))
        qrels[name] = judged
    return lists, qrels


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.fusion_study WORKDIR`: the study again, from saved lists only."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args(argv)
    lists, qrels = load_saved(args.workdir)
    print(json.dumps(study(lists, qrels), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
