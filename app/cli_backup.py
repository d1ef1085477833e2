"""``soloist backup`` and ``soloist restore``: the office database's backups.

soloist backup [--json]                   back up now (the office must not be running)
soloist restore --list                    the backups, newest first
soloist restore --latest | PATH [--yes]   put a backup in place of the database

While the office runs it holds the database, and DuckDB lets no other
process read it: both commands then refuse and change nothing. Restoring
keeps the current file aside (``office.duckdb.damaged-<stamp>`` or
``.replaced-<stamp>``) and asks first unless ``--yes``.

Exit status: 0 done, 1 failed, refused or not confirmed, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import paths

if TYPE_CHECKING:  # duckdb loads only when a command runs, not for every parser
    from app.memory.backup import BackupFile, BackupResult
    from app.memory.db import DatabaseSummary

EXIT_FAILED = 1


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``backup`` and ``restore`` to the ``soloist`` parser."""
    backup = subparsers.add_parser(
        "backup",
        help="back up the office database now (with Soloist closed)",
        description="Copy the office database into <data dir>/backups after checking the copy, "
        "then remove backups older than 14 days beyond the newest 3.",
    )
    backup.add_argument("--json", action="store_true", help="print one JSON document")
    restore = subparsers.add_parser(
        "restore",
        help="list the backups, or put one in place of the office database",
        description="Restore keeps the current database file aside (never deletes it) and "
        "refuses while Soloist is running.",
    )
    which = restore.add_mutually_exclusive_group(required=True)
    which.add_argument("--list", action="store_true", help="list the backups, newest first")
    which.add_argument("--latest", action="store_true", help="restore the newest backup")
    which.add_argument("path", nargs="?", default=None, help="a backup file to restore")
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace) -> int:
    """Run ``soloist backup`` or ``soloist restore``; returns the exit status."""
    db_path = paths.db_path()
    if args.command == "backup":
        return _backup(db_path, as_json=args.json)
    if args.list:
        return _list(db_path)
    return _restore(db_path, latest=args.latest, path=args.path, assume_yes=args.yes)


def _fail(message: str) -> int:
    print(f"soloist: {message}", file=sys.stderr)
    return EXIT_FAILED


# --- backup ------------------------------------------------------------------


def _backup(db_path: Path, *, as_json: bool) -> int:
    from app.memory.backup import back_up
    from app.memory.db import Database
    from app.memory.errors import StoreError

    if not db_path.exists():
        return _fail(f"there is no office database at {db_path} yet; nothing to back up.")
    try:
        with Database.open_readonly(db_path) as db:
            result = back_up(db)
    except StoreError as exc:
        return _fail(str(exc))
    if as_json:
        print(json.dumps(_result_doc(result), indent=2))
    else:
        print(
            f"Backed up {db_path} to {result.backup.path} ({_size(result.size_bytes)}, "
            f"{_rows(result.summary)}, checked) in {result.elapsed_ms:.0f} ms."
        )
        for removed in result.removed:
            print(f"Removed old backup {removed}.")
    return 0


def _result_doc(result: BackupResult) -> dict[str, Any]:
    return {
        "backup": str(result.backup.path),
        "created_at": result.backup.created_at.isoformat(),
        "size_bytes": result.size_bytes,
        "schema_version": result.summary.schema_version,
        "row_counts": dict(result.summary.row_counts),
        "elapsed_ms": round(result.elapsed_ms, 1),
        "removed": [str(path) for path in result.removed],
    }


# --- restore -----------------------------------------------------------------


def _list(db_path: Path) -> int:
    from app.memory.backup import backups_dir, list_backups

    backups = list_backups(db_path)
    if not backups:
        print(f"No backups in {backups_dir(db_path)}.")
        return 0
    for backup in backups:
        print(f"{_when(backup)}  {_size(backup.size_bytes):>10}  {backup.path}")
    return 0


def _restore(db_path: Path, *, latest: bool, path: str | None, assume_yes: bool) -> int:
    from app.memory.backup import backups_dir, restore_backup
    from app.memory.errors import StoreError

    source = _chosen(db_path, latest, path)
    if source is None:
        return _fail(f"there is no backup in {backups_dir(db_path)} to restore.")
    if not source.is_file():
        return _fail(f"there is no backup file at {source}.")
    refusal = _in_use(db_path)
    if refusal is not None:
        return _fail(refusal)
    if not assume_yes and not _confirmed(db_path, source):
        print("Nothing was changed.")
        return EXIT_FAILED
    try:
        result = restore_backup(db_path, source)
    except StoreError as exc:
        return _fail(str(exc))
    print(f"Restored {db_path} from {source} ({_rows(result.summary)}).")
    for kept in result.moved_aside:
        state = "damaged" if result.was_damaged else "previous"
        print(f"The {state} file was kept as {kept}.")
    return 0


def _chosen(db_path: Path, latest: bool, path: str | None) -> Path | None:
    from app.memory.backup import newest_backup

    if not latest:
        return Path(path).expanduser() if path else None
    newest = newest_backup(db_path)
    return newest.path if newest else None


def _in_use(db_path: Path) -> str | None:
    """Why the database cannot be replaced now (the running office holds it), or None."""
    from app.memory.db import inspect_file
    from app.memory.errors import DatabaseLockedError, StoreError

    if not db_path.exists():
        return None
    try:
        inspect_file(db_path, full_scan=False)
    except DatabaseLockedError as exc:
        return str(exc)
    except StoreError:
        return None  # damaged: that is what a restore is for
    return None


def _confirmed(db_path: Path, source: Path) -> bool:
    question = (
        f"Replace {db_path} with the backup {source}? The current file is kept aside, "
        "not deleted. [y/N] "
    )
    try:
        answer = input(question)
    except EOFError:
        print()
        return False
    return answer.strip().lower() in {"y", "yes"}


# --- formatting --------------------------------------------------------------


def _when(backup: BackupFile) -> str:
    return f"{backup.created_at:%Y-%m-%d %H:%M:%S} UTC"


def _rows(summary: DatabaseSummary) -> str:
    return (
        f"schema v{summary.schema_version}, {summary.total_rows:,} rows in "
        f"{len(summary.row_counts)} tables"
    )


def _size(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"
