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
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import SHARED_DATA, work_directory
from benchmarks.fusion_study import ModeLists, study
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
from jarvisd.search.keyword import Stemmer, bm25_sql, query_stems
from jarvisd.search.postings import read_postings
from jarvisd.search.request import SearchRequest
from jarvisd.store import Store

MODES = ("keyword", "semantic", "hybrid")
DEPTH = 100
Qrels = dict[str, dict[str, int]]
Run = dict[str, list[tuple[str, float]]]


# ------------------------------------------------------------------------ collections


def scifact_vault(data: Path, vault: Path, limit_docs: int | None) -> int:
    """Write one note per corpus document (only files whose text changed)."""
    vault.mkdir(parents=True, exist_ok=True)
    count = 0
    with (data / "corpus.jsonl").open(encoding="utf-8") as corpus:
        for line in corpus:
            if limit_docs is not None and count >= limit_docs:
                break
            document = json.loads(line)
            front = yaml.safe_dump({"title": document["title"]}, allow_unicode=True, width=1 << 20)
            body = f"---\n{front}---\n# {document['title']}\n\n{document['text']}\n"
            path = vault / f"{document['_id']}.md"
            if not path.exists() or path.read_text(encoding="utf-8") != body:
                path.write_text(body, encoding="utf-8")
            count += 1
    return count


