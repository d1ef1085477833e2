"""Backups of the office database, their retention, and restoring one.

A backup is a checkpointed copy of the file, taken by whoever holds it: the
office, or the CLI when no office runs (DuckDB lets no other process even
read the file while it is open). Under the database lock, inside one
(read-only) transaction, DuckDB checkpoints (the WAL is folded into the
file and removed), the row counts of that snapshot are read, and the file's
bytes are copied: no other thread can commit meanwhile, so the copy holds
committed transactions only. The copy is then checked through a read-only
connection (every block read, so DuckDB verifies each checksum; the same
schema version and row counts) and only then moved into place atomically
as ``<data dir>/backups/office-<UTC stamp>.duckdb``.

Why not ``ATTACH`` + ``COPY FROM DATABASE``: with DuckDB 1.5.5 it copies the
tables in no fixed order, so with our foreign keys it failed 6 times in 40
and left the connection in an aborted transaction. The byte copy keeps
everything (indexes, extension tables), is ~50x faster, and a damaged
block in the office file fails the backup's check instead of replacing a
good backup through retention.

Restoring never deletes: the current file (and its WAL) is moved aside as
``office.duckdb.damaged-<stamp>`` (``.replaced-<stamp>`` when it was sound)
and a checked copy of the backup is moved into its place.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from app.memory.db import DatabaseSummary, inspect_file, utc_now
from app.memory.errors import (
    BackupError,
    DatabaseLockedError,
    DatabaseOpenError,
    QueryError,
    RestoreError,
    StoreError,
)
from app.memory.migrations import LATEST_VERSION

if TYPE_CHECKING:
    from app.memory.db import Database

log = logging.getLogger("soloist.memory")

BACKUPS_DIR = "backups"
_STAMP = "%Y%m%dT%H%M%S.%fZ"
_STAMP_PATTERN = r"(\d{8}T\d{6}\.\d{6}Z)"

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class BackupPolicy:
    """When to back up and which backups to keep.

    Backups younger than ``keep_days`` are kept, and so are the newest
    ``keep_count`` whatever their age (an office left closed for a month
    still has its last good copies).
    """

    interval: timedelta = timedelta(days=1)
    keep_days: int = 14
    keep_count: int = 3

    def __post_init__(self) -> None:
        if self.interval <= timedelta(0) or self.keep_days < 0 or self.keep_count < 1:
            raise ValueError(f"invalid backup policy: {self}")

    def is_due(self, now: datetime, last: datetime | None) -> bool:
        """Whether a backup is due at ``now``, the newest being taken at ``last``."""
        return last is None or now - last >= self.interval

    def to_remove(self, backups: Sequence[BackupFile], now: datetime) -> list[BackupFile]:
        """The backups this policy lets go at ``now`` (timezone-aware), oldest last."""
        newest_first = sorted(backups, key=lambda b: b.created_at, reverse=True)
        young = timedelta(days=self.keep_days)
        return [
            backup
            for rank, backup in enumerate(newest_first)
            if rank >= self.keep_count and now - backup.created_at >= young
        ]


@dataclass(frozen=True, slots=True)
class BackupFile:
    """A backup in the backups folder; ``created_at`` (UTC) comes from its name."""

    path: Path
    created_at: datetime

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What ``create_backup`` made and checked, and what retention removed."""

    backup: BackupFile
    summary: DatabaseSummary
    size_bytes: int
    elapsed_ms: float
    removed: tuple[Path, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What ``restore_backup`` put in place and where the previous file went."""

    restored_from: Path
    summary: DatabaseSummary
    moved_aside: tuple[Path, ...]
    was_damaged: bool


# -- the backups folder ---------------------------------------------------
def backups_dir(db_path: Path) -> Path:
    """The folder of the backups of ``db_path``: ``backups`` beside it."""
    return db_path.parent / BACKUPS_DIR


def list_backups(db_path: Path) -> list[BackupFile]:
    """The backups of ``db_path``, newest first (unfinished ``.tmp`` ones excluded)."""
    folder = backups_dir(db_path)
    if not folder.is_dir():
        return []
    pattern = re.compile(rf"{re.escape(db_path.stem)}-{_STAMP_PATTERN}\.duckdb")
    found = []
    for entry in folder.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and entry.is_file():
            stamp = datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC)
            found.append(BackupFile(entry, stamp))
    return sorted(found, key=lambda b: b.created_at, reverse=True)


def newest_backup(db_path: Path) -> BackupFile | None:
    """The newest backup of ``db_path``, or None."""
    backups = list_backups(db_path)
    return backups[0] if backups else None


def backup_due(db_path: Path, now: datetime, policy: BackupPolicy | None = None) -> bool:
    """Whether ``policy`` wants a new backup of ``db_path`` at ``now``."""
    newest = newest_backup(db_path)
    return (policy or BackupPolicy()).is_due(now, newest.created_at if newest else None)


def prune_backups(db_path: Path, now: datetime, policy: BackupPolicy | None = None) -> list[Path]:
    """Remove the backups ``policy`` lets go; return their paths."""
    removed = []
    for backup in (policy or BackupPolicy()).to_remove(list_backups(db_path), now):
        backup.path.unlink(missing_ok=True)
        removed.append(backup.path)
    if removed:
        log.info("retention removed %d old backups", len(removed))
    return removed


# -- backing up -------------------------------------------------------------
def maybe_backup(
    db: Database, policy: BackupPolicy | None = None, clock: Clock = utc_now
) -> BackupResult | None:
    """Back up and prune when ``policy`` says a backup is due; for the office's schedule."""
    policy = policy or BackupPolicy()
    if not backup_due(db.path, clock(), policy):
        return None
    return back_up(db, policy, clock)


def back_up(
    db: Database, policy: BackupPolicy | None = None, clock: Clock = utc_now
) -> BackupResult:
    """Back up now (on demand), then apply retention."""
    result = create_backup(db, clock)
    removed = prune_backups(db.path, clock(), policy)
    return BackupResult(
        result.backup, result.summary, result.size_bytes, result.elapsed_ms, tuple(removed)
    )


def create_backup(db: Database, clock: Clock = utc_now) -> BackupResult:
    """Copy ``db`` into the backups folder, check the copy, move it into place.

    Call it outside any transaction with changes (DuckDB cannot checkpoint
    then); it waits for other threads' transactions to end and holds theirs
    back only while it checkpoints and copies. Raises ``BackupError``; then
    the database is as it was and no earlier backup was touched.
    """
    started = time.perf_counter()
    created_at = clock().astimezone(UTC)
    folder = backups_dir(db.path)
    final = folder / f"{db.path.stem}-{created_at.strftime(_STAMP)}.duckdb"
    temporary = final.with_name(final.name + ".tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        expected = _copy_snapshot(db, temporary)
        _check_copy(temporary, expected)
        _fsync(temporary)
        os.replace(temporary, final)
        _fsync_dir(folder)
    except OSError as exc:
        raise BackupError(f"{exc.strerror or exc} ({exc.filename or folder})") from exc
    finally:
        _remove_with_wal(temporary)
    elapsed_ms = (time.perf_counter() - started) * 1000
    size = final.stat().st_size
    log.info("backed up %s to %s (%d bytes) in %.1f ms", db.path.name, final.name, size, elapsed_ms)
    return BackupResult(BackupFile(final, created_at), expected, size, elapsed_ms)


def _copy_snapshot(db: Database, target: Path) -> DatabaseSummary:
    """Checkpoint and copy the file (and any WAL) while no one else can commit.

    A read-only ``Database`` cannot checkpoint, so a WAL left beside it is
    copied too and folded into the copy afterwards.
    """
    try:
        with db.transaction():
            db.execute("CHECKPOINT")
            expected = db.summary()
            shutil.copyfile(db.path, target)
            wal = _wal(db.path)
            copied_wal = wal.exists()
            if copied_wal:
                shutil.copyfile(wal, _wal(target))
    except StoreError as exc:
        raise BackupError(
            f"the database could not be checkpointed and copied ({_reason(exc)})"
        ) from exc
    if copied_wal:
        _fold_wal(target)
    return expected


def _fold_wal(path: Path) -> None:
    """Check the copied WAL into the copy so the backup is one file."""
    try:
        conn = duckdb.connect(str(path))
        try:
            conn.execute("CHECKPOINT")
        finally:
            conn.close()
    except duckdb.Error as exc:
        raise BackupError(f"the copy's write-ahead log could not be applied ({exc})") from exc


def _check_copy(copy: Path, expected: DatabaseSummary) -> None:
    """Read the copy through; it must hold what the snapshot held."""
    try:
        found = inspect_file(copy, full_scan=True)
    except StoreError as exc:
        raise BackupError(
            f"the copy failed its check ({_reason(exc)}), so the office database itself "
            "may be damaged"
        ) from exc
    if found != expected:
        raise BackupError(
            f"the copy holds schema v{found.schema_version} and {found.total_rows} rows, "
            f"the database v{expected.schema_version} and {expected.total_rows}"
        )


# -- restoring -------------------------------------------------------------
def restore_backup(db_path: Path, source: Path, clock: Clock = utc_now) -> RestoreResult:
    """Put a checked copy of ``source`` in place of ``db_path``, keeping the old file aside.

    Raises ``DatabaseLockedError`` while another process (the office) holds
    the file, and ``RestoreError`` when the backup is unusable; in both
    cases nothing was changed.
    """
    if source.resolve() == db_path.resolve():
        raise RestoreError("the backup to restore is the office database itself")
    damaged = _current_is_damaged(db_path)
    incoming = db_path.with_name(db_path.name + ".restoring")
    try:
        shutil.copyfile(source, incoming)
        _fsync(incoming)
        summary = _check_backup(incoming, source)  # the very bytes that go in place
    except BaseException as exc:
        _remove_with_wal(incoming)
        if isinstance(exc, OSError):
            raise RestoreError(f"the backup could not be copied ({exc.strerror or exc})") from exc
        raise
    aside = db_path.with_name(
        f"{db_path.name}.{'damaged' if damaged else 'replaced'}-{clock().astimezone(UTC):{_STAMP}}"
    )
    moved = _move_aside(db_path, aside)
    _put_in_place(incoming, db_path, moved)
    log.info("restored %s from %s; previous file kept as %s", db_path.name, source.name, aside.name)
    return RestoreResult(source, summary, moved, damaged)


def _current_is_damaged(db_path: Path) -> bool:
    """Whether the current file fails its check; raises while another process holds it."""
    if not db_path.exists():
        return False
    try:
        inspect_file(db_path)
    except DatabaseLockedError:
        raise
    except StoreError:
        return True
    return False


def _check_backup(copy: Path, source: Path) -> DatabaseSummary:
    """The summary of ``copy`` of the backup ``source``, read through; it must be openable."""
    try:
        summary = inspect_file(copy, full_scan=True)
    except StoreError as exc:
        raise RestoreError(f"the backup {source} cannot be used: {_reason(exc)}") from exc
    if summary.schema_version > LATEST_VERSION:
        raise RestoreError(
            f"the backup {source} has schema version {summary.schema_version}, newer than "
            f"this Soloist's {LATEST_VERSION}; update Soloist to restore it"
        )
    return summary


def _move_aside(db_path: Path, aside: Path) -> tuple[Path, ...]:
    """Move the file and its WAL aside (a stale WAL would be replayed onto the backup)."""
    moved: list[Path] = []
    try:
        for current, kept in ((db_path, aside), (_wal(db_path), _wal(aside))):
            if current.exists():
                os.replace(current, kept)
                moved.append(kept)
    except OSError as exc:
        _move_back(db_path, aside, moved)
        raise RestoreError(
            f"the current file could not be moved aside ({exc.strerror or exc})"
        ) from exc
    return tuple(moved)


def _put_in_place(incoming: Path, db_path: Path, moved: tuple[Path, ...]) -> None:
    try:
        os.replace(incoming, db_path)
        _fsync_dir(db_path.parent)
    except OSError as exc:
        aside = moved[0] if moved else db_path
        _move_back(db_path, aside, list(moved))
        _remove_with_wal(incoming)
        raise RestoreError(
            f"the backup could not be moved into place ({exc.strerror or exc})"
        ) from exc


def _move_back(db_path: Path, aside: Path, moved: list[Path]) -> None:
    """Undo ``_move_aside`` after a failure; a file that cannot go back stays where it is."""
    for kept, original in ((aside, db_path), (_wal(aside), _wal(db_path))):
        if kept in moved:
            try:
                os.replace(kept, original)
            except OSError:
                raise RestoreError(
                    "the previous file could not be moved back", f"It is kept as {kept}."
                ) from None


def _reason(exc: StoreError) -> str:
    """What went wrong, without the advice the error gives on its own."""
    return exc.detail if isinstance(exc, DatabaseOpenError | QueryError) else str(exc)


# -- files -----------------------------------------------------------------
def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _remove_with_wal(path: Path) -> None:
    for leftover in (path, _wal(path)):
        leftover.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; Windows has no directory handles to sync."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
