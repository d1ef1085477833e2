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
from collections.abc import Sequence
from datetime import UTC, datetime

import duckdb

from app.memory.errors import MigrationError, SchemaTooNewError
from app.memory.migrations_base import Migration, MigrationStep

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "MigrationStep",
    "latest_version",
    "migrate",
    "read_version",
]
from app.memory.schema_agents import AGENTS
from app.memory.schema_automations import AUTOMATIONS
from app.memory.schema_chat import CHAT
from app.memory.schema_crm import CRM
from app.memory.schema_dav import DAV
from app.memory.schema_mail import MAIL
from app.memory.schema_outbox import OUTBOX
from app.memory.schema_store import STORE

log = logging.getLogger("soloist.memory")

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

# The session tier. One counter per session (sessions.last_seq), bumped
# inside the transaction that writes an event, numbers every event of the
# session: run starts and finishes, steps, tool results and KV snapshot refs
# share it, so seq order across those tables is causal order.
_SESSIONS = Migration(
    3,
    "sessions, agent runs, steps, tool results, agent state, KV snapshot refs",
    (
        """
        CREATE TABLE sessions (
            id              TEXT PRIMARY KEY,  -- uuid4 hex
            conversation_id TEXT,              -- the chat it serves; NULL for background work
            title           TEXT NOT NULL,
            last_seq        INTEGER NOT NULL CHECK (last_seq >= 0),
            created_at      TIMESTAMP NOT NULL,  -- UTC
            updated_at      TIMESTAMP NOT NULL   -- UTC, last event
        )
        """,
        """
        CREATE TABLE agent_runs (
            id           TEXT PRIMARY KEY,  -- uuid4 hex
            session_id   TEXT NOT NULL REFERENCES sessions (id),
            agent_id     TEXT NOT NULL,
            status       TEXT NOT NULL
                         CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
            error        TEXT,
            started_seq  INTEGER NOT NULL CHECK (started_seq >= 1),
            finished_seq INTEGER CHECK (finished_seq > started_seq),
            started_at   TIMESTAMP NOT NULL,  -- UTC
            finished_at  TIMESTAMP            -- UTC; NULL while running
        )
        """,
        """
        CREATE TABLE run_steps (
            session_id TEXT NOT NULL REFERENCES sessions (id),
            seq        INTEGER NOT NULL CHECK (seq >= 1),      -- per session
            run_id     TEXT NOT NULL REFERENCES agent_runs (id),
            step_no    INTEGER NOT NULL CHECK (step_no >= 1),  -- per run
            kind       TEXT NOT NULL,
            content    JSON NOT NULL,
            created_at TIMESTAMP NOT NULL,  -- UTC
            PRIMARY KEY (session_id, seq),
            UNIQUE (run_id, step_no)
        )
        """,
        """
        CREATE TABLE tool_results (
            session_id TEXT NOT NULL REFERENCES sessions (id),
            seq        INTEGER NOT NULL CHECK (seq >= 1),  -- per session
            run_id     TEXT NOT NULL REFERENCES agent_runs (id),
            step_seq   INTEGER,  -- seq of the step that called the tool, if known
            tool       TEXT NOT NULL,
            ok         BOOLEAN NOT NULL,
            output     JSON NOT NULL,
            error      TEXT,
            created_at TIMESTAMP NOT NULL,  -- UTC
            PRIMARY KEY (session_id, seq)
        )
        """,
        # Versioned per agent; a writer names the version it read, so a
        # stale writer is refused instead of overwriting (optimistic).
        """
        CREATE TABLE agent_state (
            agent_id   TEXT NOT NULL,
            version    INTEGER NOT NULL CHECK (version >= 1),
            state      JSON NOT NULL,
            run_id     TEXT,  -- the run that wrote it, if any
            created_at TIMESTAMP NOT NULL,  -- UTC
            PRIMARY KEY (agent_id, version)
        )
        """,
        # A reference to a KV snapshot file of the working tier
        # (app.engine.snapshots): the session's events up to seq are in it.
        """
        CREATE TABLE kv_snapshots (
            session_id     TEXT NOT NULL REFERENCES sessions (id),
            seq            INTEGER NOT NULL CHECK (seq >= 1),
            snapshot_key   TEXT NOT NULL,  -- sha256 hex, the snapshot store's key
            token_count    INTEGER NOT NULL CHECK (token_count >= 0),
            model_identity TEXT NOT NULL,  -- sha256 hex of the model and KV layout
            run_id         TEXT,
            created_at     TIMESTAMP NOT NULL,  -- UTC
            PRIMARY KEY (session_id, seq)
        )
        """,
    ),
)

