"""The office database: one DuckDB file, one connection, one lock.

DuckDB lets a single process open a file read-write, and the office is that
process. Inside it, the UI saves messages from worker threads, so the one
connection is shared and every use of it is guarded by an ``RLock``
(re-entrant, so a transaction can call the small helpers). DuckDB's own
exceptions are mapped to ``app.memory.errors`` here, at the boundary.

Opening is careful not to change a file it will refuse: an existing file is
first inspected through a read-only connection (its length against the
blocks it holds; every table read through, for files up to
``FULL_CHECK_MAX_BYTES``, so DuckDB verifies each block's checksum; its
schema version), and only a sound file this code understands is reopened
read-write and migrated. A damaged file raises
``DatabaseCorruptError`` naming the newest backup, and is never replaced.

Every connection has DuckDB's extension autoloading and autoinstalling
switched off, so nothing is ever fetched: the one extension Soloist uses
(fts) is loaded by path from its wheel (``app.memory.fts``).

``cursor()`` hands out a second connection to the same database with its
own lock and its own transactions, for long statements (rebuilding the
keyword index) that must not hold the office connection's lock. It writes
only to files of its own (``app.memory.service`` attaches one): a backup
holds the office connection's lock to know that nobody commits to the
office file while it copies it.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import duckdb

from app.memory.errors import (
    DatabaseClosedError,
    DatabaseCorruptError,
    DatabaseLockedError,
    DatabaseOpenError,
    QueryError,
    SchemaTooNewError,
)
from app.memory.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    latest_version,
    migrate,
    read_version,
)

if TYPE_CHECKING:  # numpy loads with the first fetchnumpy, not with this module
    import numpy.typing as npt

__all__ = [
    "FULL_CHECK_MAX_BYTES",
    "LATEST_VERSION",
    "MIGRATIONS",
    "Database",
    "DatabaseSummary",
    "from_db_time",
    "inspect_file",
    "to_db_time",
    "utc_now",
]

log = logging.getLogger("soloist.memory")

_LOCK_HOLDER_PID = re.compile(r"\bPID (\d+)\b")
_MAX_DETAIL = 200

FULL_CHECK_MAX_BYTES = 16 * 2**20
"""Files up to this size have every table read through when opened.

