"""benchmarks.beir on any BEIR-layout folder: ids no file name can hold, graded qrels,
hand-written question sets; the real pipeline and model on a five-document corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import beir

DOCUMENTS = [
    ("web/page?1", "", "Espresso needs a fine grind and water at about 93 degrees."),
    ("a b/c", "Sourdough", "A sourdough starter is flour and water left to ferment."),
    ("x:y*z", "", "Glaciers move slowly downhill under their own weight."),
    ("plain", "Bicycles", "Oil the bicycle chain every few hundred kilometres."),
    ("..", "", "The violin has four strings tuned in fifths."),
]


def beir_folder(root: Path) -> Path:
    data = root / "odd-ids"
    data.mkdir()
    with (data / "corpus.jsonl").open("w", encoding="utf-8") as corpus:
        for doc_id, title, text in DOCUMENTS:
            corpus.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    queries = [("q/1", "how fine should coffee be ground"), ("q 2", "looking after a bike chain")]
    with (data / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for qid, text in queries:
            handle.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (data / "qrels-test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq/1\tweb/page?1\t3\nq/1\ta b/c\t0\nq 2\tplain\t2\n",
        encoding="utf-8",
    )
    return data


def test_ids_that_are_no_file_names_and_graded_judgements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = beir_folder(tmp_path)
    work = tmp_path / "work"
    assert beir.main(["--data", str(data), "--workdir", str(work), "--study"]) == 0
    report = json.loads(capsys.readouterr().out)
    figures = report["collections"]["odd-ids"]["collections"]["odd-ids"]
    assert figures["queries"] == 2
    # Notes are named by position; the ids come back in the runs as they were.
    assert sorted(path.name for path in (work / "vault").iterdir()) == [
        f"d{n:05d}.md" for n in range(5)
    ]
    assert "title: Sourdough" in (work / "vault" / "d00001.md").read_text(encoding="utf-8")
    run = (work / "run.odd-ids.semantic").read_text(encoding="utf-8").splitlines()
    first = {line.split()[0]: line.split()[2] for line in run if line.split()[3] == "1"}
    assert first == {"q/1": "web/page?1", "q_2": "plain"}  # whitespace made `_` in TREC lines
    semantic = figures["modes"]["semantic"]
    assert semantic["ndcg@10"] == 1.0 and semantic["recall@100"] == 1.0
    study = report["fusion_study"]["ndcg@10"]
    assert study["semantic_only"]["odd-ids"] == 1.0
    # A second run reuses the database: nothing is encoded again.
    assert beir.main(["--data", str(data), "--workdir", str(work)]) == 0
    again = json.loads(capsys.readouterr().out)["collections"]["odd-ids"]
    assert again["index"]["chunks_encoded"] == 0
    assert again["collections"]["odd-ids"]["modes"]["semantic"]["ndcg@10"] == 1.0


def test_graded_qrels_are_kept_as_given(tmp_path: Path) -> None:
    queries, qrels = beir.beir_queries(beir_folder(tmp_path))
    assert qrels == {"q/1": {"web/page?1": 3, "a b/c": 0}, "q 2": {"plain": 2}}
    assert set(queries) == {"q/1", "q 2"}
    run = {"q/1": [("a b/c", 1.0), ("web/page?1", 0.5)], "q 2": [("plain", 1.0)]}
    # q/1: its one positive (grade 3) at rank 2 -> 1/log2(3); q 2: perfect.
    assert beir.ndcg_at(run, qrels) == pytest.approx((1 / 1.5849625 + 1.0) / 2, rel=1e-6)


def test_a_question_judging_a_missing_note_is_an_error(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    (vault / "Sub").mkdir(parents=True)
    (vault / "Sub" / "Here.md").write_text("# Here\n", encoding="utf-8")
    questions = tmp_path / "questions.yaml"
    questions.write_text(
        '- q: where\n  relevant: {"Sub/Here": 2}\n- q: gone\n  relevant: {"Sub/Gone": 2}\n',
        encoding="utf-8",
    )
    with pytest.raises(SystemExit, match="question 2 judges 'Sub/Gone'"):
        beir.question_set(questions, vault)
    questions.write_text('- q: where is it\n  relevant: {"Sub/Here": 2}\n', encoding="utf-8")
    queries, qrels = beir.question_set(questions, vault)
    assert queries == {"q001": "where is it"} and qrels == {"q001": {"Sub/Here": 2}}


def test_the_obsidian_questions_judge_notes_that_exist() -> None:
    vault = beir.SHARED_DATA / "obsidian-help"
    if not vault.is_dir():
        pytest.skip(f"{vault} is absent (shared benchmark data)")
    queries, qrels = beir.question_set(beir.QUESTIONS / "obsidian-help-questions.yaml", vault)
    assert len(queries) >= 40
    assert all(2 in judged.values() for judged in qrels.values())  # each has its answer
