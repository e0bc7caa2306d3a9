"""boltkit's stub Bolt server as a test helper: play a script, check it was played out.

The scripts live in tests/bolt/; `{{NAME}}` in a script is replaced by the
JSON form of a value the test passes (the backend's own query constants), so
a script never drifts from the Cypher it checks. The stub runs in the
separate boltkit venv that `make test` builds; without it these tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "bolt"
MISSING = (
    "boltkit's boltstub is not installed: run `make boltkit` (it builds .venv-boltkit), "
    "or point JARVIS_BOLTSTUB at a boltstub executable"
)


def boltstub() -> Path | None:
    """The boltstub executable: $JARVIS_BOLTSTUB, .venv-boltkit, or on PATH."""
    for candidate in (
        os.environ.get("JARVIS_BOLTSTUB"),
        str(REPO / ".venv-boltkit" / "bin" / "boltstub"),
        shutil.which("boltstub"),
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


requires_boltstub = pytest.mark.skipif(boltstub() is None, reason=MISSING)


def render(name: str, values: dict[str, Any], into: Path) -> Path:
    text = (SCRIPTS / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", json.dumps(value))
    assert "{{" not in text, f"{name}: a placeholder has no value"
    target = into / name
    target.write_text(text, encoding="utf-8")
    return target


class BoltStub:
    """One stub server on a free port of 127.0.0.1, playing one rendered script."""

    def __init__(
        self,
        name: str,
        values: dict[str, Any],
        tmp: Path,
        text: str | None = None,
        idle: float = 30.0,
    ) -> None:
        """Play tests/bolt/NAME rendered with `values`, or `text` (a script made here);
        the stub gives up after `idle` seconds with no message."""
        executable = boltstub()
        if executable is None:
            pytest.skip(MISSING)
        if text is None:
            script = render(name, values, tmp)
        else:
            script = tmp / name
            script.write_text(text, encoding="utf-8")
        self.log_path = tmp / f"{name}.log"
        self._log = self.log_path.open("wb")
        # The venv's Python runs our join-instead-of-spin wrapper around boltkit's server.
        python = executable.parent / "python"
        self.process = subprocess.Popen(
            [str(python), str(SCRIPTS / "stub.py"), str(script), str(idle)],
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        assert line.startswith("ready "), f"boltstub did not start: {line!r}\n{self.log()}"
        self.port = int(line.split()[1])
        self.uri = f"bolt://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for the stub to end (the client's GOODBYE); its exit status."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -1
        finally:
            self._log.close()

    def __enter__(self) -> BoltStub:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


# ------------------------------------------------------------ a whole sync, scripted

Stored = dict[str, dict[str, str | None]]  # vault -> path -> the fingerprint it holds


@dataclass(frozen=True)
class Transaction:
    """One transaction of a sync, as the stub plays it."""

    mode: str  # "w" or "r"
    query: str
    parameters: dict[str, Any]
    fields: tuple[str, ...] = ()
    records: tuple[tuple[Any, ...], ...] = ()


def sync_transactions(projections: Sequence[Any], stored: Stored) -> list[Transaction]:
    """What `Neo4jGraph.sync(projections)` sends to a server holding `stored`, in the
    order of `neo4j._sync`: schema, other vaults, then per vault its fingerprints and
    the batches of deletes, upserts and link replacements."""
    from jarvisd.graph import neo4j_queries as queries
    from jarvisd.graph.neo4j import BATCH, _changes, _links_row, _node_row

    vaults = [projection.vault for projection in projections]
    out = [Transaction("w", statement, {"vaults": []}) for statement in queries.SCHEMA]
    out.append(
        Transaction("w", queries.DELETE_OTHER_VAULTS, {"vaults": vaults}, ("count(*)",), ((0,),))
    )
    for projection in projections:
        held = stored.get(projection.vault, {})
        rows = tuple((path, fingerprint) for path, fingerprint in held.items())
        parameters = {"vault": projection.vault}
        out.append(
            Transaction("r", queries.FINGERPRINTS, parameters, ("path", "fingerprint"), rows)
        )
        changed, gone = _changes(projection, held)
        for query, items, field in (
            (queries.DELETE_NOTES, gone, "count(*)"),
            (queries.UPSERT_NOTES, [_node_row(note) for note in changed], "count(n)"),
            (queries.REPLACE_LINKS, [_links_row(note) for note in changed], "count(n)"),
        ):
            for start in range(0, len(items), BATCH):
                batch = items[start : start + BATCH]
                values = {"vault": projection.vault, "rows": batch}
                out.append(Transaction("w", query, values, (field,), ((len(batch),),)))
    out.append(
        Transaction(
            "w", queries.DELETE_UNUSED_UNRESOLVED, {"vaults": vaults}, ("count(*)",), ((0,),)
        )
    )
    return out


def sync_script(transactions: Sequence[Transaction], stall_at: int | None = None) -> str:
    """A stub script of these transactions in one session; with `stall_at`, the server
    takes that transaction's query and never answers it (a sync caught in the middle)."""
    lines = ["!: BOLT 3", "!: AUTO HELLO", "!: AUTO RESET", "!: AUTO GOODBYE", ""]
    bookmark = ""
    for number, transaction in enumerate(transactions):
        begin: dict[str, Any] = {"mode": "r"} if transaction.mode == "r" else {}
        if bookmark:
            begin["bookmarks"] = [bookmark]
        query, parameters = json.dumps(transaction.query), json.dumps(transaction.parameters)
        lines += [f"C: BEGIN {json.dumps(begin)}", "S: SUCCESS {}"]
        lines += [f"C: RUN {query} {parameters} {{}}", "   PULL_ALL"]
        if number == stall_at:
            break
        lines.append(f"S: SUCCESS {json.dumps({'fields': list(transaction.fields)})}")
        lines += [f"   RECORD {json.dumps(list(record))}" for record in transaction.records]
        bookmark = f"b{number + 1}"
        lines += [f"   SUCCESS {json.dumps({'type': transaction.mode})}", "C: COMMIT"]
        lines.append(f"S: SUCCESS {json.dumps({'bookmark': bookmark})}")
    return "\n".join(lines) + "\n"


def played(transactions: Sequence[Transaction], stored: Stored, upto: int) -> Stored:
    """What the server holds once the first `upto` of these transactions committed."""
    from jarvisd.graph import neo4j_queries as queries

    state = {vault: dict(paths) for vault, paths in stored.items()}
    for transaction in transactions[:upto]:
        held = state.setdefault(str(transaction.parameters.get("vault")), {})
        for row in transaction.parameters.get("rows", ()):
            if transaction.query == queries.DELETE_NOTES:
                held.pop(row, None)
            elif transaction.query == queries.UPSERT_NOTES:
                held.setdefault(row["path"], None)
            elif transaction.query == queries.REPLACE_LINKS:
                held[row["path"]] = row["fingerprint"]
    return state
