"""The optional graph backend: a Neo4j server holding a projection of the store's links.

DuckDB stays the source of truth; `GraphSync` pushes notes and links here
after index runs, so losing the server loses nothing but the answers while
it is gone. The model:

    (:Note {vault, path, title, fingerprint})
    (:Note)-[:LINKS_TO {ordinal, target, kind, line, heading, alias}]->(:Note)
    (:Note)-[:UNRESOLVED {ordinal, target, kind, line, heading, alias}]->(:Unresolved {vault, key})

Every query is a constant; request values travel only as parameters. Cypher
takes no parameter for a variable-length bound, so there is one prepared
text per (direction, depth) up to the config model's ceiling, chosen by the
validated values. The driver (official `neo4j`, async) is created lazily on
first use and owns a pool sized by `graph.neo4j`; reads go through
`execute_read`, which retries transient failures for `max_retry_time`.

A server that is down costs that retry time on every request (16.8 s to a 503
measured with the defaults), so once a request found it unreachable the next
ones answer 503 at once for `retry_after`, saying when the next try happens;
then one request tries (the others still answer at once), and each failed
try doubles the wait up to MAX_RETRY_AFTER. A success ends it.

The driver reads without a deadline unless the server sends one (its
`connection.recv_timeout_seconds` hint), so a server that keeps the
connection open and never answers held a sync for ever (seen in the
reliability benchmark: over 600 s with neither `graph.synced` nor
`graph.sync_failed`, and no later sync, since one was still running). Every
transaction is therefore awaited for at most `graph.neo4j.query_timeout`;
cancelling it makes the driver drop the connection, and the server counts as
unreachable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from jarvisd.config import GraphConfig, Neo4jConfig
from jarvisd.graph.neo4j_queries import (
    BACKLINKS,
    DELETE_NOTES,
    DELETE_OTHER_VAULTS,
    DELETE_UNUSED_UNRESOLVED,
    FINGERPRINTS,
    NEIGHBOUR_EDGES,
    NEIGHBOURS,
    NOTES,
    ORPHANS,
    OUTGOING,
    PATHS,
    REPLACE_LINKS,
    SCHEMA,
    UNRESOLVED,
    UPSERT_NOTES,
)
from jarvisd.graph.results import (
    Direction,
    GraphBackendError,
    GraphError,
    GraphLink,
    GraphUnavailable,
    LinkList,
    Neighbour,
    Neighbourhood,
    NoteNotFound,
    NotePath,
    NoteRef,
    Orphans,
    SyncReport,
    UnresolvedReport,
    UnresolvedTarget,
    check_depth,
)
from jarvisd.graph.sync import ProjectedNote, Projection
from jarvisd.logs import get_logger

T = TypeVar("T")
log = get_logger("jarvisd.graph.neo4j")

BATCH = 1000  # notes per write transaction of a sync
MAX_RETRY_AFTER = 120.0
Work = Callable[..., Awaitable[Any]]


class Neo4jGraph:
    """GraphStore on a Neo4j server, through the official async driver."""

    backend = "neo4j"
    needs_sync = True

    def __init__(self, config: GraphConfig) -> None:
        self._config = config
        self._driver: Any = None
        self._driver_config: Neo4jConfig | None = None
        self._clock: Callable[[], float] = time.monotonic
        self._failures = 0  # consecutive tries that found the server unreachable
        self._next_try = 0.0  # clock time before which requests do not try
        self._trying = False
        self._last_error = ""

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Nothing to connect yet: the daemon serves even while the server is down."""
        log.info("graph.neo4j", uri=self._config.neo4j.uri, database=self._database)

    async def close(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            await driver.close()

    def configure(self, config: GraphConfig) -> None:
        """max_depth now; new connection settings on the next query (a new driver)."""
        self._config = config

    def describe(self) -> dict[str, Any]:
        settings = self._config.neo4j
        return {
            "backend": self.backend,
            "max_depth": self._config.max_depth,
            "uri": settings.uri,
            "database": self._database,
        }

    @property
    def _database(self) -> str | None:
        # Empty means the server's default database (Neo4j 3.5 has no names at all).
        return self._config.neo4j.database or None

    @property
    def _server(self) -> str:
        return f"the Neo4j server at {self._config.neo4j.uri}"

    async def _get_driver(self) -> Any:
        settings = self._config.neo4j
        if self._driver is not None and self._driver_config == settings:
            return self._driver
        import neo4j  # lazy: only this backend needs the driver

        await self.close()
        self._driver = neo4j.AsyncGraphDatabase.driver(
            settings.uri,
            auth=_auth(settings),
            max_connection_pool_size=settings.max_connection_pool_size,
            connection_acquisition_timeout=settings.connection_acquisition_timeout,
            connection_timeout=settings.connection_timeout,
            max_transaction_retry_time=settings.max_retry_time,
            user_agent="jarvisd",
        )
        self._driver_config = settings
        return self._driver

    # ------------------------------------------------------------ transactions

    async def _read(self, work: Work, *args: Any) -> Any:
        return await self._in_session("read", lambda session: session.execute_read(work, *args))

    async def _in_session(self, mode: str, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run `work(session)`; driver and server errors become GraphErrors naming the server."""
        import neo4j

        self._refuse_while_backing_off()
        self._trying = True
        try:
            driver = await self._get_driver()
            access = neo4j.READ_ACCESS if mode == "read" else neo4j.WRITE_ACCESS
            async with driver.session(
                database=self._database, default_access_mode=access
            ) as session:
                result = await work(_Answered(session, self._config.neo4j, self._server))
        except GraphError as error:
            self._failed(error)
            raise
        except Exception as error:
            translated = _translate(error, self._server)
            self._failed(translated)
            raise translated from error
        finally:
            self._trying = False
        if self._failures:
            log.info("graph.neo4j_back", server=self._config.neo4j.uri, failures=self._failures)
        self._failures = 0
        return result

    def _refuse_while_backing_off(self) -> None:
        if not self._failures:
            return
        wait = self._next_try - self._clock()
        if wait <= 0 and not self._trying:
            return  # this request is the next try
        raise GraphUnavailable(
            f"{self._last_error}. Not tried again yet: "
            + (f"the next try is in {wait:.1f}s" if wait > 0 else "a try is in progress"),
            retry_after=round(max(wait, 0.0), 1),
        )

    def _failed(self, error: GraphError) -> None:
        if not isinstance(error, GraphUnavailable):
            return  # the server answered: it is up
        base = self._config.neo4j.retry_after
        if base <= 0:
            return
        self._failures += 1
        wait = min(MAX_RETRY_AFTER, base * 2 ** (self._failures - 1))
        self._next_try = self._clock() + wait
        self._last_error = str(error).rstrip(".")
        log.warning(
            "graph.neo4j_unreachable",
            server=self._config.neo4j.uri,
            failures=self._failures,
            next_try_in=wait,
        )

    # ----------------------------------------------------------------- links

    async def outgoing(self, vault: str, path: str) -> LinkList:
        rows = await self._read(_fetch, OUTGOING, {"vault": vault, "path": path})
        note = _found(rows, vault, path)
        links = tuple(
            GraphLink(
                path,
                row["target"],
                row["target_path"],
                row["target_title"],
                row["kind"],
                int(row["line"]),
                row["heading"],
                row["alias"],
            )
            for row in rows
            if row["target"] is not None
        )
        return LinkList(vault, note, links)

    async def backlinks(self, vault: str, path: str) -> LinkList:
        rows = await self._read(_fetch, BACKLINKS, {"vault": vault, "path": path})
        note = _found(rows, vault, path)
        links = tuple(
            GraphLink(
                row["source"],
                row["target"],
                path,
                note.title,
                row["kind"],
                int(row["line"]),
                row["heading"],
                row["alias"],
            )
            for row in rows
            if row["source"] is not None
        )
        return LinkList(vault, note, links)

    # ----------------------------------------------------------------- walks

    async def neighbours(
        self, vault: str, path: str, depth: int, direction: Direction, limit: int
    ) -> Neighbourhood:
        check_depth(depth, self._config.max_depth)
        rows, edges = await self._read(_neighbourhood, NEIGHBOURS[direction][depth], vault, path)
        note = _found(rows, vault, path)
        distances = {
            row["path"]: (int(row["distance"]), str(row["neighbour_title"]))
            for row in rows
            if row["path"] is not None and row["path"] != path
        }
        found = _with_via(path, distances, edges, direction)
        return Neighbourhood(vault, note, depth, direction, tuple(found[:limit]), len(found), limit)

    async def shortest_path(
        self, vault: str, source: str, target: str, direction: Direction
    ) -> NotePath:
        notes, walk = await self._read(_path, PATHS[direction], vault, source, target)
        start = _named(notes, vault, source)
        end = _named(notes, vault, target)
        found = tuple(NoteRef(str(item[0]), str(item[1])) for item in walk or ())
        return NotePath(vault, start, end, direction, found)

    # ---------------------------------------------------------------- reports

    async def unresolved(self, vault: str) -> UnresolvedReport:
        rows = await self._read(_fetch, UNRESOLVED, {"vault": vault})
        targets = sorted(
            (
                UnresolvedTarget(row["target"], int(row["links"]), tuple(sorted(row["sources"])))
                for row in rows
            ),
            key=lambda item: (-item.count, item.target),
        )
        return UnresolvedReport(vault, tuple(targets))

    async def orphans(self, vault: str) -> Orphans:
        rows = await self._read(_fetch, ORPHANS, {"vault": vault})
        notes = sorted((NoteRef(row["path"], row["title"]) for row in rows), key=_by_path)
        return Orphans(vault, tuple(notes))

    # ------------------------------------------------------------------- sync

    async def sync(self, projections: Sequence[Projection]) -> SyncReport:
        """Make the server hold exactly these vaults' notes and links; batched, idempotent.

        One session, so each transaction sees the ones before it (bookmarks)
        even on a cluster. Notes whose fingerprint (title and links) is
        unchanged are not touched; a note's fingerprint is written last, with
        its links, so a sync cut short is finished by the next one.
        """
        started = time.perf_counter()
        report = await self._in_session("write", lambda session: self._sync(session, projections))
        return SyncReport(
            self.backend,
            notes=report[0],
            links=report[1],
            deleted=report[2],
            seconds=round(time.perf_counter() - started, 4),
            vaults=tuple(projection.vault for projection in projections),
        )

    async def _sync(self, session: Any, projections: Sequence[Projection]) -> tuple[int, int, int]:
        for statement in SCHEMA:
            await session.execute_write(_count, statement, [])
        vaults = [projection.vault for projection in projections]
        deleted = await session.execute_write(_count, DELETE_OTHER_VAULTS, vaults)
        written = links = 0
        for projection in projections:
            stored = await session.execute_read(_fingerprints, projection.vault)
            changed, gone = _changes(projection, stored)
            deleted += await _batches(session, DELETE_NOTES, projection.vault, gone)
            await _batches(session, UPSERT_NOTES, projection.vault, [_node_row(n) for n in changed])
            await _batches(
                session, REPLACE_LINKS, projection.vault, [_links_row(n) for n in changed]
            )
            written += len(changed)
            links += sum(len(note.links) for note in changed)
        await session.execute_write(_count, DELETE_UNUSED_UNRESOLVED, vaults)
        return written, links, int(deleted)


class _Answered:
    """A driver session whose every transaction is answered within query_timeout."""

    def __init__(self, session: Any, settings: Neo4jConfig, server: str) -> None:
        self._session = session
        self._timeout = settings.query_timeout
        self._server = server

    async def execute_read(self, work: Work, *args: Any) -> Any:
        return await self._within(self._session.execute_read(work, *args))

    async def execute_write(self, work: Work, *args: Any) -> Any:
        return await self._within(self._session.execute_write(work, *args))

    async def _within(self, transaction: Awaitable[T]) -> T:
        timer = asyncio.timeout(self._timeout)
        try:
            async with timer:
                return await transaction
        except TimeoutError:
            if not timer.expired():
                raise  # the driver's own, translated by _in_session
            raise GraphUnavailable(
                f"{self._server} did not answer within {self._timeout:g}s "
                "(graph.neo4j.query_timeout), so the connection was dropped; is it stuck or "
                "overloaded?"
            ) from None


async def _batches(session: Any, query: str, vault: str, rows: Sequence[Any]) -> int:
    """`rows` in write transactions of BATCH rows each; the summed counts they return."""
    total = 0
    for start in range(0, len(rows), BATCH):
        total += int(await session.execute_write(_batch, query, vault, rows[start : start + BATCH]))
    return total


# ------------------------------------------------------------ transaction work


async def _fetch(tx: Any, query: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    result = await tx.run(query, parameters)
    rows: list[dict[str, Any]] = await result.data()
    return rows


async def _count(tx: Any, query: str, vaults: list[str]) -> int:
    result = await tx.run(query, {"vaults": vaults})
    record = await result.single()
    return 0 if record is None else int(record[0])


async def _batch(tx: Any, query: str, vault: str, rows: Sequence[Any]) -> int:
    result = await tx.run(query, {"vault": vault, "rows": list(rows)})
    record = await result.single()
    return 0 if record is None else int(record[0])


async def _fingerprints(tx: Any, vault: str) -> dict[str, str | None]:
    rows = await _fetch(tx, FINGERPRINTS, {"vault": vault})
    return {str(row["path"]): row["fingerprint"] for row in rows}


async def _neighbourhood(
    tx: Any, query: str, vault: str, path: str
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    rows = await _fetch(tx, query, {"vault": vault, "path": path})
    paths = [path] + [row["path"] for row in rows if row["path"] not in (None, path)]
    if len(paths) == 1:
        return rows, []
    edges = await _fetch(tx, NEIGHBOUR_EDGES, {"vault": vault, "paths": paths})
    return rows, [(str(edge["source"]), str(edge["target"])) for edge in edges]


async def _path(
    tx: Any, query: str, vault: str, source: str, target: str
) -> tuple[list[dict[str, Any]], list[list[str]] | None]:
    notes = await _fetch(tx, NOTES, {"vault": vault, "paths": [source, target]})
    if len({row["path"] for row in notes}) < len({source, target}):
        return notes, None
    if source == target:
        return notes, [[source, str(notes[0]["title"])]]
    rows = await _fetch(tx, query, {"vault": vault, "source": source, "target": target})
    return notes, rows[0]["notes"] if rows else None


# ----------------------------------------------------------------- helpers


def _auth(settings: Neo4jConfig) -> tuple[str, str] | None:
    """(user, password) from password_file's first line, else password; None: no auth."""
    if settings.password_file is not None:
        try:
            with settings.password_file.open(encoding="utf-8") as file:
                password = file.readline().rstrip("\r\n")
        except OSError as error:
            raise GraphUnavailable(
                f"cannot read graph.neo4j.password_file {settings.password_file}: "
                f"{error.strerror or error}; fix the path or its permissions"
            ) from error
        return (settings.user, password)
    if settings.password is not None:
        return (settings.user, settings.password)
    return None


def _translate(error: Exception, server: str) -> GraphError:
    """The driver's exception as a GraphError that names the server and what to do."""
    from neo4j import exceptions

    if isinstance(error, exceptions.AuthError):
        return GraphUnavailable(
            f"{server} refused the credentials ({error.message}); check graph.neo4j.user "
            "and password_file"
        )
    if isinstance(error, exceptions.Neo4jError):
        return GraphBackendError(f"{server} failed the query: {error.code}: {error.message}")
    if isinstance(error, exceptions.ConfigurationError):
        return GraphBackendError(f"{server} cannot serve this configuration: {error}")
    if isinstance(error, exceptions.DriverError | OSError | TimeoutError):
        return GraphUnavailable(
            f"{server} cannot be reached ({type(error).__name__}: {error}); is it running? "
            "Graph queries answer again once it is back (graph.neo4j.uri)"
        )
    return GraphBackendError(f"{server}: unexpected {type(error).__name__}: {error}")


def _found(rows: list[dict[str, Any]], vault: str, path: str) -> NoteRef:
    if not rows:
        raise NoteNotFound(
            f"no note {path!r} in vault {vault!r} on the Neo4j projection (it is synced "
            "after each index run)"
        )
    return NoteRef(path, str(rows[0]["title"]))


def _named(notes: list[dict[str, Any]], vault: str, path: str) -> NoteRef:
    for row in notes:
        if row["path"] == path:
            return NoteRef(path, str(row["title"]))
    return _found([], vault, path)


def _by_path(note: NoteRef) -> str:
    return note.path


def _with_via(
    start: str,
    distances: dict[str, tuple[int, str]],
    edges: list[tuple[str, str]],
    direction: Direction,
) -> list[Neighbour]:
    """Each note with a neighbour one step nearer (the first by path): the walk's tree."""
    level = {start: 0} | {path: distance for path, (distance, _) in distances.items()}
    nearer: dict[str, list[str]] = {}
    steps: list[tuple[str, str]] = []
    if direction in ("out", "both"):
        steps += edges
    if direction in ("in", "both"):
        steps += [(target, source) for source, target in edges]
    for source, target in steps:
        if target in distances and level.get(source) == distances[target][0] - 1:
            nearer.setdefault(target, []).append(source)
    found = [
        Neighbour(path, title, distance, min(nearer.get(path, [start])))
        for path, (distance, title) in distances.items()
    ]
    found.sort(key=lambda item: (item.distance, item.path))
    return found


def _changes(
    projection: Projection, stored: dict[str, str | None]
) -> tuple[list[ProjectedNote], list[str]]:
    """Notes to (re)write, and paths the server holds that DuckDB no longer has."""
    changed = [note for note in projection.notes if stored.get(note.path) != note.fingerprint]
    present = {note.path for note in projection.notes}
    gone = sorted(path for path in stored if path not in present)
    return changed, gone


def _node_row(note: ProjectedNote) -> dict[str, Any]:
    return {"path": note.path, "title": note.title}


def _links_row(note: ProjectedNote) -> dict[str, Any]:
    return {"path": note.path, "fingerprint": note.fingerprint, "links": list(note.links)}