Reading costs about 10 ms per MiB on a slow machine, so larger files get
only the cheap checks at open; each backup still reads every block of its
copy (the same bytes), so damage is found at the next backup at the latest.
"""

# What DuckDB says about a damaged file, and what the user is told instead.
_DAMAGE = (
    (
        "not a valid DuckDB database",
        "not a valid DuckDB database (damaged, or another kind of file)",
    ),
    ("Corrupt database file", "a block of the file failed its checksum"),
    ("Could not read enough bytes", "the file is cut short"),
)

Params = Sequence[object]
Row = tuple[Any, ...]

# Set on every connection: no extension is ever downloaded or loaded by name.
_OFFLINE_SETTINGS = (
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
)


@dataclass(frozen=True, slots=True)
class DatabaseSummary:
    """What a file holds: its schema version and the rows of each table.

    Tables outside the ``main`` schema are named ``schema.table``.
    """

    schema_version: int
    row_counts: Mapping[str, int]

    @property
    def total_rows(self) -> int:
        return sum(self.row_counts.values())


class Database:
    """The office's DuckDB file. Create with ``open`` or ``open_readonly``."""

    def __init__(
        self,
        conn: duckdb.DuckDBPyConnection,
        path: Path,
        *,
        read_only: bool,
        parent: Database | None = None,
    ) -> None:
        self._conn: duckdb.DuckDBPyConnection | None = conn
        self._path = path
        self._read_only = read_only
        self._lock = threading.RLock()
        self._tx_depth = 0
        self._parent = parent
        self._cursors: list[Database] = []

    # -- opening -------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, migrations: Sequence[Migration] = MIGRATIONS) -> Database:
        """Open (creating if needed) and migrate the file at ``path``.

        ``migrations`` is a seam for tests. A file newer than ``migrations``
        is refused untouched; a failed migration leaves it as it was, and a
        file this call created is removed again.
        """
        path = Path(path)
        started = time.perf_counter()
        known = latest_version(migrations)
        existed = path.exists()
        if existed:
            _refuse_if_too_new(inspect_file(path), path, known)
        conn = _connect(path, read_only=False)
        try:
            version = _migrate_mapped(conn, migrations, path)
        except BaseException:
            conn.close()
            if not existed:
                _remove_new_file(path)
            raise
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info("opened office database %s (schema v%d) in %.1f ms", path, version, elapsed_ms)
        return cls(conn, path, read_only=False)

    @classmethod
    def open_readonly(cls, path: Path | str) -> Database:
        """Open and check an existing file read-only, without migrating (``soloist doctor``)."""
        path = Path(path)
        if not path.exists():
            raise DatabaseOpenError(str(path), "there is no database file there yet")
        conn = _connect(path, read_only=True)
        try:
            _check(conn, path, full_scan=None)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, read_only=True)

    # -- properties ----------------------------------------------------
    @property
    def path(self) -> Path:
        return self._path

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def closed(self) -> bool:
        return self._conn is None

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the file (0 for an empty file)."""
        with self._mapped() as conn:
            return read_version(conn)

    def summary(self) -> DatabaseSummary:
        """The schema version and row counts, as this connection sees them now.

        Inside ``transaction()`` they describe that transaction's snapshot.
        """
        with self._mapped() as conn:
            return DatabaseSummary(read_version(conn), _row_counts(conn, full_scan=False))

    # -- statements ----------------------------------------------------
    def execute(self, sql: str, params: Params = ()) -> None:
        """Run one statement, discarding any result."""
        with self._mapped() as conn:
            conn.execute(sql, list(params))

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a query and return all its rows."""
        with self._mapped() as conn:
            return conn.execute(sql, list(params)).fetchall()

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """Run a query and return its first row, or None when it has none."""
        with self._mapped() as conn:
            return conn.execute(sql, list(params)).fetchone()

    def fetchnumpy(self, sql: str, params: Params = ()) -> dict[str, npt.NDArray[Any]]:
        """Run a query and return its columns as numpy arrays, by column name.

        Far faster than ``fetchall`` for many rows (a 384-float vector comes
        back as one float32 array, not 384 Python floats). A column holding
        NULLs comes back as a ``numpy.ma.MaskedArray``.
        """
        with self._mapped() as conn:
            return dict(conn.execute(sql, list(params)).fetchnumpy())

    # -- cursors -------------------------------------------------------
    def cursor(self) -> Database:
        """A second connection to this database: its own lock, its own transactions.

        Closed with this database if not before. Write only to other
        attached files through it (see the module docstring).
        """
        with self._mapped() as conn:
            child = Database(conn.cursor(), self._path, read_only=self._read_only, parent=self)
            self._cursors = [c for c in self._cursors if not c.closed]
            self._cursors.append(child)
        return child

    def interrupt(self) -> None:
        """Stop the statement running on this connection now (it fails with a QueryError).

        Takes no lock: it is meant for another thread than the one waiting
        on the statement, such as closing while a cursor rebuilds an index.
        """
        conn = self._conn
        if conn is not None:
            conn.interrupt()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in one transaction, holding the lock throughout.

        Commits when the block ends, rolls back when it raises. A nested
        ``transaction()`` joins the outer one (DuckDB has no savepoints), so
        helpers can be transactional on their own and still compose.
        """
        with self._lock:
            if self._tx_depth:
                yield from self._joined_transaction()
            else:
                yield from self._outermost_transaction()

    def _joined_transaction(self) -> Iterator[None]:
        self._tx_depth += 1
        try:
            yield
        finally:
            self._tx_depth -= 1

    def _outermost_transaction(self) -> Iterator[None]:
        self.execute("BEGIN TRANSACTION")
        self._tx_depth = 1
        try:
            yield
        except BaseException:
            self._tx_depth = 0
            self._roll_back_quietly()
            raise
        self._tx_depth = 0
        self._commit()

    def _commit(self) -> None:
        """Commit; when DuckDB refuses, roll back and report a QueryError."""
        try:
            self.execute("COMMIT")
        except QueryError:
            self._roll_back_quietly()
            raise

    def _roll_back_quietly(self) -> None:
        """Roll back; DuckDB may already have aborted the transaction itself."""
        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute("ROLLBACK")
        except duckdb.Error:
            log.debug("rollback found no open transaction")

    @contextmanager
    def _mapped(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Hold the lock, hand out the open connection, map DuckDB's errors."""
        with self._lock:
            if self._conn is None:
                raise DatabaseClosedError()
            try:
                yield self._conn
            except duckdb.Error as exc:
                raise QueryError(_detail(exc)) from exc

    # -- closing -------------------------------------------------------
    def close(self) -> None:
        """Close the file (its cursors first, stopping what they run); closing twice is harmless."""
        for child in list(self._cursors):
            child.interrupt()
            child.close()
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                conn.close()
            except duckdb.Error as exc:
                raise QueryError(_detail(exc)) from exc
        if self._parent is None:
            log.info("closed office database %s", self._path)

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("read-only" if self._read_only else "open")
        kind = "Database" if self._parent is None else "Database.cursor"
        return f"{kind}({str(self._path)!r}, {state})"


