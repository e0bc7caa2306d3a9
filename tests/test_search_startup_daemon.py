"""Start-up honesty through the real daemon: searches during the first index run say so,
and the wait for the model at a cold start stays out of the search_slow alert's window."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProcess, base_config, ctl

pytestmark = [pytest.mark.serial, pytest.mark.slow]
Start = Callable[..., DaemonProcess]

WORDS = [
    *("harbour", "lantern", "copper", "meadow", "violin", "glacier", "pepper", "orchard"),
    *("canyon", "saddle", "thunder", "marble", "pillow", "quartz", "falcon", "willow"),
    *("ember", "basket", "compass", "sparrow"),
]


def big_vault(root: Path, notes: int = 80) -> Path:
    """Enough text that the first run (model load, then encoding) outlasts a few searches."""
    vault = root / "vault"
    vault.mkdir()
    for number in range(notes):
        words = [WORDS[(number * 7 + i * 3) % len(WORDS)] for i in range(120)]
        body = " ".join(words)
        (vault / f"note {number:03d}.md").write_text(
            f"# Note {number}\n\n{body}.\n\nThe harbour story number {number}.\n", encoding="utf-8"
        )
    return vault


def search(daemon: DaemonProcess, **query: Any) -> dict[str, Any]:
    reply: dict[str, Any] = daemon.client.get("/v1/search", **query)
    return reply


# A model load and 80 notes to encode: a minute on a quiet 2-core machine, several on a
# loaded one (the 300 s default ran out at load 8); a generous limit keeps CI off time.
@pytest.mark.timeout(900)
def test_searches_during_the_first_index_run_say_so(start_daemon: Start, short_tmp: Path) -> None:
    vault = big_vault(short_tmp)
    daemon = start_daemon(
        vaults=[{"name": "big", "path": str(vault)}],
        embedding={"preload": False},
        indexing={"on_start": True, "watch": False},
    )
    # The run starts right after ready; keyword searches answer at once meanwhile.
    seen: dict[str, Any] | None = None
    line = ""
    while not daemon.events("index.finished"):
        reply = search(daemon, q="harbour", mode="keyword")
        if reply["indexing"] is not None:
            seen = reply["indexing"]
            printed = ctl(daemon, "search", "harbour", "--mode", "keyword")
            assert printed.returncode == 0, printed.stderr
            line = next((x for x in printed.stdout.splitlines() if x.startswith("indexing:")), "")
            break
        time.sleep(0.05)
    assert seen is not None, "no search was answered during the first run"
    assert set(seen) == {"done", "total", "phase"}
    assert 0 <= seen["done"] <= seen["total"] <= 80
    # jarvisctl ran while the run still worked (a model load and 80 notes to encode
    # take far longer than one jarvisctl), unless the run is over by now.
    assert line or daemon.events("index.finished")
    if line:
        assert "first index run is in progress" in line, line
    daemon.wait_event("index.finished", timeout=900)
    after = search(daemon, q="harbour", mode="keyword")
    assert after["indexing"] is None and after["total"] == 80
    printed = ctl(daemon, "search", "harbour", "--mode", "keyword")
    assert printed.returncode == 0 and "indexing:" not in printed.stdout
    as_json = json.loads(ctl(daemon, "search", "harbour", "--json").stdout)
    assert as_json["indexing"] is None


@pytest.mark.timeout(900)
def test_the_model_wait_at_a_cold_start_is_not_a_slow_search(
    start_daemon: Start, short_tmp: Path
) -> None:
    vault = big_vault(short_tmp, notes=20)
    # Every search counts as slow (threshold 0): only what the window holds can fire it.
    rule = {"name": "search_slow", "metric": "search_latency_p95_seconds", "threshold": 0}
    config = base_config(
        short_tmp,
        vaults=[{"name": "small", "path": str(vault)}],
        embedding={"preload": False},
        indexing={"on_start": True, "watch": False},
        schedule={"index": None, "maintenance": None, "memory_sample": "200ms"},
        alerts={"rules": [rule]},
    )
    first = start_daemon(config)
    first.wait_event("index.finished", timeout=600)
    first.stop()
    # Restarted on the indexed vault: the first run encodes nothing, so the model is
    # still unloaded when the first hybrid search comes and waits for it to load.
    daemon = start_daemon(config)
    daemon.wait_event("index.finished", timeout=600)
    status = daemon.client.get("/v1/search/stats")
    assert status["model_loaded"] is False
    cold = search(daemon, q="harbour lantern", mode="hybrid")
    assert cold["results"] and cold["indexing"] is None
    operations = daemon.client.get("/v1/metrics/latency")["operations"]
    assert "search" not in operations and "search:hybrid" not in operations
    wait_for_samples(daemon, after=time.time(), count=2)  # each sample evaluates the rules
    assert not daemon.events("alert.fired")
    # The next search finds the model loaded: it is in the window, and fires the rule.
    warm = search(daemon, q="copper meadow", mode="hybrid")
    assert warm["results"]
    operations = daemon.client.get("/v1/metrics/latency")["operations"]
    assert operations["search:hybrid"]["count"] == 1
    fired = daemon.wait_event("alert.fired", timeout=60)[0]
    assert fired["rule"] == "search_slow"
    assert fired["value"] <= operations["search:hybrid"]["max"] + 1e-9


def wait_for_samples(daemon: DaemonProcess, after: float, count: int) -> None:
    """Until the sampler (which evaluates the alert rules) has run `count` times past `after`."""
    seen: set[float] = set()
    deadline = time.monotonic() + 60
    while len(seen) < count:
        assert time.monotonic() < deadline, "the memory sampler did not run"
        latest = daemon.client.get("/v1/memory")["latest"]
        if latest and latest["timestamp"] > after:
            seen.add(latest["timestamp"])
        time.sleep(0.05)
