"""Edit to searchable, through the real daemon and its watcher, at growing vault sizes; JSON.

    python -m benchmarks.freshness [--sizes 200,2000,10000,14000] [--edits 20]
        [--debounce 500ms] [--source DIR] [--workdir DIR]

One daemon (watcher on, `indexing.debounce`, result cache off) over one vault
that grows between sizes: copies of the source notes (the Obsidian help vault,
else the bundled example vault) in folders `c000/`, `c001/`, ... Copies have
the same file names, so the same titles and chunk texts: their vectors are
reused by hash and only the first copy is encoded. At each size, after the
growth is indexed and a no-change run timed, `--edits` edits of mixed kinds
are made on disk one at a time (append a line, change a heading, add a
wikilink, remove one, rename, delete, create), each adding a word no note had
before (a changed heading carries it in its first line too: headings are not
BM25 text), and the client polls keyword search (and semantic search with the
edit's new sentence, for the kinds that add one) until the edit shows (the
deleted note gone, for deletes). The edits start once a hybrid search has
answered (the model preloaded, the first snapshot built).

Semantic "shows" means the note's new vector is searchable: the sentence,
searched among the notes modified since the edit (`since` = the file's new
mtime, so only the edited note qualifies, and only once its new version is
in the snapshot), finds the note with its best chunk being the one that holds
the sentence (the reply's `lines`; for a changed heading, any chunk of its
section, as each embeds its heading path). Not "in the top 10 of the whole vault":
every edit adds a sentence of the same template ("A {colour} {animal} carried
a {thing} across the {place} number N."), and an appended line joins the
note's last paragraph in one chunk (the chunker packs paragraphs), so after a
few hundred edits (the bursts add 100 a size) pure template sentences of
earlier edits outscore the diluted chunk: at 2,000 notes after 200 appends,
4 of 14 appends ranked 11-28 with the chunk's vector correct (its cosine the
same as a fresh encoding of its text). `semantic_top10` counts the found
edits whose note was also in the whole vault's top 10 (a ranking fact, not
freshness). It is polled once keyword search has found the edit (`poll`). Reported
per size:

- `keyword_seconds`, `semantic_seconds`: edit on disk to searchable, p50/p95;
- `run_seconds`: the index run each edit caused (`/v1/index` last run: plan,
  writes, finalize), the writer's busy time per edit (it holds the writer
  only inside that run), p50/p95;
- `finalize_steps`: each finalize step's seconds (from the daemon's log), and
  `snapshot`: each snapshot's seconds and whether it was patched;
- `no_change_run_seconds`: a run with nothing changed (it stats every file);
- `burst`: search latency (keyword and semantic queries in turn, one client)
  while idle and during a burst of `--burst` appends made 20 ms apart (the
  watcher's runs look only at the paths it reported), p95 of each and their ratio;
and `ratio_largest_to_smallest` of the medians of run and keyword seconds.
Then the daemon is stopped and started again over the largest vault
(`startup`): seconds from process start to READY (the control socket
answers `state: running`), to the first full-quality answer (a hybrid search
finds the last created note's sentence, not degraded, no first run under
way), the first snapshot's build, the model load and the start-up run.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, SHARED_DATA, percentiles, running_daemon, work_directory
from jarvisd.cli.client import ControlClient

VAULT = "bench"
KINDS = ("append", "heading", "link", "unlink", "rename", "delete", "create")
POLL_SECONDS = 0.02
GIVE_UP_SECONDS = 30.0  # then counted under `missed`
HEADING = re.compile(r"(#{1,6})\s")
# Sentences of words no source note uses together, distinct per edit (the number), so
# the semantic query (the sentence) is the edit's own; earlier edits' sentences share
# the template and so compete with it (see the module's doc: `semantic_shows`).
ANIMALS = [
    "aardvark",
    "bison",
    "cormorant",
    "dingo",
    "egret",
    "ferret",
    "gecko",
    "heron",
    "ibex",
    "jackal",
]
THINGS = [
    "anvil",
    "barometer",
    "cello",
    "dynamo",
    "easel",
    "flute",
    "gyroscope",
    "harp",
    "inkwell",
    "jukebox",
]
PLACES = [
    "atoll",
    "bayou",
    "canyon",
    "delta",
    "estuary",
    "fjord",
    "geyser",
    "highland",
    "isthmus",
    "jungle",
]
COLOURS = [
    "amber",
    "beige",
    "crimson",
    "denim",
    "emerald",
    "fuchsia",
    "golden",
    "hazel",
    "ivory",
    "jade",
]


def source_notes(source: Path) -> list[tuple[str, str]]:
    return [
        (path.relative_to(source).as_posix(), path.read_text(encoding="utf-8", errors="replace"))
        for path in sorted(source.rglob("*.md"))
        if not any(part.startswith(".") for part in path.relative_to(source).parts)
    ]


def grow(vault: Path, notes: list[tuple[str, str]], size: int) -> int:
    """Copies of the source notes until the vault holds `size` of them (counted on disk)."""
    have = sum(1 for _ in vault.rglob("*.md"))
    index = have
    while index < size:
        copy, position = divmod(index, len(notes))
        path, text = notes[position]
        target = vault / f"c{copy:03d}" / path
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        index += 1
    return sum(1 for _ in vault.rglob("*.md"))


def wait_idle(client: ControlClient, quiet: float = 1.5) -> dict[str, Any]:
    """Until no run is going nor started for `quiet` seconds (the watcher's debounce)."""
    last_id, since = None, time.monotonic()
    while True:
        state = client.get("/v1/index")
        run = state.get("last_run") or {}
        if state["running"] or run.get("id") != last_id:
            last_id, since = run.get("id"), time.monotonic()
        elif time.monotonic() - since >= quiet:
            return state
        time.sleep(0.1)


def index_now(client: ControlClient) -> dict[str, Any]:
    events = list(client.stream("POST", "/v1/index", query={"wait": 1}))
    run: dict[str, Any] = events[-1]["run"]
    return run


def found(client: ControlClient, query: str, mode: str) -> list[str]:
    reply = client.get("/v1/search", q=query, mode=mode, limit=10, threshold=0)
    return [result["path"] for result in reply["results"]]


@dataclass(frozen=True)
class Sentence:
    """An edit's new sentence: the semantic query, the lines that hold it (1-based) and the
    edited file's mtime (what `since` admits from)."""

    text: str
    lines: frozenset[int]
    since: str

    @classmethod
    def written(cls, file: Path, text: str, heading: bool) -> Sentence:
        """`heading`: the sentence heads a section, so every chunk of that section and of its
        subsections holds it (a chunk's embedded text starts with its heading path), not only
        the first: the lines up to the next heading of its level or above."""
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
        holding = {number for number, line in enumerate(lines, 1) if text in line}
        if heading and holding:
            start = min(holding)
            level = _heading_level(lines[start - 1]) or 1
            end = next(
                (
                    number
                    for number in range(start + 1, len(lines) + 1)
                    if 0 < _heading_level(lines[number - 1]) <= level
                ),
                len(lines) + 1,
            )
            holding |= set(range(start, end))
        # Microseconds, floored: the ISO form the API parses holds no more.
        moment = datetime.fromtimestamp(file.stat().st_mtime_ns // 1000 / 1e6 - 1e-6, UTC)
        return cls(text, frozenset(holding), moment.isoformat())


def _heading_level(line: str) -> int:
    """The level of a markdown heading line (`## x`: 2); 0 for any other line."""
    match = HEADING.match(line)
    return len(match.group(1)) if match else 0


def semantic_shows(client: ControlClient, sentence: Sentence, path: str) -> bool:
    """The note's best chunk for the sentence, among the notes modified since the edit, is the
    chunk that holds it: its new vector is in the snapshot."""
    reply = client.get(
        "/v1/search", q=sentence.text, mode="semantic", limit=10, threshold=0, since=sentence.since
    )
    for result in reply["results"]:
        if result["path"] == path:
            first, last = result["lines"]
            return any(first <= line <= last for line in sentence.lines)
    return False


class Editor:
    """Makes each kind of edit on disk; says what a search should show afterwards."""

    def __init__(self, vault: Path, seed: int) -> None:
        self.vault = vault
        self.rng = random.Random(seed)
        self.counter = 0
        self.linked: list[tuple[str, str]] = []  # (path, word) of links added
        self.appended: list[tuple[str, str]] = []  # (path, word) still in the vault
        self.created: list[tuple[str, str]] = []  # (path, sentence) of notes created

    def word(self) -> str:
        self.counter += 1
        return f"zq{self.rng.randrange(16**6):06x}x{self.counter}"

    def sentence(self) -> str:
        animal, thing = self.rng.choice(ANIMALS), self.rng.choice(THINGS)
        place, colour = self.rng.choice(PLACES), self.rng.choice(COLOURS)
        return f"A {colour} {animal} carried a {thing} across the {place} number {self.counter}."

    def pick(self) -> str:
        paths = sorted(path.relative_to(self.vault).as_posix() for path in self.vault.rglob("*.md"))
        return self.rng.choice(paths)

    def edit(self, kind: str) -> tuple[str, str, str | None, bool]:
        """(keyword query, path, semantic query or None, present) after doing `kind`."""
        word, sentence = self.word(), self.sentence()
        if kind == "delete" and self.appended:
            path, old = self.appended.pop(0)
            (self.vault / path).unlink()
            return old, path, None, False
        if kind == "rename":
            path = self.pick()
            new = str(Path(path).with_name(f"{word}.md"))
            (self.vault / path).rename(self.vault / new)
            self.appended = [(new if p == path else p, w) for p, w in self.appended]
            return word, new, None, True
        if kind == "create":
            path = f"new/{word} note.md"
            (self.vault / "new").mkdir(exist_ok=True)
            (self.vault / path).write_text(f"# {word}\n\n{sentence}\n", encoding="utf-8")
            self.created.append((path, sentence))
            return word, path, sentence, True
        path = self.pick()
        file = self.vault / path
        text = file.read_text(encoding="utf-8", errors="replace")
        if kind == "heading":
            lines = text.splitlines()
            spot = next((i for i, line in enumerate(lines) if line.startswith("#")), None)
            # Headings are not BM25 text (title and chunk text are), so the new
            # section's first line carries the word too.
            heading = [f"## {word} {sentence}", "", f"{word} {sentence}"]
            lines = (
                [*lines[:spot], *heading, *lines[spot + 1 :]]
                if spot is not None
                else [*heading, *lines]
            )
            text = "\n".join(lines) + "\n"
        elif kind == "link":
            text += f"\n\nSee [[{word}]]. {sentence}\n"
            self.linked.append((path, word))
        elif kind == "unlink" and self.linked:
            linked_path, linked_word = self.linked.pop(0)
            if (self.vault / linked_path).exists():
                path, file = linked_path, self.vault / linked_path
                text = file.read_text(encoding="utf-8", errors="replace")
                text = text.replace(f"[[{linked_word}]]", linked_word)
            text += f"\n{word} {sentence}\n"
        else:  # append (and unlink with nothing linked yet)
            text += f"\n{word} {sentence}\n"
            self.appended.append((path, word))
        file.write_text(text, encoding="utf-8")
        return word, path, sentence, True


def poll(
    client: ControlClient,
    path: str,
    keyword: tuple[str, bool],
    sentence: Sentence | None,
    started: float,
) -> dict[str, float]:
    """Seconds from `started` until the keyword query finds `path` (or stops finding it) and
    the semantic one shows the new sentence (`semantic_shows`).

    The semantic query is asked only once the keyword one has found the edit: one snapshot
    carries both (the patch brings a note's postings and vectors together), so it cannot show
    earlier, and asking it every 20 ms meanwhile only loaded the daemon under test with exact
    scans of every vector (at 10,000 notes, 106k chunks, most of its CPU while an edit was
    being indexed)."""
    took: dict[str, float] = {}
    wanted = 1 if sentence is None else 2
    query, present = keyword
    while len(took) < wanted and time.monotonic() - started < GIVE_UP_SECONDS:
        if "keyword" not in took and (path in found(client, query, "keyword")) == present:
            took["keyword"] = time.monotonic() - started
        if (
            sentence is not None
            and "keyword" in took
            and "semantic" not in took
            and semantic_shows(client, sentence, path)
        ):
            took["semantic"] = time.monotonic() - started
        time.sleep(POLL_SECONDS)
    return took


def log_events(log: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    with log.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    events = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events, offset + len(data)


def measure_size(client: ControlClient, editor: Editor, log: Path, edits: int) -> dict[str, Any]:
    keyword: list[float] = []
    semantic: list[float] = []
    runs: list[float] = []
    steps: dict[str, list[float]] = {}
    snapshots: list[dict[str, Any]] = []
    missed: list[str] = []
    top10 = 0
    _, offset = log_events(log, 0)
    for number in range(edits):
        kind = KINDS[number % len(KINDS)]
        before = (client.get("/v1/index").get("last_run") or {}).get("id")
        started = time.monotonic()
        query, path, text, present = editor.edit(kind)
        file = editor.vault / path
        sentence = None if text is None else Sentence.written(file, text, kind == "heading")
        took = poll(client, path, (query, present), sentence, started)
        modes = ["keyword"] if sentence is None else ["keyword", "semantic"]
        for mode in modes:
            seconds = took.get(mode)
            if seconds is None:
                missed.append(f"{mode} {kind} {path}")
            else:
                (keyword if mode == "keyword" else semantic).append(seconds)
        if sentence is not None and "semantic" in took:
            top10 += path in found(client, sentence.text, "semantic")
        state = wait_idle(client, quiet=1.0)
        run = state.get("last_run") or {}
        if run.get("id") != before:
            runs.append(float(run.get("duration_seconds", 0.0)))
        events, offset = log_events(log, offset)
        for event in events:
            if event.get("event") == "index.finalize_step":
                steps.setdefault(str(event["step"]), []).append(float(event["seconds"]))
            elif event.get("event") == "search.snapshot_built":
                snapshots.append(
                    {
                        "seconds": event.get("build_seconds"),
                        "patched_notes": event.get("patched_notes"),
                    }
                )
    patched = [item for item in snapshots if item.get("patched_notes")]
    return {
        "keyword_seconds": percentiles(keyword),
        "semantic_seconds": percentiles(semantic),
        "run_seconds": percentiles(runs),
        "finalize_steps": {name: percentiles(values) for name, values in steps.items()},
        "snapshot": {
            "built": len(snapshots),
            "patched": len(patched),
            "seconds": percentiles([float(item["seconds"] or 0) for item in snapshots]),
        },
        "semantic_top10": {"found": len(semantic), "in_top10": top10},
        "missed": missed,
    }


QUERIES = [("keyword", "canvas plugin"), ("semantic", "how do I sync my notes between devices")]


def timed_search(client: ControlClient, number: int) -> float:
    mode, query = QUERIES[number % len(QUERIES)]
    started = time.monotonic()
    client.get("/v1/search", q=query, mode=mode, limit=10, threshold=0)
    return time.monotonic() - started


def burst(client: ControlClient, editor: Editor, edits: int) -> dict[str, Any]:
    """Search p95 while idle, then during `edits` appends 20 ms apart (and their runs)."""
    wait_idle(client, quiet=1.0)
    idle = [timed_search(client, number) for number in range(40)]
    done = threading.Event()

    def edit_all() -> None:
        for _ in range(edits):
            editor.edit("append")
            time.sleep(0.02)
        done.set()

    writer = threading.Thread(target=edit_all, daemon=True)
    started = time.monotonic()
    writer.start()
    during: list[float] = []
    number = 0
    finished_at: float | None = None  # the edits' end, then until a run begun after it ends
    while True:
        during.append(timed_search(client, number))
        number += 1
        if finished_at is None and done.is_set():
            finished_at = time.time()
        if finished_at is not None:
            state = client.get("/v1/index")
            run = state.get("last_run") or {}
            if not state["running"] and run.get("started_at", 0) > finished_at:
                break
            if time.time() - finished_at > GIVE_UP_SECONDS:
                break
    writer.join()
    settled = time.monotonic() - started
    wait_idle(client, quiet=1.0)
    idle_p95, burst_p95 = percentiles(idle)["p95"], percentiles(during)["p95"]
    return {
        "edits": edits,
        "idle_seconds": percentiles(idle),
        "during_seconds": percentiles(during),
        "p95_ratio": round(burst_p95 / idle_p95, 3) if idle_p95 else None,
        "burst_to_settled_seconds": round(settled, 2),
    }


def startup(config: dict[str, Any], root: Path, sentence: str | None) -> dict[str, Any]:
    """A restart over the indexed vault: process start to READY to a full-quality answer."""
    log_path = root / "daemon.log"  # running_daemon starts it afresh
    started = time.monotonic()
    out: dict[str, Any] = {}
    with running_daemon(config, ready_timeout=3600, root=root) as (client, _process, _):
        out["socket_seconds"] = round(time.monotonic() - started, 3)
        while client.get("/v1/status").get("state") != "running":
            time.sleep(0.01)
        out["ready_seconds"] = round(time.monotonic() - started, 3)
        query = sentence or QUERIES[1][1]
        while True:
            reply = client.get("/v1/search", q=query, mode="hybrid", limit=10, threshold=0)
            if not reply["degraded"] and reply.get("indexing") is None and reply["results"]:
                break
            time.sleep(0.02)
        out["full_answer_seconds"] = round(time.monotonic() - started, 3)
        wait_idle(client, quiet=1.0)
    events, _ = log_events(log_path, 0)
    for event in events:
        name = event.get("event")
        if name == "search.snapshot_built" and "snapshot_build_seconds" not in out:
            out["snapshot_build_seconds"] = event.get("build_seconds")
            out["snapshot"] = {key: event.get(key) for key in ("chunks", "patched_notes")}
        elif name == "embedding.loaded" and "model_load_seconds" not in out:
            out["model_load_seconds"] = event.get("seconds")
        elif name == "index.finished" and "start_run_seconds" not in out:
            out["start_run_seconds"] = event.get("duration_seconds")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,2000,10000,14000")
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--debounce", default="500ms")
    parser.add_argument("--source", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--burst", type=int, default=100, help="edits in the burst; 0: none")
    parser.add_argument("--no-startup", action="store_true", help="skip the restart timings")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size]
    source = args.source
    if source is None:
        help_vault = SHARED_DATA / "obsidian-help"
        source = help_vault if help_vault.is_dir() else REPO / "jarvisd" / "example_vault"
    notes = source_notes(source)
    results: dict[str, Any] = {"source": str(source), "debounce": args.debounce, "sizes": {}}
    with work_directory(args.workdir, "jfresh-") as work:
        vault = work / "vault"
        if vault.exists() and args.workdir is None:
            shutil.rmtree(vault)
        vault.mkdir(parents=True, exist_ok=True)
        grow(vault, notes, sizes[0])
        config = {
            "vaults": [{"name": VAULT, "path": str(vault)}],
            "indexing": {"on_start": True, "watch": True, "debounce": args.debounce},
            "embedding": {"preload": True},
            "search": {"cache": {"size": 0}},
            # The burst's searches come back to back: the client limit (429) would cut it.
            "control": {"rate_limit": 0},
            "schedule": {"index": None, "maintenance": None},
            "logging": {"format": "json", "level": "info"},
        }
        root = work / "daemon"
        root.mkdir(exist_ok=True)
        editor = Editor(vault, args.seed)
        with running_daemon(config, ready_timeout=3600, root=root) as (client, _process, _):
            for size in sizes:
                started = time.monotonic()
                on_disk = grow(vault, notes, size)
                wait_idle(client)
                index_now(client)
                indexing_seconds = time.monotonic() - started
                no_change = index_now(client)
                stats = client.get("/v1/index")["index"]
                # Steady state: the preloaded model and the first snapshot are ready
                # (a hybrid search waits for both); start-up is measured on its own.
                client.get("/v1/search", q=QUERIES[1][1], mode="hybrid", limit=1)
                measured = measure_size(client, editor, root / "daemon.log", args.edits)
                if args.burst:
                    measured["burst"] = burst(client, editor, args.burst)
                results["sizes"][str(size)] = {
                    "notes_on_disk": on_disk,
                    "notes": stats.get("notes"),
                    "chunks": stats.get("chunks"),
                    "growth_indexing_seconds": round(indexing_seconds, 2),
                    "no_change_run_seconds": no_change.get("duration_seconds"),
                    **measured,
                }
                print(json.dumps({"size": size, **results["sizes"][str(size)]}), flush=True)
        if not args.no_startup:
            created = [path for path in editor.created if (vault / path[0]).exists()]
            results["startup"] = startup(config, root, created[-1][1] if created else None)
            results["startup"]["notes"] = results["sizes"][str(sizes[-1])]["notes"]
            print(json.dumps({"startup": results["startup"]}), flush=True)
    first, last = results["sizes"][str(sizes[0])], results["sizes"][str(sizes[-1])]
    ratios = {}
    for key in ("run_seconds", "keyword_seconds", "semantic_seconds"):
        small, large = first[key].get("p50"), last[key].get("p50")
        if small and large:
            ratios[key] = round(large / small, 3)
    results["ratio_largest_to_smallest"] = ratios
    results["medians_ms"] = {
        size: {
            key: round(1000 * value[key]["p50"], 1)
            for key in ("keyword_seconds", "semantic_seconds", "run_seconds")
            if value[key].get("p50") is not None
        }
        for size, value in results["sizes"].items()
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