# -- time ---------------------------------------------------------------
def utc_now() -> datetime:
    """Now, timezone-aware in UTC: the default clock of the stores."""
    return datetime.now(UTC)


def to_db_time(moment: datetime) -> datetime:
    """The naive UTC value a ``TIMESTAMP`` column stores (see migrations)."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).replace(tzinfo=None)


def from_db_time(value: datetime) -> datetime:
    """A ``TIMESTAMP`` column's naive UTC value, made timezone-aware."""
    return value.replace(tzinfo=UTC)


# -- opening, mechanism ----------------------------------------------------
def _remember_pandas_is_absent() -> None:
    """Make a failed ``import pandas`` instant when pandas is not installed.

    duckdb's Python client tries ``import pandas`` twice for every bound
    parameter, and for every element of a list parameter: without pandas each
    try walks ``sys.path``, so binding one 384-float vector took ~110 ms.
    A ``None`` in ``sys.modules`` makes the import fail at once (ImportError,
    as before) and ``importlib.util.find_spec`` still answers None.
    """
    if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
        sys.modules["pandas"] = None  # type: ignore[assignment]


def _connect(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect`` with its errors mapped to the store's."""
    _remember_pandas_is_absent()
    try:
        conn = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        raise _open_error(path, exc) from exc
    try:
        for setting in _OFFLINE_SETTINGS:
            conn.execute(setting)
    except duckdb.Error as exc:
        conn.close()
        raise _open_error(path, exc) from exc
    return conn


def _open_error(path: Path, exc: duckdb.Error) -> DatabaseOpenError:
    """The store's error for a failed ``duckdb.connect`` or check, read from its message."""
    message = str(exc)
    if isinstance(exc, duckdb.IOException) and "Could not set lock" in message:
        match = _LOCK_HOLDER_PID.search(message)
        return DatabaseLockedError(str(path), int(match.group(1)) if match else None)
    for marker, detail in _DAMAGE:
        if marker in message:
            return _corrupt_error(path, detail)
    return DatabaseOpenError(str(path), _detail(exc))


def _corrupt_error(path: Path, detail: str) -> DatabaseCorruptError:
    """A ``DatabaseCorruptError`` naming the newest backup, the way out."""
    from app.memory.backup import newest_backup  # backup imports this module

    log.warning("office database %s is damaged: %s", path, detail)
    try:
        newest = newest_backup(path)
    except OSError:
        newest = None
    if newest is None:
        return DatabaseCorruptError(str(path), detail)
    return DatabaseCorruptError(str(path), detail, str(newest.path), newest.created_at)


def inspect_file(path: Path | str, *, full_scan: bool | None = None) -> DatabaseSummary:
    """Check the file at ``path`` through a read-only connection and summarise it.

    ``full_scan`` reads every table through (None: when the file is at most
    ``FULL_CHECK_MAX_BYTES``). Raises ``DatabaseCorruptError`` for a damaged
    file and ``DatabaseLockedError`` when another process holds it. A
    read-only connection never writes, so the file is left as it was.
    """
    path = Path(path)
    if not path.exists():
        raise DatabaseOpenError(str(path), "there is no database file there yet")
    conn = _connect(path, read_only=True)
    try:
        return _check(conn, path, full_scan)
    finally:
        conn.close()


def _check(conn: duckdb.DuckDBPyConnection, path: Path, full_scan: bool | None) -> DatabaseSummary:
    """Length, schema version and rows of every table, with DuckDB's errors mapped."""
    started = time.perf_counter()
    if full_scan is None:
        full_scan = path.stat().st_size <= FULL_CHECK_MAX_BYTES
    try:
        _check_length(conn, path)
        summary = DatabaseSummary(read_version(conn), _row_counts(conn, full_scan))
    except duckdb.Error as exc:
        raise _open_error(path, exc) from exc
    log.info(
        "checked %s (%s, %d tables, %d rows) in %.1f ms",
        path.name,
        "every block" if full_scan else "length and counts",
        len(summary.row_counts),
        summary.total_rows,
        (time.perf_counter() - started) * 1000,
    )
    return summary


def _check_length(conn: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a file shorter than the blocks DuckDB says are in use.

    Used blocks have distinct ids, so a sound file holds at least that many
    (DuckDB trims free blocks off the end, so its total count is no bound).
    """
    row = conn.execute(
        "SELECT block_size, used_blocks FROM pragma_database_size() "
        "WHERE database_name = current_database()"
    ).fetchone()
    if row is None:
        return
    needed = int(row[0]) * int(row[1])
    size = path.stat().st_size
    if size < needed:
        raise _corrupt_error(path, f"the file is cut short ({size:,} bytes of at least {needed:,})")


def _row_counts(conn: duckdb.DuckDBPyConnection, full_scan: bool) -> dict[str, int]:
    """Rows per table, in one statement.

    A full scan also hashes every column of every row, so DuckDB reads (and
    verifies the checksum of) every data block.
    """
    tables = conn.execute(
        """
        SELECT schema_name, table_name FROM duckdb_tables()
        WHERE database_name = current_database() AND NOT temporary AND NOT internal
        ORDER BY schema_name, table_name
        """
    ).fetchall()
    if not tables:
        return {}
    read_all = ", bit_xor(hash(*COLUMNS(*)))" if full_scan else ""
    sql = " UNION ALL ".join(
        f"SELECT {i} AS n, count(*){read_all} FROM {_quoted(schema)}.{_quoted(table)}"
        for i, (schema, table) in enumerate(tables)
    )
    rows = {int(row[0]): int(row[1]) for row in conn.execute(sql).fetchall()}
    return {
        table if schema == "main" else f"{schema}.{table}": rows[i]
        for i, (schema, table) in enumerate(tables)
    }


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _refuse_if_too_new(summary: DatabaseSummary, path: Path, known: int) -> None:
    """Refuse a file whose schema is newer than ``known``; it is left untouched."""
    if summary.schema_version > known:
        log.info(
            "refusing office database: schema v%d, this code knows v%d",
            summary.schema_version,
            known,
        )
        raise SchemaTooNewError(str(path), summary.schema_version, known)


def _migrate_mapped(
    conn: duckdb.DuckDBPyConnection, migrations: Sequence[Migration], path: Path
) -> int:
    """``migrate``, with DuckDB errors outside any migration mapped too."""
    try:
        return migrate(conn, migrations, str(path))
    except duckdb.Error as exc:
        raise DatabaseOpenError(str(path), _detail(exc)) from exc


def _remove_new_file(path: Path) -> None:
    """Remove a database file (and its WAL) that a failed ``open`` created."""
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    log.info("removed the database file a failed open had created")


def _detail(exc: duckdb.Error) -> str:
    """DuckDB's message, first line only and bounded, for a one-line error."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return first_line[:_MAX_DETAIL]
