"""A database that cannot be used is kept aside and replaced by a fresh one.

The index is derived from the vault, so no storage failure may keep jarvisd
down for good (issue #9). Found by fault injection on DuckDB 1.5.5:

- a WAL that does not replay, garbage or an empty file, a file truncated to
  half: opening (or the first read of `meta`) raises a duckdb error;
- 64 KiB of random bytes in the middle of a clean file: opening works, and the
  first read of a damaged block raises "Corrupt database file: computed
  checksum ... does not match" (an IOException) while serving.

Either way the files are renamed with the UTC time (never deleted: they are
the evidence, and a person may want them), a fresh database opens in their
place, and the catch-up index run rebuilds it from the vault.

Errors that a fresh file would not cure are left alone and still stop
jarvisd with their own message: another process holding DuckDB's lock, a
permission problem, a full disk, memory, a missing extension, a schema from
a newer jarvisd.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from jarvisd.store.errors import EmbeddingMismatchError, ExtensionMissingError, SchemaTooNewError

# Messages of errors that are not damage to the file: a fresh database would fail
# the same way, or would hide a problem the user must fix (another DuckDB client).
_NOT_DAMAGE = (
    "could not set lock",
    "conflicting lock",
    "permission denied",
    "no space left",
    "read-only file system",
    "out of memory",
)
# Errors while serving that mean the file itself is damaged.
_DAMAGE_WHILE_SERVING = ("checksum", "corrupt database", "could not read enough bytes")


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a recovery did: why, which files it kept (renamed), and when."""

    reason: str
    kept: tuple[Path, ...]
    at: float
    phase: str  # "open" (at start-up), "serving", or "requested" (--rebuild-index)

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "kept": [str(path) for path in self.kept],
            "at": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds"),
            "phase": self.phase,
        }


def chain(error: BaseException) -> list[BaseException]:
    """The error and its causes and contexts, outermost first."""
    out: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in out:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def is_damage(error: BaseException) -> bool:
    """True when opening failed because of the file's content, not the environment."""
    links = chain(error)
    if any(
        isinstance(item, (ExtensionMissingError, SchemaTooNewError, EmbeddingMismatchError))
        for item in links
    ):
        return False
    if not any(isinstance(item, duckdb.Error) for item in links):
        return False
    if any(isinstance(item, duckdb.OutOfMemoryException) for item in links):
        return False
    text = " ".join(str(item) for item in links).lower()
    return not any(marker in text for marker in _NOT_DAMAGE)


def is_damage_while_serving(error: BaseException) -> bool:
    """True for a read or write error that says the database file is damaged."""
    links = chain(error)
    if not any(isinstance(item, duckdb.Error) for item in links):
        return False
    text = " ".join(str(item) for item in links).lower()
    return any(marker in text for marker in _DAMAGE_WHILE_SERVING) and not any(
        marker in text for marker in _NOT_DAMAGE
    )


def is_invalidation(error: BaseException) -> bool:
    """DuckDB's fatal errors, after which the instance refuses every query until reopened."""
    links = chain(error)
    return any(isinstance(item, duckdb.FatalException) for item in links) or any(
        "database has been invalidated" in str(item) for item in links
    )


def damage_text(text: str) -> bool:
    """The same test on an error already turned into text (an index run's report)."""
    lowered = text.lower()
    return any(marker in lowered for marker in ("checksum", "corrupt database")) and not any(
        marker in lowered for marker in _NOT_DAMAGE
    )


def first_line(error: BaseException) -> str:
    """The error's message without DuckDB's stack trace (internal errors carry one)."""
    text = str(error).strip()
    return text.split("\n", 1)[0][:500] if text else type(error).__name__


def database_files(path: Path) -> list[Path]:
    """The database and its WAL, those that exist."""
    return [file for file in (path, path.with_name(path.name + ".wal")) if file.exists()]


def set_aside(path: Path, now: float | None = None) -> tuple[Path, ...]:
    """Rename the database and its WAL to `<name>.broken-<UTC time>`; the new names.

    Never deletes: a name already taken (two recoveries in one second) gets a
    counter. The renames are in the same folder, so they are atomic and cost
    no copy whatever the file's size.
    """
    when = time.time() if now is None else now
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y%m%dT%H%M%SZ")
    kept: list[Path] = []
    for file in database_files(path):
        target = file.with_name(f"{file.name}.broken-{stamp}")
        counter = 1
        while target.exists():
            counter += 1
            target = file.with_name(f"{file.name}.broken-{stamp}-{counter}")
        os.replace(file, target)
        kept.append(target)
    return tuple(kept)
