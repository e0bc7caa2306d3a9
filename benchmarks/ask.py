"""`python -m benchmarks.ask`: answer quality and speed on ../shared/data/obsidian-help.

Runs the real daemon on the Obsidian help vault and asks every question of
`benchmarks/data/ask_questions.yaml` once per model: without an LLM
(templates and extractive answers), then with each `--model` folder (templates
and the LLM, citations checked). Prints JSON with, per path and per model:

- key_fact_recall: the share of an answer's key facts it holds;
- citation_precision: the share of cited notes that hold a key fact (or are
  the note that answers the question);
- unsupported_share: sentences the check found no passage for;
- routing_accuracy: template questions answered by their intent, the others
  not answered by any template;
- latency (p50/p95 total), first token and tokens/s on the LLM path, with the
  prompt held near `--prompt-tokens` (600) by llm.context_tokens;
- peak RSS of the daemon.

Targets on 2 cores: template p95 < 100 ms; extractive citation precision
>= 0.9; first token < 3 s with SmolLM2 and a 600-token prompt; the LLM path
no worse than extractive on citation precision.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import REPO, SHARED_DATA, percentiles, running_daemon, work_directory
from jarvisd.cli.client import ControlClient

QUESTIONS = Path(__file__).with_name("data") / "ask_questions.yaml"
DEFAULT_MODEL = REPO / "models" / "smollm2-135m-instruct"
MAX_TOKENS = 96


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "obsidian-help")
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument(
        "--model", type=Path, action="append", help=f"LLM folder(s) (default: {DEFAULT_MODEL})"
    )
    parser.add_argument("--workdir", type=Path, help="keep the index here for the next run")
    parser.add_argument("--prompt-tokens", type=int, default=600)
    parser.add_argument("--limit", type=int, help="only the first N questions (smoke runs)")
    parser.add_argument("--dump", type=Path, help="write every reply here (JSON lines)")
    return parser.parse_args(argv)


def normalise(text: str) -> str:
    return " ".join(text.replace("`", "").replace("*", "").lower().split())


def holds(text: str, fact: str) -> bool:
    return any(normalise(option) in text for option in fact.split("|"))


def score(question: dict[str, Any], reply: dict[str, Any], notes: dict[str, str]) -> dict[str, Any]:
    facts: list[str] = question.get("facts") or []
    answer = normalise(reply["answer"])
    recall = sum(holds(answer, fact) for fact in facts) / len(facts) if facts else None
    cited = [c["path"] for c in reply["citations"]]
    precise = [
        path == question.get("note") or any(holds(notes.get(path, ""), f) for f in facts)
        for path in cited
    ]
    intent = question.get("intent")
    routed = (
        reply["path"] == "template" and reply["template"] == intent
        if intent
        else reply["path"] != "template"
    )
    checked = [s for s in reply["sentences"] if s["score"] is not None]
    return {
        "question": question["question"],
        "template": reply["template"],
        "path": reply["path"],
        "recall": recall,
        "precision": sum(precise) / len(precise) if precise and facts else None,
        "routed": routed,
        "sentences": len(checked),
        "unsupported": sum(1 for s in checked if s["unsupported"]),
        "timings": reply["timings"],
    }


def summarise(scored: list[dict[str, Any]]) -> dict[str, Any]:
    by_path: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in scored:
        by_path[item["path"]].append(item)
    out: dict[str, Any] = {
        "routing_accuracy": round(sum(i["routed"] for i in scored) / len(scored), 4),
        "misrouted": [f"{i['question']} -> {i['template'] or i['path']}" for i in scored
                      if not i["routed"]],
        "paths": {},
    }  # fmt: skip
    for path, items in sorted(by_path.items()):
        out["paths"][path] = _path_figures(items)
    return out


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.fmean(known), 4) if known else None


def _path_figures(items: list[dict[str, Any]]) -> dict[str, Any]:
    sentences = sum(i["sentences"] for i in items)
    totals = [i["timings"]["total_ms"] for i in items]
    figures: dict[str, Any] = {
        "answers": len(items),
        "key_fact_recall": _mean([i["recall"] for i in items]),
        "citation_precision": _mean([i["precision"] for i in items]),
        "unsupported_share": round(sum(i["unsupported"] for i in items) / sentences, 4)
        if sentences
        else None,
        "total_ms": {k: round(v, 1) for k, v in percentiles(totals).items()},
    }
    first = [i["timings"]["first_token_ms"] for i in items if i["timings"]["first_token_ms"]]
    if first:
        rates = [i["timings"]["tokens_per_second"] for i in items]
        prompts = [i["timings"]["prompt_tokens"] for i in items]
        figures["first_token_ms"] = {k: round(v, 1) for k, v in percentiles(first).items()}
        figures["tokens_per_second_median"] = round(statistics.median(r for r in rates if r), 2)
        figures["prompt_tokens_median"] = statistics.median(prompts)
        figures["retrieval_ms_median"] = statistics.median(
            i["timings"]["retrieval_ms"] for i in items
        )
        figures["check_ms_median"] = statistics.median(i["timings"]["check_ms"] for i in items)
    return figures


def ask_all(
    client: ControlClient,
    questions: list[dict[str, Any]],
    notes: dict[str, str],
    dump: Path | None = None,
) -> tuple[list[dict[str, Any]], int]:
    scored, peak = [], 0
    for question in questions:
        reply = client.request("POST", "/v1/ask", {"question": question["question"]}, timeout=900)
        scored.append(score(question, reply, notes))
        if dump is not None:
            with dump.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"spec": question, "reply": reply}) + "\n")
        peak = max(peak, int(client.post("/v1/metrics/sample")["rss"]))
    return scored, peak


def reload_with(client: ControlClient, config_path: Path, llm: dict[str, Any]) -> None:
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["llm"] = llm
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    outcome = client.post("/v1/reload")
    if not outcome.get("ok"):
        raise RuntimeError(f"reload failed: {outcome}")


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(evaluate(parse_args(argv)), indent=2))


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    if not (args.data / "Home.md").is_file():
        return {"skipped": f"{args.data} is absent"}
    questions = yaml.safe_load(args.questions.read_text(encoding="utf-8"))["questions"]
    questions = questions[: args.limit] if args.limit else questions
    notes = {
        str(path.relative_to(args.data)): normalise(path.read_text(encoding="utf-8"))
        for path in args.data.rglob("*.md")
    }
    models = args.model or ([DEFAULT_MODEL] if (DEFAULT_MODEL / "config.json").is_file() else [])
    report: dict[str, Any] = {"questions": len(questions), "load_average": os.getloadavg()}
    with work_directory(args.workdir, "jb-ask-") as root:
        config = {
            "vaults": [{"name": "help", "path": str(args.data)}],
            "control": {"socket": str(root / "run" / "j.sock")},
            "storage": {"database": str(root / "db" / "j.duckdb")},
            "indexing": {"watch": False},
            "llm": {"model": None},
        }
        with running_daemon(config, root=root) as (client, _process, workdir):
            started = time.perf_counter()
            _wait_indexed(client)
            report["index_seconds"] = round(time.perf_counter() - started, 1)
            scored, peak = ask_all(client, questions, notes, args.dump)
            report["models"] = {"none": {**summarise(scored), "peak_rss_bytes": peak}}
            for model in models:
                budget = MAX_TOKENS + args.prompt_tokens
                llm = {"model": str(model), "max_tokens": MAX_TOKENS, "context_tokens": budget,
                       "idle_unload": "0s"}  # fmt: skip
                reload_with(client, workdir / "jarvis.yaml", llm)
                scored, peak = ask_all(client, questions, notes, args.dump)
                report["models"][model.name] = {**summarise(scored), "peak_rss_bytes": peak}
    report["load_average_after"] = os.getloadavg()
    return report


def _wait_indexed(client: ControlClient) -> None:
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        status = client.get("/v1/status")
        last = status.get("last_index_run") or {}
        if last.get("state") == "done" and status["embedding"]["loaded"]:
            return
        time.sleep(0.5)
    raise TimeoutError("indexing did not finish in 30 minutes")


if __name__ == "__main__":
    main()
