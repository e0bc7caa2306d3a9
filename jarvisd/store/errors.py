"""What can go wrong with the database, as errors a user can act on.

Every message says what was wrong, where (the database file, the vault and
path), and what to do about it.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from jarvisd.errors import DomainError


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class ExtensionMissingError(StoreError):
    """A DuckDB extension file is not installed where its wheel puts it."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer jarvisd than this one."""


class EmbeddingMismatchError(StoreError):
    """The stored vectors come from another model or have another dimension."""


class StoreClosedError(StoreError):
    """The store was used after `close()`."""


class NoteWriteError(StoreError):
    """A note could not be written; the previous version of it is intact."""


class VectorTableGoneError(StoreError):
    """The HNSW vector table a search named was replaced and dropped since it looked
    (an older snapshot's): the caller answers exactly instead."""


class StorageFullError(StoreError, DomainError):
    """The device holding the database is full; what was written before is intact."""

    code = "storage_full"


class StorageReadOnlyError(StoreError, DomainError):
    """The database's folder or file system is read-only; what was written before is intact."""

    code = "storage_read_only"


def _read_only(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno == errno.EROFS
    return isinstance(error, duckdb.Error) and "read-only file system" in str(error).lower()


def _no_space(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    # DuckDB reports a failed write as text only (IOException, TransactionException).
    return isinstance(error, duckdb.Error) and "No space left on device" in str(error)


@contextmanager
def naming_a_full_disk(path: Path, doing: str) -> Iterator[None]:
    """Turn "no space left" from DuckDB or the OS into a StorageFullError that says so.

    DuckDB survives it (measured with 1.5.5 on a full tmpfs: the failed commit is
    rolled back, reads and later writes work once space returns), so it is a
    condition to report, not a broken database.
    """
    try:
        yield
    except (duckdb.Error, OSError) as error:
        if _read_only(error):
            # A database folder remounted read-only (found by the storage fault test:
            # the run failed with DuckDB's bare IO error, naming no remedy).
            raise StorageReadOnlyError(
                f"{doing} stopped: the file system holding {path} is read-only; what was "
                "written before is intact. Make it writable (remount it read-write) and run "
                "it again",
                database=str(path),
            ) from error
        if not _no_space(error):
            raise
        try:
            free = f"{shutil.disk_usage(path.parent).free // 1024} KiB free"
        except OSError:
            free = "free space unknown"
        raise StorageFullError(
            f"{doing} stopped: no space left on the device holding {path} ({free}); "
            "what was written before is intact. Free some space and run it again",
            database=str(path),
        ) from error
