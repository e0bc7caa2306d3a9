"""An indexing run's progress: its phases, the smoothed encode rate, the ETA from chunks left."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from jarvisd.config import Config
from jarvisd.indexing import indexer as indexer_module
from jarvisd.indexing.indexer import Indexer, IndexEvent, Progress, RunReport
from jarvisd.indexing.progress import SMOOTHING, EncodeProgress
from jarvisd.indexing.vault import FileInfo
from jarvisd.model.embedder import Embedder
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools
from jarvisd.store import Store

EXAMPLE = Path(__file__).resolve().parents[1] / "jarvisd" / "example_vault"


def files(*sizes: int) -> list[FileInfo]:
    return [FileInfo(f"{index}.md", size, 0) for index, size in enumerate(sizes)]


def test_chunks_left_are_estimated_from_the_bytes_left_not_the_files_left() -> None:
    progress = EncodeProgress()
    planned = files(1_000, 9_000, 10_000)  # one short note, two long ones
    progress.planned(planned)
    assert progress.remaining() is None  # nothing parsed: no chunks per byte yet
    progress.parsed(planned[:1], texts=2)  # 2 chunks per 1000 bytes
    assert progress.remaining() == pytest.approx(2 + 19_000 * 2 / 1_000)
    progress.parsed(planned[1:], texts=36)
    assert progress.remaining() == 38  # all parsed: exact


def test_the_rate_is_smoothed_over_windows_and_the_eta_counts_down() -> None:
    progress = EncodeProgress()
    progress.planned(files(100, 100))
    progress.parsed(files(100, 100), texts=40)
    assert progress.rate is None and progress.eta(now=0.0) is None
    progress.start(now=10.0)
    progress.encoded(10, now=20.0)  # 1 chunk/s
    assert progress.rate == pytest.approx(1.0)
    assert progress.eta(now=20.0) == pytest.approx(30.0)
    assert progress.eta(now=25.0) == pytest.approx(25.0)  # between windows it counts down
    progress.encoded(10, now=25.0)  # 2 chunks/s
    assert progress.rate == pytest.approx(SMOOTHING * 2.0 + (1 - SMOOTHING) * 1.0)
    assert progress.eta(now=25.0) == pytest.approx(20 / progress.rate)
    assert progress.eta(now=1_000.0) == 0.0


def test_time_spent_loading_the_model_is_not_encoding_time() -> None:
    progress = EncodeProgress()
    progress.parsed(files(100), texts=20)
    progress.encoded(0, now=1.0)  # a window whose texts all had vectors: no clock yet
    progress.start(now=2.0)  # about to load the model...
    progress.start(now=13.0, restart=True)  # ...which took 11 s
    progress.encoded(10, now=18.0)
    assert progress.rate == pytest.approx(2.0)


@pytest.mark.slow
def test_a_cold_run_reports_its_phases_rate_and_eta(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexer_module, "WINDOW_FILES", 4)  # several windows from 17 notes
    shutil.copytree(EXAMPLE, tmp_path / "vault")
    config = Config.model_validate(
        {
            "vaults": [{"name": "v", "path": str(tmp_path / "vault")}],
            "storage": {"database": str(tmp_path / "j.duckdb")},
            "indexing": {"watch": False},
        }
    )
    embedder = Embedder(config.embedding)  # not loaded: the run loads it
    pools = Pools(config.threads)
    store = Store(config.database_path, config.storage, embedder.probe_dimension())
    indexer = Indexer(config, store, embedder, pools, Metrics())
    events: list[IndexEvent] = []
    indexer.subscribe(events.append)
    texts = [f"note {number}: " + "espresso grind " * (number % 23) for number in range(150)]
    try:
        report = asyncio.run(indexer.run())
        # The first encode of a run times a spread sample first: rows stay in order.
        probed = asyncio.run(indexer._encode(texts, RunReport(id=2, trigger="test", full=False)))
        plain = embedder.encode(texts)
    finally:
        store.close()
        pools.shutdown()
        embedder.unload()
    assert np.allclose(probed, plain, atol=1e-5)
    assert report.state == "done"
    progress = [e.as_dict() for e in events if isinstance(e, Progress) and e.run == report.id]
    phases = [phase for phase, _ in itertools.groupby(event["phase"] for event in progress)]
    assert phases == ["scanning", "loading model", "encoding", "finalizing"]
    loading = [event for event in progress if event["phase"] == "loading model"]
    assert all(event["chunks_per_second"] is None for event in loading)
    timed = [event for event in progress if event["eta_seconds"] is not None]
    assert len(timed) >= 3 and all(event["chunks_per_second"] > 0 for event in timed)
    last = progress[-2]  # the last window written, before finalizing
    assert last["chunks_to_encode"] == last["chunks_encoded"] == report.chunks_encoded
    assert progress[-1]["phase"] == "finalizing" and progress[-1]["eta_seconds"] is None
    assert [e for e in events if isinstance(e, RunReport)] == [report]  # the run's end
    assert "encoding" not in report.as_dict()


def test_the_progress_bar_shows_the_phase_the_rate_and_the_daemons_eta() -> None:
    from jarvisd.cli.index import progress_fields

    loading = {"phase": "loading model", "files_total": 172, "files_done": 0}
    assert progress_fields({**loading, "chunks_per_second": None, "eta_seconds": None}) == {
        "description": "loading model",
        "total": 172,
        "completed": 0,
        "chunks": 0,
        "rate": "-",  # not "0.0 chunks/s" while nothing can be encoded yet
        "eta": "-",
    }
    encoding = {
        "phase": "encoding",
        "files_total": 172,
        "files_done": 96,
        "chunks_encoded": 1_200,
        "chunks_to_encode": 2_480,
        "chunks_per_second": 41.27,
        "eta_seconds": 31.0,
    }
    shown = progress_fields(encoding)
    assert (shown["chunks"], shown["rate"], shown["eta"]) == ("1200/~2480", "41.3", "31.0 s")


def test_progress_reads_back_what_it_writes_under_the_wire_names() -> None:
    progress = Progress(
        run=3,
        phase="encoding",
        done=96,
        total=172,
        chunks_done=800,
        chunks_encoded=1_200,
        chunks_to_encode=2_480,
        files_per_second=2.5,
        chunks_per_second=41.3,
        elapsed_seconds=38.4,
        eta_seconds=31.0,
    )
    line = progress.as_dict()
    assert line["type"] == "progress"
    assert (line["files_done"], line["files_total"]) == (96, 172)
    assert Progress.from_dict(json.loads(json.dumps(line))) == progress
    brief = Progress.from_brief(progress.brief())  # a search reply's `indexing`
    assert (brief.phase, brief.done, brief.total) == ("encoding", 96, 172)
    ended = Progress.from_run(
        {"id": 3, "state": "done", "files_indexed": 172, "files_to_index": 172}
    )
    assert (ended.phase, ended.done, ended.total) == ("done", 172, 172)
