"""The office database: opening, migrations, refusals, locking and settings.

These run against real DuckDB files in the test's own data directory.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from pathlib import Path

import duckdb
import pytest
from holders import database_held_by_another_process

from app.memory.conversations import ConversationStore
from app.memory.db import LATEST_VERSION, MIGRATIONS, Database
from app.memory.errors import (
    DatabaseClosedError,
    DatabaseCorruptError,
    DatabaseLockedError,
    DatabaseOpenError,
    MigrationError,
    QueryError,
    SchemaTooNewError,
    StoreError,
)
from app.memory.longterm import MemoryStore
from app.memory.migrations import Migration
from app.memory.provenance import Provenance
from app.memory.sessions import SessionStore
from app.memory.settings import JsonValue, Settings

SESSION_TIER = {
    "sessions",
    "agent_runs",
    "run_steps",
    "tool_results",
    "agent_state",
    "kv_snapshots",
}
LONG_TERM_TIER = {"memories", "memory_versions", "embedding_models", "memory_vectors"}


def fingerprint(path: Path) -> dict[str, str]:
    """The hash of the file and of everything beside it (its WAL included)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in path.parent.iterdir()}


def tables(database: Database) -> set[str]:
    rows = database.fetchall("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'")
    return {row[0] for row in rows}


def build(path: Path, migrations: tuple[Migration, ...]) -> None:
    """Create a database at ``path`` migrated with exactly ``migrations``."""
    Database.open(path, migrations).close()


def failing_after_creating_a_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE TABLE half_done (x INTEGER)")
    raise RuntimeError("data migration bug")


FUTURE = Migration(LATEST_VERSION + 1, "from the future", ("CREATE TABLE future (x INTEGER)",))


# -- migrations ---------------------------------------------------------
def test_new_file_is_migrated_to_latest(db: Database) -> None:
    assert db.schema_version == LATEST_VERSION
    assert {"schema_meta", "settings", "conversations", "messages"} <= tables(db)
    assert tables(db) >= SESSION_TIER | LONG_TERM_TIER
    applied = db.fetchall("SELECT version, description FROM schema_meta ORDER BY version")
    assert applied == [(m.version, m.description) for m in MIGRATIONS]


def test_reopening_a_current_file_applies_nothing(db_path: Path) -> None:
    build(db_path, MIGRATIONS)
    before = fingerprint(db_path)
    with Database.open(db_path) as again:
        assert again.schema_version == LATEST_VERSION
        assert again.fetchone("SELECT count(*) FROM schema_meta") == (LATEST_VERSION,)
    assert fingerprint(db_path) == before


def test_previous_version_is_upgraded_and_keeps_its_data(db_path: Path) -> None:
    with Database.open(db_path, MIGRATIONS[:-1]) as old:
        assert old.schema_version == LATEST_VERSION - 1
        Settings(old).set("engine.model_path", "/models/small.gguf")
    with Database.open(db_path) as upgraded:
        assert upgraded.schema_version == LATEST_VERSION
        assert Settings(upgraded).get("engine.model_path") == "/models/small.gguf"
        assert {"conversations", "messages"} <= tables(upgraded)


def test_a_v2_file_gains_the_session_and_long_term_tiers(db_path: Path) -> None:
    v2 = tuple(m for m in MIGRATIONS if m.version <= 2)
    with Database.open(db_path, v2) as old:
        assert old.schema_version == 2
        chat = ConversationStore(old).create("kept")
        ConversationStore(old).append(chat.id, "user", "hello")
        assert not (SESSION_TIER | LONG_TERM_TIER) & tables(old)

    with Database.open(db_path) as upgraded:
        assert upgraded.schema_version == LATEST_VERSION
        assert tables(upgraded) >= SESSION_TIER | LONG_TERM_TIER
        assert [m.content for m in ConversationStore(upgraded).messages(chat.id)] == ["hello"]
        applied = upgraded.fetchall("SELECT version FROM schema_meta ORDER BY 1")
        assert [row[0] for row in applied] == list(range(1, LATEST_VERSION + 1))
        session = SessionStore(upgraded).create_session("after", conversation_id=chat.id)
        assert SessionStore(upgraded).start_run(session.id, "a").started_seq == 1
        memory = MemoryStore(upgraded).add("x", "fact", "global", Provenance())
        assert MemoryStore(upgraded).get(memory.memory_id) == memory