# The long-term tier. A memory is a stable id with a kind and a scope; what
# it says lives in memory_versions, append-only: a change inserts a version,
# a delete inserts a tombstone. The only column ever updated is valid_to,
# set once, from NULL to the successor's valid_from, in the transaction that
# writes the successor: it is derivable from the next version and is kept so
# that "current" (valid_to IS NULL) and "as of t" (valid_from <= t < valid_to)
# are plain filters instead of a window over all versions.
#
# Vectors are FLOAT[] (variable length) with model and dim beside them and a
# CHECK tying the two, not FLOAT[N]: the model (so N) is configurable, and a
# fixed-size column would need a table and a migration per dimension. The
# search index lives in RAM; SQL that needs array_cosine_distance casts
# (vector::FLOAT[384]) after filtering on one model.
_LONG_TERM = Migration(
    4,
    "memories, memory versions with provenance, embedding models and vectors",
    (
        """
        CREATE TABLE memories (
            id         TEXT PRIMARY KEY,  -- uuid4 hex, stable across versions
            kind       TEXT NOT NULL,     -- checked in Python: new kinds need no migration
            scope      TEXT NOT NULL,     -- 'global', 'agent:<id>' or 'contact:<id>'
            created_at TIMESTAMP NOT NULL  -- UTC
        )
        """,
        """
        CREATE TABLE memory_versions (
            id            TEXT PRIMARY KEY,  -- uuid4 hex, the version id
            memory_id     TEXT NOT NULL REFERENCES memories (id),
            version       INTEGER NOT NULL CHECK (version >= 1),
            op            TEXT NOT NULL CHECK (op IN ('add', 'update', 'delete', 'restore')),
            text          TEXT NOT NULL,   -- '' on a tombstone
            metadata      JSON NOT NULL,
            content_hash  TEXT,            -- sha256 hex of the normalised text; NULL on a tombstone
            tombstone     BOOLEAN NOT NULL,
            restored_from INTEGER,         -- op 'restore': the version it copies
            created_at    TIMESTAMP NOT NULL,  -- UTC, the writer's clock
            valid_from    TIMESTAMP NOT NULL,  -- UTC, created_at, never before the predecessor's
            valid_to      TIMESTAMP,           -- UTC, the successor's valid_from; NULL if current
            -- provenance: who and what produced this version
            agent_id      TEXT,
            run_id        TEXT,
            step_seq      INTEGER,
            tool          TEXT,
            message_id    TEXT,
            source_file   TEXT,
            source_url    TEXT,
            UNIQUE (memory_id, version),
            CHECK (valid_to IS NULL OR valid_to >= valid_from)
        )
        """,
        # No CHECK may name an indexed column (content_hash, run_id): DuckDB
        # then runs "UPDATE ... SET valid_to" as a delete and an insert, which
        # the foreign key from memory_vectors refuses. Python keeps
        # tombstone = (content_hash IS NULL) instead.
        "CREATE INDEX memory_versions_run ON memory_versions (run_id)",
        "CREATE INDEX memory_versions_hash ON memory_versions (content_hash)",
        # One dimension per model name, fixed by its first vector.
        """
        CREATE TABLE embedding_models (
            model      TEXT PRIMARY KEY,
            dim        INTEGER NOT NULL CHECK (dim >= 1),
            created_at TIMESTAMP NOT NULL  -- UTC
        )
        """,
        """
        CREATE TABLE memory_vectors (
            version_id TEXT NOT NULL REFERENCES memory_versions (id),
            model      TEXT NOT NULL REFERENCES embedding_models (model),
            dim        INTEGER NOT NULL,
            vector     FLOAT[] NOT NULL,
            created_at TIMESTAMP NOT NULL,  -- UTC
            PRIMARY KEY (version_id, model),
            CHECK (len(vector) = dim)
        )
        """,
    ),
)