def scifact_queries(data: Path) -> tuple[dict[str, str], Qrels]:
    qrels: Qrels = {}
    with (data / "qrels-test.tsv").open(encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if row and row[0] != "query-id":
                qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    queries = {}
    with (data / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            query = json.loads(line)
            if query["_id"] in qrels:
                queries[query["_id"]] = query["text"]
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


# ---------------------------------------------------------------------------- pipeline


@asynccontextmanager
async def indexed(
    vault: Path, database: Path, vault_name: str, quantize: str = "none", chunk_tokens: int = 200
) -> Any:
    """The real Indexer, Store, Embedder and SearchService, in-process, over `vault`."""
    config = Config(
        vaults=[VaultConfig(name=vault_name, path=vault)],
        storage=StorageConfig(database=database),
        embedding=EmbeddingConfig(preload=False, quantize=quantize),  # type: ignore[arg-type]
        indexing=IndexingConfig(
            chunk_tokens=chunk_tokens, chunk_overlap=min(32, chunk_tokens // 4)
        ),
        search=SearchConfig(max_limit=DEPTH, cache={"size": 0}),
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
        yield service, store, summary
    finally:
        store.close()
        pools.shutdown()


async def run_mode(service: SearchService, queries: dict[str, str], mode: str) -> Run:
    run: Run = {}
    for qid, text in queries.items():
        request = SearchRequest(query=text[:1000], mode=mode, limit=DEPTH)  # type: ignore[arg-type]
        reply = await service.search(request)
        run[qid] = [(_doc_id(hit["path"]), float(hit["score"])) for hit in reply["results"]]
    return run


async def run_lists(
    service: SearchService, store: Store, queries: dict[str, str]
) -> dict[str, ModeLists]:
    """Per query, the semantic and keyword lists with their own scores, for the study."""
    lists: dict[str, ModeLists] = {}
    cursor, stemmer = store.reader(), Stemmer()
    postings = read_postings(cursor)
    for qid, text in queries.items():
        per_mode = {}
        for mode in ("semantic", "keyword"):
            request = SearchRequest(query=text[:1000], mode=mode, limit=DEPTH)  # type: ignore[arg-type]
            reply = await service.search(request)
            per_mode[mode] = [
                (_doc_id(hit["path"]), float(hit["scores"][mode])) for hit in reply["results"]
            ]
        bound = postings.score(query_stems(cursor, stemmer, text[:1000])).bound
        lists[qid] = ModeLists(per_mode["semantic"], per_mode["keyword"], bound)
    return lists


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


def halves(queries: dict[str, str]) -> tuple[list[str], list[str]]:
    """Tune (even positions) and holdout (odd) halves, in a fixed order."""
    ordered = sorted(queries, key=lambda qid: (len(qid), qid))
    return ordered[0::2], ordered[1::2]


def write_run(path: Path, run: Run, tag: str) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for qid, ranked in run.items():
            for rank, (doc, score) in enumerate(ranked, start=1):
                handle.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")


def write_qrels(path: Path, qrels: Qrels) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for qid, judged in qrels.items():
            for doc, gain in judged.items():
                handle.write(f"{qid}\t{doc}\t{gain}\n")


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "scifact")
    parser.add_argument("--run-file", type=Path, help="write TREC runs to PATH.<mode>")
    parser.add_argument("--limit-docs", type=int, help="index only the first N documents")
    parser.add_argument("--workdir", type=Path, help="keep vault and database here (reused)")
    parser.add_argument("--study", action="store_true", help="also compare fusion methods")
    parser.add_argument("--quantize", choices=["none", "int8"], default="none")
    parser.add_argument("--chunk-tokens", type=int, default=200)
    return parser.parse_args(argv)


def collections(
    data: Path, workdir: Path, limit_docs: int | None
) -> Iterator[tuple[str, Path, dict[str, str], Qrels]]:
    """(name, vault, queries, qrels) per query set the data holds."""
    if (data / "corpus.jsonl").is_file():
        vault = workdir / "vault"
        scifact_vault(data, vault, limit_docs)
        queries, qrels = scifact_queries(data)
        yield data.name, vault, queries, qrels
        return
    for field in ("title", "description"):
        queries, qrels = note_queries(data, field)
        yield f"{data.name}:{field}s", data, queries, qrels


async def evaluate(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data = args.data.resolve()
    scorer = data.parent.parent / "tools" / "ndcg.py"
    report: dict[str, Any] = {"data": str(data), "collections": {}}
    sets = list(collections(data, workdir, args.limit_docs))
    vault = sets[0][1]
    database = workdir / "db" / "jarvis.duckdb"
    async with indexed(vault, database, data.name, args.quantize, args.chunk_tokens) as (
        service,
        store,
        summary,
    ):
        report["index"] = summary
        for name, _, queries, qrels in sets:
            report["collections"][name] = await _evaluate_set(
                service, store, name, queries, qrels, args, scorer, workdir
            )
    return report


async def _evaluate_set(
    service: SearchService,
    store: Store,
    name: str,
    queries: dict[str, str],
    qrels: Qrels,
    args: argparse.Namespace,
    scorer: Path,
    workdir: Path,
) -> dict[str, Any]:
    tune, holdout = halves(queries)
    out: dict[str, Any] = {"queries": len(queries), "modes": {}}
    qrels_file = workdir / f"qrels-{name.replace(':', '-')}.tsv"
    write_qrels(qrels_file, qrels)
    for mode in MODES:
        started = time.perf_counter()
        run = await run_mode(service, queries, mode)
        figures: dict[str, Any] = {
            "ndcg@10": round(ndcg_at(run, qrels), 4),
            "recall@100": round(recall_at(run, qrels), 4),
            "ndcg@10_tune": round(ndcg_at(run, qrels, only=tune), 4),
            "ndcg@10_holdout": round(ndcg_at(run, qrels, only=holdout), 4),
            "ms_per_query": round((time.perf_counter() - started) * 1000 / len(queries), 2),
        }
        suffix = "" if ":" not in name else "." + name.split(":")[1]
        run_file = (
            Path(f"{args.run_file}{suffix}.{mode}")
            if args.run_file
            else workdir / f"run{suffix}.{mode}"
        )
        write_run(run_file, run, f"jarvisd-{mode}")
        figures["independent"] = independent_score(scorer, qrels_file, run_file)
        out["modes"][mode] = figures
    out["bm25_ms_per_query"] = bm25_speed(store, list(queries.values()))
    if args.study:
        lists = await run_lists(service, store, queries)
        out["fusion_study"] = study(lists, qrels, tune, holdout)
    return out


def bm25_speed(store: Store, texts: list[str]) -> dict[str, float]:
    """The keyword path's BM25 in memory (as served) against the same scores in SQL."""
    cursor, stemmer = store.reader(), Stemmer()
    stems = [query_stems(cursor, stemmer, text[:1000]) for text in texts]
    postings = read_postings(cursor)
    started = time.perf_counter()
    for terms in stems:
        postings.score(terms)
    in_memory = (time.perf_counter() - started) * 1000 / len(stems)
    sample = stems[:50]
    started = time.perf_counter()
    for terms in sample:
        bm25_sql(cursor, terms)
    in_sql = (time.perf_counter() - started) * 1000 / len(sample)
    return {"in_memory": round(in_memory, 3), "sql": round(in_sql, 3)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure("warning", "json")  # stdout is the report; the log goes to stderr
    if not args.data.exists():
        print(json.dumps({"skipped": f"no data at {args.data}"}))
        return 0
    with work_directory(args.workdir, "jarvis-beir-") as workdir:
        report = asyncio.run(evaluate(args, workdir))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