def test_long_term_schema_has_its_indexes_and_list_vectors(db: Database) -> None:
    indexes = {row[0] for row in db.fetchall("SELECT index_name FROM duckdb_indexes()")}
    assert {"memory_versions_run", "memory_versions_hash"} <= indexes
    rows = db.fetchall(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?",
        ["memory_vectors"],
    )
    columns = dict(rows)
    assert columns["vector"] == "FLOAT[]"
    assert columns["dim"] == "INTEGER"


def leave_pending_wal(path: Path) -> None:
    """Write a row that stays in the WAL, as a crashed Soloist would leave it.

    A read-write open would check the WAL into the file; a refusal must not.
    """
    conn = duckdb.connect(str(path))
    conn.execute("PRAGMA disable_checkpoint_on_shutdown")
    conn.execute("INSERT INTO future VALUES (1)")
    conn.close()


def test_newer_schema_is_refused_and_left_untouched(db_path: Path) -> None:
    build(db_path, (*MIGRATIONS, FUTURE))
    leave_pending_wal(db_path)
    before = fingerprint(db_path)
    assert f"{db_path.name}.wal" in before

    with pytest.raises(SchemaTooNewError) as caught:
        Database.open(db_path)

    message = str(caught.value)
    assert f"schema version {LATEST_VERSION + 1}" in message
    assert f"knows versions up to {LATEST_VERSION}" in message
    assert "update Soloist" in message
    assert "\n" not in message
    assert (caught.value.file_version, caught.value.known_version) == (
        LATEST_VERSION + 1,
        LATEST_VERSION,
    )
    assert fingerprint(db_path) == before


def test_failing_sql_migration_rolls_back_every_pending_one(db_path: Path) -> None:
    build(db_path, MIGRATIONS[:-1])
    before = fingerprint(db_path)
    broken = Migration(
        LATEST_VERSION + 1,
        "creates a table, then fails",
        ("CREATE TABLE half_done (x INTEGER)", "SELECT * FROM no_such_table"),
    )

    with pytest.raises(MigrationError) as caught:
        Database.open(db_path, (*MIGRATIONS, broken))

    assert caught.value.version == LATEST_VERSION + 1
    assert isinstance(caught.value.__cause__, duckdb.Error)
    assert "rolled back" in str(caught.value)
    assert fingerprint(db_path) == before
    with Database.open_readonly(db_path) as after:
        assert after.schema_version == LATEST_VERSION - 1
        assert "half_done" not in tables(after)
        assert MIGRATIONS[-1].version not in {r[0] for r in after.fetchall("FROM schema_meta")}


def test_failing_callable_migration_rolls_back(db_path: Path) -> None:
    build(db_path, MIGRATIONS)
    broken = Migration(LATEST_VERSION + 1, "data fix", failing_after_creating_a_table)

    with pytest.raises(MigrationError) as caught:
        Database.open(db_path, (*MIGRATIONS, broken))

    assert isinstance(caught.value.__cause__, RuntimeError)
    assert "data migration bug" in str(caught.value)
    with Database.open(db_path) as after:
        assert after.schema_version == LATEST_VERSION
        assert "half_done" not in tables(after)


def test_failed_migration_of_a_new_file_leaves_no_file(db_path: Path) -> None:
    broken = Migration(LATEST_VERSION + 1, "data fix", failing_after_creating_a_table)
    with pytest.raises(MigrationError):
        Database.open(db_path, (*MIGRATIONS, broken))
    assert list(db_path.parent.iterdir()) == []


@pytest.mark.parametrize("versions", [(1, 3), (2, 1), (1, 1), (0, 1)])
def test_migrations_out_of_order_are_a_bug_caught_before_any_file(
    db_path: Path, versions: tuple[int, ...]
) -> None:
    migrations = tuple(Migration(v, f"v{v}", ()) for v in versions)
    with pytest.raises(ValueError, match=r"1\.\.n"):
        Database.open(db_path, migrations)
    assert not db_path.exists()


# -- refusals -----------------------------------------------------------
@pytest.mark.slow
def test_file_held_by_another_process_is_reported_as_locked(db_path: Path) -> None:
    build(db_path, MIGRATIONS)
    with database_held_by_another_process(db_path) as holder:
        with pytest.raises(DatabaseLockedError) as caught:
            Database.open(db_path)
        with pytest.raises(DatabaseLockedError):
            Database.open_readonly(db_path)

    assert caught.value.pid == holder.pid
    message = str(caught.value)
    assert f"in use by another Soloist process (pid {holder.pid})" in message
    assert "\n" not in message
    assert isinstance(caught.value.__cause__, duckdb.IOException)
    assert holder.returncode == 0
    Database.open(db_path).close()  # the lock went with the holder


