"""Opening DuckDB: settings, and the fts/vss extensions from their wheels, never the network.

Findings that shaped this module (DuckDB 1.5.5):

- Extensions belong to the database instance, not to a connection: after
  `LOAD` on the first connection, every `connection.cursor()` (another
  connection to the same instance) can use FTS macros and insert into a table
  with an HNSW index without loading anything again. A second
  `duckdb.connect()` of the same file in this process shares the instance too.
- `SET x = y` is per connection (session); cursors do not see it. Settings that
  readers need (`hnsw_ef_search`, HNSW persistence) are set with `SET GLOBAL`.
- Touching an HNSW-indexed table before `LOAD vss` fails, and a later `LOAD`
  plus insert on that same connection was seen to spin forever, so the
  extensions load before any other statement runs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import duckdb

from jarvisd.config import StorageConfig
from jarvisd.store.errors import ExtensionMissingError

EXTENSIONS: tuple[tuple[str, str], ...] = (
    ("fts", "duckdb_extension_fts"),
    ("vss", "duckdb_extension_vss"),
)


def extension_path(name: str, package: str) -> Path:
    """The extension file shipped in `package`'s wheel for the running DuckDB version."""
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise ExtensionMissingError(
            f"the DuckDB {name} extension is not installed: install the Python package "
            f"`{package.replace('_', '-')}=={duckdb.__version__}` (jarvisd never downloads "
            "extensions at run time)"
        ) from error
    path = (
        Path(str(module.__file__)).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / f"{name}.duckdb_extension"
    )
    if not path.is_file():
        raise ExtensionMissingError(
            f"the DuckDB {name} extension for DuckDB {duckdb.__version__} is missing "
            f"(looked for {path}): install `{package.replace('_', '-')}=={duckdb.__version__}`, "
            "the version that matches the installed duckdb"
        )
    return path


def open_database(path: Path, config: StorageConfig) -> duckdb.DuckDBPyConnection:
    """A connection to the database file with both extensions loaded and settings applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    settings: dict[str, str | bool | int | float | list[str]] = {
        # Never fetch or silently load anything: both come from local wheels below.
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    connection = duckdb.connect(str(path), config=settings)
    try:
        for name, package in EXTENSIONS:
            connection.execute(f"LOAD '{_quote(str(extension_path(name, package)))}'")
        # Without this DuckDB refuses to create an HNSW index in a file database.
        connection.execute("SET GLOBAL hnsw_enable_experimental_persistence = true")
        apply_settings(connection, path, config)
    except BaseException:
        connection.close()
        raise
    return connection


def apply_settings(
    connection: duckdb.DuckDBPyConnection, path: Path, config: StorageConfig
) -> None:
    """threads, memory_limit and temp_directory; all of them can change while open."""
    temp_directory = config.temp_directory or path.with_name(path.name + ".tmp")
    connection.execute(f"SET GLOBAL threads = {int(config.threads)}")
    connection.execute(f"SET GLOBAL memory_limit = '{int(config.memory_limit)}B'")
    connection.execute(f"SET GLOBAL temp_directory = '{_quote(str(temp_directory))}'")
    connection.execute(f"SET GLOBAL hnsw_ef_search = {int(config.hnsw.ef_search)}")


def _quote(text: str) -> str:
    """A value for a single-quoted SQL literal (SET and LOAD take no parameters)."""
    return text.replace("'", "''")


def first_row(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """The first row of a result, with the result consumed.

    `fetchone()` leaves the result open, and with it the cursor's transaction,
    until that thread's next statement: an idle search thread would then block
    every CHECKPOINT (maintenance, shutdown) after a large write.
    """
    rows = result.fetchall()
    return tuple(rows[0]) if rows else None
