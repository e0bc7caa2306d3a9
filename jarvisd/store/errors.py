"""What can go wrong with the database, as errors a user can act on.

Every message says what was wrong, where (the database file, the vault and
path), and what to do about it.
"""

from __future__ import annotations


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
