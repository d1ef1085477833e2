"""The office database's schema versions and the code that upgrades a file.

The schema version lives in the file itself (``schema_meta``, one row per
applied migration), so any Soloist can tell whether it understands a file
before touching it. Migrations run on open, all pending ones inside ONE
transaction: an upgrade either finishes or leaves the file as it was, never
half-migrated. DuckDB's DDL is transactional, so ``CREATE TABLE`` rolls
back too.

Times are stored as ``TIMESTAMP`` holding UTC, not ``TIMESTAMPTZ``: the
duckdb Python client needs ``pytz`` to hand back a ``TIMESTAMPTZ`` value,
and Soloist does not ship it. SQL defaults such as ``now()`` are avoided for
the same reason (their cast to ``TIMESTAMP`` uses the session time zone);
Python supplies every timestamp.

Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from app.memory.errors import MigrationError, SchemaTooNewError

log = logging.getLogger("soloist.memory")

MigrationStep = Callable[[duckdb.DuckDBPyConnection], None]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: SQL statements, or a callable for data changes."""

    version: int
    description: str
    apply: tuple[str, ...] | MigrationStep

    def run(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Apply this migration on ``conn`` (inside the caller's transaction)."""
        if callable(self.apply):
            self.apply(conn)
            return
        for statement in self.apply:
            conn.execute(statement)


_SETTINGS = Migration(
    1,
    "schema_meta and settings",
    (
        """
        CREATE TABLE schema_meta (
            version     INTEGER PRIMARY KEY,
            description TEXT NOT NULL,
            applied_at  TIMESTAMP NOT NULL  -- UTC
        )
        """,
        """
        CREATE TABLE settings (
            key        TEXT PRIMARY KEY,
            value      JSON NOT NULL,
            updated_at TIMESTAMP NOT NULL  -- UTC
        )
        """,
    ),
)

_CONVERSATIONS = Migration(
    2,
    "conversations and messages",
    (
        """
        CREATE TABLE conversations (
            id         TEXT PRIMARY KEY,  -- uuid4 hex
            title      TEXT NOT NULL,
            created_at TIMESTAMP NOT NULL,  -- UTC
            updated_at TIMESTAMP NOT NULL   -- UTC, last activity
        )
        """,
        # seq is per conversation, assigned as max + 1 inside the appending
        # transaction, so readers see messages in causal order.
        """
        CREATE TABLE messages (
            conversation_id TEXT NOT NULL REFERENCES conversations (id),
            seq             INTEGER NOT NULL CHECK (seq >= 1),
            role            TEXT NOT NULL,
            content         TEXT NOT NULL,
            created_at      TIMESTAMP NOT NULL,  -- UTC
            PRIMARY KEY (conversation_id, seq)
        )
        """,
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_SETTINGS, _CONVERSATIONS)
LATEST_VERSION: int = MIGRATIONS[-1].version


def latest_version(migrations: Sequence[Migration]) -> int:
    """The version ``migrations`` lead to, after checking they are 1, 2, … n.

    A gap or a duplicate is a programming error, caught before any file is
    touched.
    """
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1..n in order, got {versions}")
    return len(versions)


def read_version(conn: duckdb.DuckDBPyConnection) -> int:
    """The schema version recorded in the file; 0 for a new, empty file."""
    row = conn.execute(
        """
        SELECT count(*) FROM duckdb_tables()
        WHERE database_name = current_database()
          AND schema_name = 'main' AND table_name = 'schema_meta'
        """
    ).fetchone()
    if row is None or row[0] == 0:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_meta").fetchone()
    return int(row[0]) if row is not None else 0


def migrate(conn: duckdb.DuckDBPyConnection, migrations: Sequence[Migration], path: str) -> int:
    """Bring the file on ``conn`` up to the last of ``migrations``; return it.

    Raises ``SchemaTooNewError`` for a file newer than ``migrations`` and
    ``MigrationError`` (after rolling everything back) when one fails.
    """
    latest = latest_version(migrations)
    current = read_version(conn)
    if current > latest:
        raise SchemaTooNewError(path, current, latest)
    pending = [m for m in migrations if m.version > current]
    if not pending:
        return current
    started = time.perf_counter()
    conn.execute("BEGIN TRANSACTION")
    for migration in pending:
        _apply_or_roll_back(conn, migration, path)
    _commit_or_roll_back(conn, pending[-1], path)
    log.info(
        "migrated office database from v%d to v%d in %.1f ms",
        current,
        latest,
        (time.perf_counter() - started) * 1000,
    )
    return latest


def _apply_or_roll_back(conn: duckdb.DuckDBPyConnection, migration: Migration, path: str) -> None:
    """Apply one migration; on failure roll back the whole upgrade and raise.

    A callable migration may fail with any exception, so all are caught:
    whatever went wrong, the file must not stay half-migrated.
    """
    try:
        migration.run(conn)
        conn.execute(
            "INSERT INTO schema_meta (version, description, applied_at) VALUES (?, ?, ?)",
            [migration.version, migration.description, _utc_now_naive()],
        )
    except Exception as exc:
        _roll_back(conn, migration)
        detail = f"{type(exc).__name__}: {exc}"
        raise MigrationError(path, migration.version, migration.description, detail) from exc


def _commit_or_roll_back(conn: duckdb.DuckDBPyConnection, last: Migration, path: str) -> None:
    """Commit the upgrade; a failed commit (disk full) is a failed migration."""
    try:
        conn.execute("COMMIT")
    except duckdb.Error as exc:
        _roll_back(conn, last)
        detail = f"{type(exc).__name__}: {exc}"
        raise MigrationError(path, last.version, last.description, detail) from exc


def _roll_back(conn: duckdb.DuckDBPyConnection, failed: Migration) -> None:
    """Roll back the upgrade; DuckDB may already have aborted it itself."""
    log.info("migration to v%d failed; rolling back the upgrade", failed.version)
    try:
        conn.execute("ROLLBACK")
    except duckdb.Error:
        log.debug("rollback after a failed migration found no open transaction")


def _utc_now_naive() -> datetime:
    """Now, in UTC, as the naive value a ``TIMESTAMP`` column stores."""
    return datetime.now(UTC).replace(tzinfo=None)