def test_file_that_is_not_a_database_is_reported_as_corrupt(db_path: Path) -> None:
    db_path.write_bytes(b"these are not the bytes of a DuckDB file\n" * 200)
    before = fingerprint(db_path)

    with pytest.raises(DatabaseCorruptError) as caught:
        Database.open(db_path)
    with pytest.raises(DatabaseCorruptError):
        Database.open_readonly(db_path)

    assert "not a valid DuckDB database" in str(caught.value)
    assert isinstance(caught.value.__cause__, duckdb.Error)
    assert fingerprint(db_path) == before


def test_open_readonly_reads_the_version_without_migrating(db_path: Path) -> None:
    build(db_path, MIGRATIONS[:-1])
    before = fingerprint(db_path)
    with Database.open_readonly(db_path) as readonly:
        assert readonly.read_only
        assert readonly.schema_version == LATEST_VERSION - 1
        with pytest.raises(QueryError):
            readonly.execute("INSERT INTO settings VALUES ('k', '1', TIMESTAMP '2025-01-01')")
    assert fingerprint(db_path) == before


def test_open_readonly_of_a_missing_file_does_not_create_it(db_path: Path) -> None:
    with pytest.raises(DatabaseOpenError, match="no database file"):
        Database.open_readonly(db_path)
    assert not db_path.exists()


def test_errors_survive_pickling_with_their_message() -> None:
    errors: list[StoreError] = [
        SchemaTooNewError("/x/office.duckdb", 9, 2),
        DatabaseLockedError("/x/office.duckdb", 1234),
        DatabaseCorruptError("/x/office.duckdb"),
        MigrationError("/x/office.duckdb", 3, "add things", "boom"),
    ]
    for error in errors:
        assert str(pickle.loads(pickle.dumps(error))) == str(error)


# -- the connection -----------------------------------------------------
def test_close_is_idempotent_and_use_after_close_is_reported(db_path: Path) -> None:
    database = Database.open(db_path)
    database.close()
    database.close()
    assert database.closed
    with pytest.raises(DatabaseClosedError):
        database.fetchall("SELECT 1")


def test_duckdb_errors_are_mapped_to_query_error(db: Database) -> None:
    with pytest.raises(QueryError) as caught:
        db.fetchall("SELECT * FROM no_such_table")
    assert isinstance(caught.value.__cause__, duckdb.CatalogException)


def test_transaction_rolls_back_when_the_block_raises(db: Database) -> None:
    settings = Settings(db)
    with pytest.raises(RuntimeError), db.transaction():
        settings.set("a", 1)
        with db.transaction():  # joins the outer transaction
            settings.set("b", 2)
        raise RuntimeError("abandon")
    assert (settings.get("a"), settings.get("b")) == (None, None)
    with db.transaction():
        settings.set("a", 1)
    assert settings.get("a") == 1


# -- settings -----------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    ["/models/a.gguf", "ünïcode ✓", 42, 2.5, True, [1, "two", None], {"nested": {"k": [1]}}],
)
def test_setting_round_trips(db: Database, value: JsonValue) -> None:
    settings = Settings(db)
    settings.set("key", value)
    assert settings.get("key") == value


def test_missing_setting_gives_default_but_stored_null_does_not(db: Database) -> None:
    settings = Settings(db)
    assert settings.get("absent", "fallback") == "fallback"
    settings.set("explicit", None)
    assert settings.get("explicit", "fallback") is None


def test_setting_is_replaced_and_deleted(db: Database) -> None:
    settings = Settings(db)
    settings.set("k", 1)
    settings.set("k", {"v": 2})
    assert settings.get("k") == {"v": 2}
    assert settings.delete("k") is True
    assert settings.delete("k") is False
    assert settings.get("k") is None


def test_settings_persist_after_reopen(db_path: Path) -> None:
    with Database.open(db_path) as first:
        Settings(first).set("engine.model_path", "/models/tiny.gguf")
    with Database.open(db_path) as second:
        assert Settings(second).get("engine.model_path") == "/models/tiny.gguf"


def test_values_json_cannot_hold_exactly_are_refused(db: Database) -> None:
    settings = Settings(db)
    with pytest.raises(TypeError):
        settings.set("k", {1, 2})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        settings.set("k", math.nan)
    assert settings.get("k") is None