# Ingestion of document folders (app.memory.ingest). A source is a folder
# whose chunks go to one memory scope; each file under it has one row,
# whatever became of it, and ingest_chunks links an indexed file's chunks,
# in order, to the memories that hold their text. A memory may be linked
# from several files (the same paragraph in two documents is one memory);
# it is tombstoned when the last link to it goes. A file's chunks, their
# vectors, its links and its row are written in ONE transaction, so a run
# killed mid-way leaves each file wholly indexed or as it was, and the next
# run resumes by comparing size and mtime with these rows.
#
# No CHECK names an indexed column (see the long-term tier), and nothing
# references ingest_files, whose rows are updated in place.
_INGESTION = Migration(
    5,
    "ingestion sources, runs, files and their chunk links",
    (
        """
        CREATE TABLE ingest_sources (
            id         TEXT PRIMARY KEY,      -- uuid4 hex
            root       TEXT NOT NULL UNIQUE,  -- absolute folder path
            scope      TEXT NOT NULL,         -- the memory scope of its chunks
            created_at TIMESTAMP NOT NULL     -- UTC
        )
        """,
        """
        CREATE TABLE ingest_runs (
            id          TEXT PRIMARY KEY,  -- uuid4 hex; the run_id of what it wrote
            source_id   TEXT REFERENCES ingest_sources (id),  -- NULL: every source
            status      TEXT NOT NULL CHECK (status IN
                            ('running', 'succeeded', 'cancelled', 'failed', 'interrupted')),
            embed_model TEXT NOT NULL,
            counts      JSON NOT NULL,     -- files and chunks, by outcome
            error       TEXT,
            started_at  TIMESTAMP NOT NULL,  -- UTC
            finished_at TIMESTAMP            -- UTC; NULL while running (or killed)
        )
        """,
        """
        CREATE TABLE ingest_files (
            source_id      TEXT NOT NULL REFERENCES ingest_sources (id),
            path           TEXT NOT NULL,    -- absolute, as found under the root
            size           BIGINT NOT NULL,  -- bytes, at the last look
            mtime_ns       BIGINT NOT NULL,
            content_sha256 TEXT,             -- of the parsed text; NULL if never parsed
            status         TEXT NOT NULL
                           CHECK (status IN ('pending', 'indexed', 'skipped', 'removed')),
            reason         TEXT,             -- skipped: a DocumentError reason code
            detail         TEXT,             -- skipped: the one-line message
            chunk_count    INTEGER NOT NULL CHECK (chunk_count >= 0),
            run_id         TEXT,             -- the run that last wrote the row
            updated_at     TIMESTAMP NOT NULL,  -- UTC
            PRIMARY KEY (source_id, path)
        )
        """,
        """
        CREATE TABLE ingest_chunks (
            source_id    TEXT NOT NULL,
            path         TEXT NOT NULL,
            seq          INTEGER NOT NULL,  -- the chunk's index in the file, from 0
            memory_id    TEXT NOT NULL REFERENCES memories (id),
            chunk_sha256 TEXT NOT NULL,     -- content hash of the chunk's text
            char_start   INTEGER NOT NULL,  -- where the chunk lies in the parsed text
            char_end     INTEGER NOT NULL,
            page         INTEGER,           -- PDF page of char_start; NULL if not paged
            PRIMARY KEY (source_id, path, seq)
        )
        """,
        "CREATE INDEX ingest_chunks_memory ON ingest_chunks (memory_id)",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (
    _SETTINGS,
    _CONVERSATIONS,
    _SESSIONS,
    _LONG_TERM,
    _INGESTION,
    MAIL,
    DAV,
    CRM,
    STORE,
    AGENTS,
    OUTBOX,
    AUTOMATIONS,
    CHAT,
)
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
