"""Backups, retention, damaged files and restore, on real DuckDB files."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickle
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from holders import database_held_by_another_process

from app import cli_backup
from app.memory import db as db_module
from app.memory.backup import (
    BackupFile,
    BackupPolicy,
    back_up,
    backup_due,
    backups_dir,
    create_backup,
    list_backups,
    maybe_backup,
    restore_backup,
)
from app.memory.db import LATEST_VERSION, Database, inspect_file
from app.memory.errors import (
    BackupError,
    DatabaseCorruptError,
    DatabaseLockedError,
    RestoreError,
    StoreError,
)

START = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
MESSAGES_PER_CONVERSATION = 5


def stepping_clock(
    start: datetime = START, step: timedelta = timedelta(minutes=1)
) -> Callable[[], datetime]:
    """A clock that moves on by ``step`` at each reading."""
    ticks = iter(range(1_000_000))
    return lambda: start + next(ticks) * step


def fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def add_conversation(db: Database, n: int, messages: int = MESSAGES_PER_CONVERSATION) -> None:
    now = START.replace(tzinfo=None)
    db.execute(
        "INSERT INTO conversations VALUES (?, ?, ?, ?)", [f"c{n:05d}", f"chat {n}", now, now]
    )
    db.execute(
        "INSERT INTO messages SELECT ?, i, 'user', repeat(md5(i::TEXT || ?), 8), ? "
        "FROM range(1, ? + 1) t(i)",
        [f"c{n:05d}", str(n), now, messages],
    )


def fill(db: Database, conversations: int = 40, messages: int = 50) -> None:
    with db.transaction():
        for n in range(conversations):
            add_conversation(db, n, messages)


def counts(path: Path) -> dict[str, int]:
    return dict(inspect_file(path, full_scan=True).row_counts)


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
    }


def soloist(*argv: str) -> int:
    """``soloist backup|restore ...`` through the module cli.py will call."""
    parser = argparse.ArgumentParser(prog="soloist")
    cli_backup.add_parser(parser.add_subparsers(dest="command"))
    return cli_backup.run(parser.parse_args(argv))


@pytest.fixture
def office(db_path: Path) -> Iterator[Database]:
    """An office database with 40 conversations of 50 messages."""
    with Database.open(db_path) as database:
        fill(database)
        yield database


@pytest.fixture
def backed_up(office: Database) -> tuple[Path, dict[str, int]]:
    """A closed office database with one backup; its path and row counts."""
    backup = create_backup(office, stepping_clock()).backup.path
    office.close()
    return backup, counts(office.path)


def cut_to_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def flip_data_block(path: Path) -> None:
    """Flip 16 bytes inside the stored text of ``messages`` (a checksummed data block)."""
    conn = duckdb.connect(str(path), read_only=True)
    try:
        block_id, offset = conn.execute(
            "SELECT block_id, block_offset FROM pragma_storage_info('messages') "
            "WHERE column_name = 'content' AND persistent AND block_id >= 0 "
            "ORDER BY block_id, block_offset LIMIT 1"
        ).fetchone() or (None, None)
        (block_size,) = conn.execute(
            "SELECT block_size FROM pragma_database_size() WHERE database_name = current_database()"
        ).fetchone() or (None,)
    finally:
        conn.close()
    assert block_id is not None and block_size is not None
    # three 4 KiB file headers, then blocks that start with an 8-byte checksum
    position = 3 * 4096 + block_id * block_size + 8 + offset + 16
    with open(path, "r+b") as handle:
        handle.seek(position)
        data = handle.read(16)
        handle.seek(position)
        handle.write(bytes(b ^ 0xFF for b in data))


# -- backing up -------------------------------------------------------------
def test_backup_holds_the_data_and_opens_read_only(office: Database) -> None:
    result = back_up(office, clock=stepping_clock())

    assert result.backup.path.parent == backups_dir(office.path)
    assert result.backup.path.name == "office-20250301T093000.000000Z.duckdb"
    assert sorted(p.name for p in backups_dir(office.path).iterdir()) == [result.backup.path.name]
    assert result.summary.row_counts["messages"] == 40 * 50
    with Database.open_readonly(result.backup.path) as copy:
        assert copy.schema_version == LATEST_VERSION
        assert copy.summary() == office.summary()
        assert copy.fetchall("SELECT * FROM messages ORDER BY ALL") == office.fetchall(
            "SELECT * FROM messages ORDER BY ALL"
        )


def test_backup_of_a_read_only_database_folds_in_its_pending_wal(db_path: Path) -> None:
    with Database.open(db_path) as database:
        fill(database, conversations=2)
    conn = duckdb.connect(str(db_path))  # a crash leaves committed rows in the WAL
    conn.execute("PRAGMA disable_checkpoint_on_shutdown")
    conn.execute("INSERT INTO settings VALUES ('k', '1', TIMESTAMP '2025-01-01')")
    conn.close()
    before = fingerprint(db_path.parent)
    assert f"{db_path.name}.wal" in before

    with Database.open_readonly(db_path) as readonly:
        result = create_backup(readonly)

    assert fingerprint(db_path.parent) == before
    assert [p.name for p in backups_dir(db_path).iterdir()] == [result.backup.path.name]
    assert counts(result.backup.path)["settings"] == 1


def test_backup_while_another_thread_writes_holds_committed_transactions_only(
    office: Database,
) -> None:
    in_transaction, go_on, stop = threading.Event(), threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        n = 1000
        try:
            while not stop.is_set():
                with office.transaction():
                    add_conversation(office, n)
                    if not in_transaction.is_set():
                        in_transaction.set()
                        assert go_on.wait(timeout=60)
                n += 1
        except BaseException as exc:
            failures.append(exc)

    clock = stepping_clock()
    backups = []
    writer = threading.Thread(target=write)
    writer.start()
    assert in_transaction.wait(timeout=60)
    taker = threading.Thread(target=lambda: backups.append(create_backup(office, clock)))
    taker.start()  # waits for the writer's open transaction
    go_on.set()
    taker.join(timeout=120)
    backups += [create_backup(office, clock) for _ in range(3)]
    stop.set()
    writer.join(timeout=120)

    assert failures == []
    assert len(backups) == 4
    for result in backups:
        with Database.open_readonly(result.backup.path) as copy:
            assert copy.summary() == result.summary
            partial = copy.fetchall(
                "SELECT c.id, count(m.seq) FROM conversations c "
                "LEFT JOIN messages m ON m.conversation_id = c.id "
                "GROUP BY c.id HAVING count(m.seq) NOT IN (?, 50)",
                [MESSAGES_PER_CONVERSATION],
            )
            assert partial == []
            orphans = copy.fetchone(
                "SELECT count(*) FROM messages WHERE conversation_id NOT IN "
                "(SELECT id FROM conversations)"
            )
            assert orphans == (0,)


def test_backup_of_a_damaged_block_fails_and_keeps_the_earlier_backups(
    backed_up: tuple[Path, dict[str, int]], db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flip_data_block(db_path)
    monkeypatch.setattr(db_module, "FULL_CHECK_MAX_BYTES", 0)  # opens with the cheap checks
    before = fingerprint(backups_dir(db_path))

    with Database.open_readonly(db_path) as damaged, pytest.raises(BackupError) as caught:
        back_up(damaged, BackupPolicy(keep_days=0, keep_count=1))

    assert "may be damaged" in str(caught.value)
    assert fingerprint(backups_dir(db_path)) == before


def test_backup_inside_a_transaction_with_changes_is_refused(office: Database) -> None:
    with pytest.raises(BackupError, match="checkpoint"), office.transaction():
        add_conversation(office, 999)
        create_backup(office)

    assert office.fetchone("SELECT count(*) FROM conversations WHERE id = 'c00999'") == (0,)
    assert list(backups_dir(office.path).iterdir()) == []


# -- policy and retention ---------------------------------------------------
def backups_aged(*days: float) -> list[BackupFile]:
    return [BackupFile(Path(f"b{d}"), START - timedelta(days=d)) for d in days]


@pytest.mark.parametrize(
    ("policy", "ages", "removed"),
    [
        (BackupPolicy(), (), ()),
        (BackupPolicy(), (0, 1, 2, 3, 20), (20,)),
        (BackupPolicy(), (15, 16, 17, 30), (30,)),  # old, but the newest three stay
        (BackupPolicy(keep_count=1), (14, 1, 13.9), (14,)),  # 14 days is no longer young
        (BackupPolicy(keep_days=0, keep_count=2), (0, 1, 2), (2,)),
        (BackupPolicy(keep_days=7, keep_count=1), (30, 10, 8), (10, 30)),  # oldest last
    ],
)
def test_retention_keeps_the_young_and_the_newest(
    policy: BackupPolicy, ages: tuple[float, ...], removed: tuple[float, ...]
) -> None:
    gone = policy.to_remove(backups_aged(*ages), START)
    assert [b.path.name for b in gone] == [f"b{d}" for d in removed]


@pytest.mark.parametrize(
    ("last", "due"),
    [(None, True), (START - timedelta(days=1), True), (START - timedelta(hours=23), False)],
)
def test_backup_is_due_after_the_interval(last: datetime | None, due: bool) -> None:
    assert BackupPolicy(interval=timedelta(days=1)).is_due(START, last) is due


def test_invalid_policies_are_refused() -> None:
    for bad in ({"interval": timedelta(0)}, {"keep_days": -1}, {"keep_count": 0}):
        with pytest.raises(ValueError):
            BackupPolicy(**bad)


def test_schedule_backs_up_when_due_and_prunes_old_backups(office: Database) -> None:
    policy = BackupPolicy(interval=timedelta(days=1), keep_days=3, keep_count=3)
    days = [START + timedelta(days=d) for d in (0, 1, 2, 10)]
    made = []
    for day in days:
        assert backup_due(office.path, day, policy)
        result = maybe_backup(office, policy, clock=fixed(day))
        assert result is not None
        made.append(result)
        assert maybe_backup(office, policy, clock=fixed(day + timedelta(hours=23))) is None

    assert made[-1].removed == (made[0].backup.path,)  # days 1 and 2 stay among the newest 3
    assert [b.created_at for b in list_backups(office.path)] == days[:0:-1]


# -- damaged files at open ------------------------------------------------------
@pytest.mark.parametrize("damage", [cut_to_half, flip_data_block])
@pytest.mark.parametrize("opener", [Database.open, Database.open_readonly])
def test_damaged_file_is_refused_with_the_newest_backup_named(
    backed_up: tuple[Path, dict[str, int]],
    db_path: Path,
    damage: Callable[[Path], None],
    opener: Callable[[Path], Database],
) -> None:
    backup, _ = backed_up
    damage(db_path)
    before = fingerprint(db_path.parent)

    with pytest.raises(DatabaseCorruptError) as caught:
        opener(db_path)

    message = str(caught.value)
    assert str(db_path) in message
    assert f"`soloist restore --latest` (newest: {backup}, 2025-03-01 09:30 UTC)" in message
    assert "left as it is" in message
    assert "\n" not in message
    assert isinstance(caught.value.__cause__, duckdb.Error) or "cut short" in message
    assert fingerprint(db_path.parent) == before


def test_truncation_is_caught_by_the_cheap_check_of_large_files(
    db_path: Path, office: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    office.close()
    cut_to_half(db_path)
    monkeypatch.setattr(db_module, "FULL_CHECK_MAX_BYTES", 0)

    with pytest.raises(DatabaseCorruptError, match="cut short") as caught:
        Database.open(db_path)

    assert "No backup was found" in str(caught.value)


def test_errors_survive_pickling() -> None:
    errors: list[StoreError] = [
        DatabaseCorruptError("/x/office.duckdb", "cut short", "/x/backups/b.duckdb", START),
        BackupError("disk full"),
        RestoreError("no luck", "It is kept as /x/aside."),
    ]
    for error in errors:
        assert str(pickle.loads(pickle.dumps(error))) == str(error)


# -- the command line ---------------------------------------------------------
def test_soloist_backup_when_no_office_runs(
    office: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = office.summary()
    office.close()

    assert soloist("backup", "--json") == 0

    doc = json.loads(capsys.readouterr().out)
    assert Path(doc["backup"]).parent == backups_dir(office.path)
    assert doc["schema_version"] == LATEST_VERSION
    assert doc["row_counts"] == dict(expected.row_counts)
    assert counts(Path(doc["backup"])) == dict(expected.row_counts)


def test_soloist_backup_without_a_database_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert soloist("backup") == 1
    assert "nothing to back up" in capsys.readouterr().err


@pytest.mark.parametrize("damage", [cut_to_half, flip_data_block])
def test_restore_latest_brings_the_data_back_and_keeps_the_damaged_file(
    backed_up: tuple[Path, dict[str, int]],
    db_path: Path,
    damage: Callable[[Path], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    backup, expected = backed_up
    damage(db_path)
    wal = db_path.with_name(db_path.name + ".wal")
    wal.write_bytes(b"a stale log that must not be replayed onto the backup")
    damaged = fingerprint(db_path.parent)

    assert soloist("restore", "--latest", "--yes") == 0

    out = capsys.readouterr().out
    assert f"Restored {db_path} from {backup}" in out
    aside = sorted(db_path.parent.glob("office.duckdb.damaged-*"))
    assert [p.name for p in aside] == [p.name + s for p in aside[:1] for s in ("", ".wal")]
    assert f"The damaged file was kept as {aside[0]}." in out
    assert fingerprint(db_path.parent)[aside[0].name] == damaged[db_path.name]
    assert not wal.exists()
    with Database.open(db_path) as restored:
        assert dict(restored.summary().row_counts) == expected


def test_restore_asks_first_and_changes_nothing_without_a_yes(
    backed_up: tuple[Path, dict[str, int]],
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backup, _ = backed_up
    before = fingerprint(db_path.parent)
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))

    assert soloist("restore", str(backup)) == 1

    assert "Nothing was changed." in capsys.readouterr().out
    assert fingerprint(db_path.parent) == before


def test_restore_lists_backups_newest_first(
    office: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = stepping_clock(step=timedelta(hours=1))
    paths = [create_backup(office, clock).backup.path for _ in range(2)]

    assert soloist("restore", "--list") == 0

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in lines] == [str(p) for p in reversed(paths)]
    assert lines[0].startswith("2025-03-01 10:30:00 UTC")


def test_restore_without_backups_fails(
    office: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    office.close()
    assert soloist("restore", "--latest", "--yes") == 1
    assert "no backup" in capsys.readouterr().err


def test_restoring_over_a_sound_file_keeps_it_as_replaced(
    backed_up: tuple[Path, dict[str, int]], db_path: Path
) -> None:
    backup, expected = backed_up
    with Database.open(db_path) as database:
        add_conversation(database, 777)
    newer = db_path.read_bytes()

    result = restore_backup(db_path, backup, clock=fixed(START))

    assert not result.was_damaged
    assert [p.name for p in result.moved_aside] == [
        "office.duckdb.replaced-20250301T093000.000000Z"
    ]
    assert result.moved_aside[0].read_bytes() == newer
    assert counts(db_path) == expected


def test_a_damaged_backup_is_not_restored(
    backed_up: tuple[Path, dict[str, int]], db_path: Path
) -> None:
    backup, _ = backed_up
    cut_to_half(backup)
    before = fingerprint(db_path.parent)

    with pytest.raises(RestoreError, match="cannot be used") as caught:
        restore_backup(db_path, backup)

    assert "Nothing was changed." in str(caught.value)
    assert fingerprint(db_path.parent) == before


@pytest.mark.slow
def test_restore_refuses_while_another_process_holds_the_database(
    backed_up: tuple[Path, dict[str, int]], db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup, _ = backed_up
    with database_held_by_another_process(db_path) as holder:
        before = fingerprint(db_path.parent)

        assert soloist("restore", "--latest", "--yes") == 1
        with pytest.raises(DatabaseLockedError):
            restore_backup(db_path, backup)
        assert soloist("backup") == 1

        assert fingerprint(db_path.parent) == before
    err = capsys.readouterr().err
    assert f"in use by another Soloist process (pid {holder.pid})" in err
    assert holder.returncode == 0


def test_the_office_backs_up_when_due_and_on_demand(soloist_home: Path) -> None:
    from app.office import Office

    office = Office(soloist_home, engine_factory=lambda: None)  # type: ignore[arg-type,return-value]
    try:
        office.new_conversation("kept")
        first = office.backup_if_due()  # no backup yet: due
        assert first is not None and first.backup.path.exists()
        assert office.backup_if_due() is None  # one a day
        second = office.back_up_now()
        assert second.backup.path != first.backup.path
    finally:
        office.close()
    restored = Database.open_readonly(second.backup.path)
    try:
        assert restored.fetchone("SELECT count(*) FROM conversations") == (1,)
    finally:
        restored.close()
