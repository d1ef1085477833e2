"""``soloist automations``: see scheduled automations, their history, and run one by hand.

soloist automations list [--json]
soloist automations history AUTOMATION_ID [--limit N] [--json]
soloist automations run AUTOMATION_ID [--json]

These open the office database directly, so Soloist must be closed (DuckDB
lets one process hold the file). Because nothing else can be running then,
runs left ``claimed`` or ``running`` by a Soloist that died are marked
abandoned first, as start-up would. ``run`` is a manual run: a ledger row of
kind ``manual`` that leaves the schedule alone; it needs a runner registered
for the target's prefix (``make_runner`` is the seam).

Exit status: 0 done, 1 failed or refused, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app import paths

if TYPE_CHECKING:  # duckdb and APScheduler load only when a command runs
    from app.agents.automations import Automation, RunFn, RunRecord
    from app.memory.db import Database

EXIT_FAILED = 1


def make_runner(automation: Automation) -> RunFn | None:
    """The runner for an automation's target (a seam for tests): the registered one, if any."""
    from app.agents.automations import runner_for

    return runner_for(automation.target)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``automations`` and its subcommands to the ``soloist`` parser."""
    automations = subparsers.add_parser(
        "automations",
        help="scheduled automations: list, history, run now (with Soloist closed)",
        description="Scheduled automations in the office database. Soloist must not be running.",
    )
    sub = automations.add_subparsers(dest="automations_command", required=True)
    listing = sub.add_parser("list", help="every automation with its next and last run")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    history = sub.add_parser("history", help="the runs of one automation, newest first")
    history.add_argument("automation_id")
    history.add_argument("--limit", type=_positive, default=20, help="how many (default 20)")
    history.add_argument("--json", action="store_true", help="print one JSON document")
    run = sub.add_parser("run", help="run an automation now, outside its schedule")
    run.add_argument("automation_id")
    run.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    """Run one ``soloist automations`` subcommand; returns the exit status."""
    from app.agents.automations import AutomationError, Ledger
    from app.memory.db import Database
    from app.memory.errors import StoreError

    command = _SUBCOMMANDS[args.automations_command]
    try:
        db = Database.open(paths.db_path())
    except StoreError as exc:  # in use by a running Soloist, damaged, too new
        return _fail(str(exc))
    try:
        Ledger(db).abandon_unfinished()
        return command(db, args)
    except (StoreError, AutomationError) as exc:
        return _fail(str(exc))
    finally:
        db.close()


# -- subcommands ------------------------------------------------------------------
def _list(db: Database, args: argparse.Namespace) -> int:
    from app.agents.automations import AutomationStore, Ledger, next_run
    from app.memory.db import utc_now

    ledger, now = Ledger(db), utc_now()
    docs = []
    for automation in AutomationStore(db).list():
        upcoming = next_run(automation, ledger.last_slot(automation.id), now)
        docs.append(_automation_doc(automation, upcoming, ledger.last_run(automation.id)))
    if args.json:
        print(json.dumps(docs, indent=2, ensure_ascii=False))
        return 0
    if not docs:
        print("No automations.")
    for doc in docs:
        last = doc["last_run"]
        outcome = f"{last['state']} ({last['scheduled_for']})" if last else "never"
        state = "" if doc["enabled"] else " [disabled]"
        print(f"{doc['id']}  {doc['name']}{state}")
        print(f"    {doc['schedule']}, missed slots: {doc['policy']}, target {doc['target']}")
        print(f"    next run: {doc['next_run'] or '-'}; last run: {outcome}")
    return 0


def _history(db: Database, args: argparse.Namespace) -> int:
    from app.agents.automations import AutomationStore, Ledger

    AutomationStore(db).get(args.automation_id)  # refuses an unknown id
    records = Ledger(db).history(args.automation_id, args.limit)
    if args.json:
        print(json.dumps([_run_doc(r) for r in records], indent=2, ensure_ascii=False))
        return 0
    if not records:
        print("No runs yet.")
    for record in records:
        print(_run_line(record))
    return 0


def _run(db: Database, args: argparse.Namespace) -> int:
    from app.agents.automations import AutomationStore, Ledger, RunKind, RunState, run_slot
    from app.memory.db import utc_now

    automation = AutomationStore(db).get(args.automation_id)
    runner = make_runner(automation)
    if runner is None:
        kind = automation.target.partition(":")[0]
        return _fail(f"nothing here can run {kind!r} targets; start Soloist and run it there.")
    record = run_slot(Ledger(db), runner, automation, utc_now(), RunKind.MANUAL)
    assert record is not None  # a manual slot is new: its claim cannot be taken
    if args.json:
        print(json.dumps(_run_doc(record), indent=2, ensure_ascii=False))
    else:
        print(_run_line(record))
    return 0 if record.state is RunState.SUCCEEDED else EXIT_FAILED


_SUBCOMMANDS: dict[str, Callable[[Database, argparse.Namespace], int]] = {
    "list": _list,
    "history": _history,
    "run": _run,
}


# -- output -----------------------------------------------------------------------
def _when(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None


def _automation_doc(
    automation: Automation, upcoming: datetime | None, last: RunRecord | None
) -> dict[str, Any]:
    return {
        "id": automation.id,
        "name": automation.name,
        "target": automation.target,
        "schedule": automation.schedule.describe(),
        "policy": automation.policy.value,
        "enabled": automation.enabled,
        "next_run": _when(upcoming),
        "last_run": _run_doc(last) if last else None,
    }


def _run_doc(record: RunRecord) -> dict[str, Any]:
    return {
        "scheduled_for": _when(record.scheduled_for),
        "kind": record.kind.value,
        "state": record.state.value,
        "started_at": _when(record.started_at),
        "finished_at": _when(record.finished_at),
        "skipped_slots": record.skipped_slots,
        "first_skipped": _when(record.first_skipped),
        "skip_reason": record.skip_reason.value if record.skip_reason else None,
        "error": record.error,
    }


def _run_line(record: RunRecord) -> str:
    line = f"{_when(record.scheduled_for)}  {record.kind.value:9}  {record.state.value}"
    if record.skipped_slots:
        first = _when(record.first_skipped)
        reason = record.skip_reason.value if record.skip_reason else "?"
        line += f": {record.skipped_slots} slots from {first} ({reason})"
    if record.error:
        line += f": {record.error}"
    return line


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _fail(message: str) -> int:
    print(f"soloist: {message}", file=sys.stderr)
    return EXIT_FAILED


__all__ = ["EXIT_FAILED", "add_parser", "make_runner", "run"]
