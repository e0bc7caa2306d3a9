"""Search quality on real judgements: nDCG@10 and recall@100 per mode, as JSON.

    python -m benchmarks.beir --data ../shared/data/scifact [--run-file PATH]
        [--limit-docs N] [--workdir DIR] [--study]
    python -m benchmarks.beir --data ../shared/data/obsidian-help [--workdir DIR] [--study]

SciFact (BEIR, test split): one note per document, `<_id>.md`, with the title
as the frontmatter `title` and the H1 and the abstract as the body, indexed by
the real pipeline (planner, parser, embedder, store, BM25) in-process; the 300
test queries then go through the real `SearchService` in each mode.

A folder of markdown notes (obsidian-help) is the second setting: no
judgements ship with it, so two query sets are made from the notes
themselves, each judged to find its own note: `titles` (the note's title,
short keyword-style queries) and `descriptions` (the frontmatter
`description`, a sentence that is not indexed as text, so it must be found by
meaning or shared words in the body).

`--run-file PATH` writes TREC run files, one per mode: PATH.keyword,
PATH.semantic, PATH.hybrid (`qid Q0 docid rank score jarvisd-MODE`), and each
is scored again by the independent scorer (../shared/tools/ndcg.py) when it is
there; both figures are printed. `--workdir DIR` keeps the vault and the
database: a second run re-embeds nothing (encoding SciFact takes ~10 minutes
on two cores). `--study` adds the fusion study: other fusion methods, from
the same per-mode lists, on two halves of the queries (tune: even positions,
holdout: odd).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from benchmarks.common import SHARED_DATA, work_directory
from benchmarks.fusion_study import QueryLists, study
from jarvisd import logs
from jarvisd.config import (
    Config,
    EmbeddingConfig,
    IndexingConfig,
    SearchConfig,
    StorageConfig,
    VaultConfig,
)
from jarvisd.indexing.indexer import Indexer
from jarvisd.model.embedder import Embedder
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools
from jarvisd.search import SearchService
from jarvisd.search.hits import top
from jarvisd.search.keyword import keyword_scores
from jarvisd.search.postings import postings_of
from jarvisd.search.request import SearchRequest
from jarvisd.search.semantic import semantic_scores
from jarvisd.search.snapshot import build_snapshot
from jarvisd.search.terms import Stemmer, query_stems, tokenize
from jarvisd.store import Store

MODES = ("keyword", "semantic", "hybrid")
DEPTH = 100
Qrels = dict[str, dict[str, int]]
QUESTIONS = Path(__file__).resolve().parent / "data"
Run = dict[str, list[tuple[str, float]]]


# ------------------------------------------------------------------------ collections


@dataclass(frozen=True)
class Collection:
    """One query set over one vault; `doc_id` maps a result's note path to the qrels' id."""

    name: str
    vault: Path
    queries: dict[str, str]
    qrels: Qrels
    doc_ids: dict[str, str] | None = None  # note path -> BEIR id; None: the path itself
    target: bool = True  # counted in the targets (--all)

    def doc_id(self, path: str) -> str:
        if self.doc_ids is not None:
            return self.doc_ids.get(path, _doc_id(path))
        return _doc_id(path)


def beir_vault(data: Path, vault: Path, limit_docs: int | None) -> dict[str, str]:
    """One note per corpus document (only files whose text changed); note path -> BEIR id.

    Files are named by their position in the corpus (`d00042.md`), never by the
    id: BEIR ids may hold `/` or other characters a file name cannot. A title
    (SciFact's) becomes the frontmatter `title` and the H1; a document without
    one (MS MARCO passages) gets neither, so its title is the file name.
    """
    vault.mkdir(parents=True, exist_ok=True)
    ids: dict[str, str] = {}
    with (data / "corpus.jsonl").open(encoding="utf-8") as corpus:
        for position, line in enumerate(corpus):
            if limit_docs is not None and position >= limit_docs:
                break
            document = json.loads(line)
            title = str(document.get("title") or "").strip()
            if title:
                front = yaml.safe_dump({"title": title}, allow_unicode=True, width=1 << 20)
                body = f"---\n{front}---\n# {title}\n\n{document['text']}\n"
            else:
                body = f"{document['text']}\n"
            name = f"d{position:05d}.md"
            path = vault / name
            if not path.exists() or path.read_text(encoding="utf-8") != body:
                path.write_text(body, encoding="utf-8")
            ids[name] = str(document["_id"])
    return ids


def beir_queries(data: Path, split: str = "test") -> tuple[dict[str, str], Qrels]:
    """Queries with a judgement in qrels-<split>.tsv; grades kept as given (0..3)."""
    qrels: Qrels = {}
    with (data / f"qrels-{split}.tsv").open(encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) >= 3 and row[0] != "query-id":
                qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    queries = {}
    with (data / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            query = json.loads(line)
            if query["_id"] in qrels:
                queries[str(query["_id"])] = query["text"]
    return queries, qrels


def question_set(path: Path, vault: Path) -> tuple[dict[str, str], Qrels]:
    """Hand-written questions (benchmarks/data/*.yaml): `[{q, relevant: {note: grade}}]`.

    Every judged note must exist in the vault: a renamed note would silently
    judge nothing, so it is an error here."""
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    for number, entry in enumerate(entries, start=1):
        qid = f"q{number:03d}"
        queries[qid] = str(entry["q"])
        judged: dict[str, int] = {}
        for note, grade in entry["relevant"].items():
            if not (vault / f"{note}.md").is_file():
                raise SystemExit(f"{path}: question {number} judges {note!r}, not in {vault}")
            judged[_doc_id(f"{note}.md")] = int(grade)
        qrels[qid] = judged
    return queries, qrels


def note_queries(vault: Path, field: str) -> tuple[dict[str, str], Qrels]:
    """Queries made from each note's title or frontmatter field, judged to find that note."""
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    for number, path in enumerate(sorted(vault.rglob("*.md"))):
        relative = path.relative_to(vault).as_posix()
        text = path.read_text(encoding="utf-8")
        if field == "title":
            query = path.stem
        else:
            front = _frontmatter(text)
            value = front.get(field)
            if not isinstance(value, str) or not value.strip():
                continue
            query = value.strip()
        queries[str(number)] = query
        qrels[str(number)] = {_doc_id(relative): 1}
    return queries, qrels


def _frontmatter(text: str) -> dict[str, Any]:
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    try:
        value = yaml.safe_load(text[4:end]) if end > 0 else None
    except yaml.YAMLError:
        return {}
    return value if isinstance(value, dict) else {}


def _doc_id(path: str) -> str:
    """A TREC doc id: the note path without `.md`, spaces made safe for a whitespace format."""
    return path.removesuffix(".md").replace(" ", "_")


def load_collections(data: Path, workdir: Path, limit_docs: int | None) -> list[Collection]:
    """The query sets one data folder holds, over one vault (indexed once for all of them).

    A BEIR folder (corpus.jsonl): its judged queries. A folder of notes: the
    hand-written questions of benchmarks/data/<folder>-questions.yaml when there
    is such a file (the target), and the titles and descriptions of its notes
    (self-made, kept for comparison with earlier figures).
    """
    if (data / "corpus.jsonl").is_file():
        vault = workdir / "vault"
        ids = beir_vault(data, vault, limit_docs)
        queries, qrels = beir_queries(data)
        return [Collection(data.name, vault, queries, qrels, ids)]
    found = []
    questions = QUESTIONS / f"{data.name}-questions.yaml"
    if questions.is_file():
        queries, qrels = question_set(questions, data)
        found.append(Collection(data.name, data, queries, qrels))
    for field in ("title", "description"):
        queries, qrels = note_queries(data, field)
        found.append(Collection(f"{data.name}:{field}s", data, queries, qrels, target=False))
    return found


# ---------------------------------------------------------------------------- pipeline


@asynccontextmanager
async def indexed(
    vault: Path,
    database: Path,
    vault_name: str,
    quantize: str = "none",
    chunk_tokens: int = 200,
    subject_mix: float | None = None,
) -> Any:
    """The real Indexer, Store, Embedder and SearchService, in-process, over `vault`."""
    config = Config(
        vaults=[VaultConfig(name=vault_name, path=vault)],
        storage=StorageConfig(database=database),
        embedding=EmbeddingConfig(preload=False, quantize=quantize),  # type: ignore[arg-type]
        indexing=IndexingConfig(
            chunk_tokens=chunk_tokens, chunk_overlap=min(32, chunk_tokens // 4)
        ),
        search=SearchConfig(
            max_limit=DEPTH,
            cache={"size": 0},
            **({} if subject_mix is None else {"subject_mix": subject_mix}),
        ),
    )
    pools, metrics = Pools(config.threads), Metrics()
    embedder = Embedder(config.embedding)
    identity = f"{config.embedding.model}|{config.embedding.quantize}"
    store = Store(
        database, config.storage, embedder.probe_dimension(), model=identity, reset_vectors=True
    )
    try:
        indexer = Indexer(config, store, embedder, pools, metrics)
        service = SearchService(config, store, embedder, pools, metrics)
        indexer.on_change(service.invalidate)
        started = time.perf_counter()
        report = await indexer.run()
        if report.state != "done":
            raise RuntimeError(f"indexing failed: {report.error}")
        await service.start()
        summary = {
            "notes": indexer.stats.get("notes"),
            "chunks": indexer.stats.get("chunks"),
            "files_indexed": report.files_indexed,
            "chunks_encoded": report.chunks_encoded,
            "seconds": round(time.perf_counter() - started, 1),
        }
        yield service, store, embedder, summary
    finally:
        store.close()
        pools.shutdown()


async def run_mode(service: SearchService, collection: Collection, mode: str) -> Run:
    run: Run = {}
    for qid, text in collection.queries.items():
        request = SearchRequest(query=text[:1000], mode=mode, limit=DEPTH)  # type: ignore[arg-type]
        reply = await service.search(request)
        run[qid] = [(collection.doc_id(hit.path), hit.score) for hit in reply.results]
    return run


def query_lists(
    store: Store, embedder: Embedder, collection: Collection, cache: Path
) -> dict[str, QueryLists]:
    """Per query, every candidate the service would fuse, with its exact cosine and BM25.

    The candidates are the union of each mode's top `DEPTH` (cosine over the
    search threshold, BM25 > 0), as in the service; the lists are cached in
    `cache` (JSON), keyed by the queries and the index, so a rerun of the
    study encodes nothing."""
    key = f"v3:{len(collection.queries)}:{sum(map(len, collection.queries.values()))}"
    if cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return {qid: QueryLists.from_json(value) for qid, value in saved["lists"].items()}
    snapshot = build_snapshot(store, 0, True)
    stemmer = Stemmer()
    postings = snapshot.postings
    paths = [collection.doc_id(note.path) for note in snapshot.notes]
    threshold = SearchRequest(query="x").threshold
    subjects = subject_vectors(store, embedder, snapshot, cache.with_suffix(".subjects.npy"))
    lists: dict[str, QueryLists] = {}
    for qid, text in collection.queries.items():
        stems = query_stems(store, stemmer, text[:1000])
        keyword = keyword_scores(snapshot, postings.score(stems))
        query_vector = embedder.encode_query(text[:1000])
        semantic = semantic_scores(snapshot, query_vector)
        semantic_top = top(np.where(semantic.scores >= threshold, semantic.scores, -np.inf), DEPTH)
        keyword_top = top(keyword.scores, DEPTH)
        rows = np.unique(np.concatenate((semantic_top, keyword_top)))
        count = postings.documents
        frequencies = [
            float(postings.df[row])
            for row in (postings.row(stem) for stem in dict.fromkeys(stems))
            if row is not None and postings.df[row] > 0
        ]
        idf = [float(np.log10((count - df + 0.5) / (df + 0.5) + 1)) for df in frequencies]
        lists[qid] = QueryLists(
            docs=[paths[row] for row in rows],
            cosine=[float(value) for value in semantic.scores[rows]],
            bm25=[float(value) if np.isfinite(value) else 0.0 for value in keyword.scores[rows]],
            semantic_listed=[bool(row in set(semantic_top.tolist())) for row in rows],
            keyword_listed=[bool(row in set(keyword_top.tolist())) for row in rows],
            bound=float(keyword.bound),
            words=len(tokenize(text[:1000])),
            idf=idf,
            max_idf=most_idf(snapshot.chunk_count),
            subject=[
                None if np.isnan(value) else float(value)
                for value in subjects[rows] @ np.asarray(query_vector, dtype=np.float32)
            ],
        )
    cache.write_text(
        json.dumps({"key": key, "lists": {q: v.to_json() for q, v in lists.items()}}),
        encoding="utf-8",
    )
    return lists


def most_idf(documents: int) -> float:
    """The idf of a term in one document of `documents` (BM25's idf, jarvisd.search.postings)."""
    return float(np.log10((max(documents, 1) - 0.5) / 1.5 + 1))


def subject_text(title: str, frontmatter: dict[str, Any], from_file_name: bool) -> str | None:
    """What a note says it is about: its title, aliases and frontmatter `description`.

    None for a note whose only title is an artificial file name (a BEIR passage
    with no title), so the study does not credit a subject the data lacks."""
    parts = [] if from_file_name else [title]
    aliases = frontmatter.get("aliases") or frontmatter.get("alias") or []
    parts += [aliases] if isinstance(aliases, str) else [str(a) for a in aliases if a]
    description = frontmatter.get("description")
    if isinstance(description, str) and description.strip():
        parts.append(description.strip())
    return ". ".join(part.strip() for part in parts if part.strip()) or None


def subject_vectors(
    store: Store, embedder: Embedder, snapshot: Any, cache: Path
) -> npt.NDArray[np.float32]:
    """Per snapshot note row, the vector of its subject text (NaN rows where it has none)."""
    if cache.is_file():
        saved: npt.NDArray[np.float32] = np.load(cache)
        if saved.shape[0] == snapshot.note_count:
            return saved
    rows = store.reader().execute("SELECT path, title, frontmatter FROM notes").fetchall()
    by_path = {str(path): (str(title), json.loads(front or "{}")) for path, title, front in rows}
    texts: list[str | None] = []
    for note in snapshot.notes:
        title, front = by_path[note.path]
        beir_passage = bool(re.fullmatch(r"d\d{5}\.md", note.path)) and "title" not in front
        texts.append(subject_text(title, front if isinstance(front, dict) else {}, beir_passage))
    present = [i for i, text in enumerate(texts) if text]
    dimension = embedder.probe_dimension()
    vectors = np.full((len(texts), dimension), np.nan, dtype=np.float32)
    if present:
        vectors[present] = embedder.encode([str(texts[i]) for i in present])
    np.save(cache, vectors)
    return vectors


# ----------------------------------------------------------------------------- metrics


def ndcg_at(run: Run, qrels: Qrels, k: int = 10, only: Sequence[str] | None = None) -> float:
    """Mean nDCG@k: linear gains, log2 discount, queries without positives skipped."""
    values = []
    for qid in only if only is not None else qrels:
        judged = qrels.get(qid, {})
        positives = sorted((gain for gain in judged.values() if gain > 0), reverse=True)
        if not positives:
            continue
        ranked = [doc for doc, _ in run.get(qid, [])][:k]
        dcg = sum(judged.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked))
        ideal = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(positives[:k]))
        values.append(dcg / ideal)
    return sum(values) / len(values) if values else 0.0


def recall_at(run: Run, qrels: Qrels, k: int = 100, only: Sequence[str] | None = None) -> float:
    values = []
    for qid in only if only is not None else qrels:
        positives = {doc for doc, gain in qrels.get(qid, {}).items() if gain > 0}
        if not positives:
            continue
        ranked = {doc for doc, _ in run.get(qid, [])[:k]}
        values.append(len(ranked & positives) / len(positives))
    return sum(values) / len(values) if values else 0.0


def _trec(text: str) -> str:
    """A query or document id as a whitespace-separated TREC line can hold it."""
    return re.sub(r"\s", "_", text)


def write_run(path: Path, run: Run, tag: str) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for qid, ranked in run.items():
            for rank, (doc, score) in enumerate(ranked, start=1):
                handle.write(f"{_trec(qid)} Q0 {_trec(doc)} {rank} {score:.6f} {tag}\n")


def write_qrels(path: Path, qrels: Qrels) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for qid, judged in qrels.items():
            for doc, gain in judged.items():
                handle.write(f"{_trec(qid)}\t{_trec(doc)}\t{gain}\n")


def independent_score(scorer: Path, qrels: Path, run_file: Path) -> dict[str, Any] | None:
    if not scorer.is_file():
        return None
    output = subprocess.run(
        [sys.executable, str(scorer), str(qrels), str(run_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(output)
    return result


# --------------------------------------------------------------------------------- main

ALL = ("scifact", "msmarco-subset", "obsidian-help")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "scifact")
    parser.add_argument("--all", action="store_true", help=f"every collection: {', '.join(ALL)}")
    parser.add_argument("--run-file", type=Path, help="write TREC runs to PATH.<mode>")
    parser.add_argument("--limit-docs", type=int, help="index only the first N documents")
    parser.add_argument("--workdir", type=Path, help="keep vaults and databases here (reused)")
    parser.add_argument("--study", action="store_true", help="also compare fusion methods")
    parser.add_argument("--quantize", choices=["none", "int8"], default="none")
    parser.add_argument("--chunk-tokens", type=int, default=200)
    parser.add_argument(
        "--subject-mix", type=float, help="search.subject_mix (default: the config's; 0: off)"
    )
    return parser.parse_args(argv)


async def evaluate(
    args: argparse.Namespace, data: Path, workdir: Path
) -> tuple[dict[str, Any], dict[str, dict[str, QueryLists]], dict[str, Qrels]]:
    """Every query set of one data folder, each mode; the study's lists when asked."""
    data = data.resolve()
    scorer = data.parent.parent / "tools" / "ndcg.py"
    report: dict[str, Any] = {"data": str(data), "collections": {}}
    sets = load_collections(data, workdir, args.limit_docs)
    database = workdir / "db" / "jarvis.duckdb"
    lists: dict[str, dict[str, QueryLists]] = {}
    qrels: dict[str, Qrels] = {}
    async with indexed(
        sets[0].vault, database, data.name, args.quantize, args.chunk_tokens, args.subject_mix
    ) as (
        service,
        store,
        embedder,
        summary,
    ):
        report["index"] = summary
        for collection in sets:
            report["collections"][collection.name] = await _evaluate_set(
                service, store, collection, args, scorer, workdir
            )
            if args.study:
                cache = workdir / f"lists-{_safe(collection.name)}.json"
                lists[collection.name] = query_lists(store, embedder, collection, cache)
                qrels[collection.name] = collection.qrels
    return report, lists, qrels


def _safe(name: str) -> str:
    return name.replace(":", "-").replace("/", "-")


async def _evaluate_set(
    service: SearchService,
    store: Store,
    collection: Collection,
    args: argparse.Namespace,
    scorer: Path,
    workdir: Path,
) -> dict[str, Any]:
    queries, qrels = collection.queries, collection.qrels
    out: dict[str, Any] = {"queries": len(queries), "modes": {}}
    qrels_file = workdir / f"qrels-{_safe(collection.name)}.tsv"
    write_qrels(qrels_file, qrels)
    for mode in MODES:
        started = time.perf_counter()
        run = await run_mode(service, collection, mode)
        figures: dict[str, Any] = {
            "ndcg@10": round(ndcg_at(run, qrels), 4),
            "recall@100": round(recall_at(run, qrels), 4),
            "ms_per_query": round((time.perf_counter() - started) * 1000 / len(queries), 2),
        }
        name = _safe(collection.name)
        run_file = (
            Path(f"{args.run_file}.{name}.{mode}")
            if args.run_file
            else workdir / f"run.{name}.{mode}"
        )
        write_run(run_file, run, f"jarvisd-{mode}")
        figures["independent"] = independent_score(scorer, qrels_file, run_file)
        out["modes"][mode] = figures
    out["bm25_ms_per_query"] = bm25_speed(store, list(queries.values()))
    return out


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets over the collections that count (not the self-made title sets)."""
    margins: dict[str, float] = {}
    for collection in report["collections"].values():
        for name, figures in collection["collections"].items():
            if name not in TARGET_NAMES:
                continue
            ndcg = {mode: figures["modes"][mode]["ndcg@10"] for mode in MODES}
            margins[name] = round(ndcg["hybrid"] - max(ndcg["keyword"], ndcg["semantic"]), 4)
    scifact = report["collections"].get("scifact", {}).get("collections", {}).get("scifact")
    median = statistics.median(margins.values()) if margins else None
    return {
        "hybrid_minus_best_single": margins,
        "every_collection_within_0.005": all(value >= -0.005 for value in margins.values()),
        "median_margin": median,
        "median_margin_positive": median is not None and median > 0,
        "scifact_hybrid": scifact["modes"]["hybrid"]["ndcg@10"] if scifact else None,
        "scifact_hybrid_at_least_0.73": bool(
            scifact and scifact["modes"]["hybrid"]["ndcg@10"] >= 0.73
        ),
        "missing": [
            "an entity-search collection (40 judged queries, 5,000 docs): not in ../shared/data"
        ],
    }


TARGET_NAMES = ALL


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    folders = [SHARED_DATA / name for name in ALL] if args.all else [args.data]
    missing = [str(folder) for folder in folders if not folder.exists()]
    report: dict[str, Any] = {"collections": {}, "skipped": missing}
    lists: dict[str, dict[str, QueryLists]] = {}
    qrels: dict[str, Qrels] = {}
    with work_directory(args.workdir, "jarvis-beir-") as workdir:
        for folder in folders:
            if not folder.exists():
                continue
            place = workdir / folder.name if args.all else workdir
            place.mkdir(parents=True, exist_ok=True)
            figures, found, judged = asyncio.run(evaluate(args, folder, place))
            report["collections"][folder.name] = figures
            lists.update(found)
            qrels.update(judged)
    if args.all:
        report["targets"] = targets(report)
    if args.study:
        report["fusion_study"] = study(lists, qrels)
    return report


def bm25_speed(store: Store, texts: list[str]) -> dict[str, float]:
    """The keyword path's BM25 in memory (as served) against the same scores in SQL."""
    stemmer = Stemmer()
    stems = [query_stems(store, stemmer, text[:1000]) for text in texts]
    postings = postings_of(store.read_bm25())
    started = time.perf_counter()
    for terms in stems:
        postings.score(terms)
    in_memory = (time.perf_counter() - started) * 1000 / len(stems)
    sample = stems[:50]
    started = time.perf_counter()
    for terms in sample:
        store.bm25_reference(terms)
    in_sql = (time.perf_counter() - started) * 1000 / len(sample)
    return {"in_memory": round(in_memory, 3), "sql": round(in_sql, 3)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure("warning", "json")  # stdout is the report; the log goes to stderr
    if not args.all and not args.data.exists():
        print(json.dumps({"skipped": f"no data at {args.data}"}))
        return 0
    print(json.dumps(run_all(args), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
