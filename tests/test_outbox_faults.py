"""SIGKILL at every crash point of the outbox, many times: exactly once, or shown as in doubt.

Each run starts ``tests/outbox_child.py`` on a real DuckDB file: it
recovers (as the office does at start-up), proposes three actions (one to
be approved by the owner, one auto-approved by autonomy 3, one left
waiting), approves, and executes them against a :class:`FileLedger` (an
external system in a file, fsynced, that does NOT deduplicate: a repeated
call is a second delivery). The parent SIGKILLs the child at the n-th time
it reaches the chosen checkpoint, then reopens the file, runs
``recover()`` and ``execute_approved()`` and checks, over everything so far:
no delivery twice, nothing delivered that the owner or the level did not
approve, every approved action delivered once (DONE) or IN_DOUBT (pending
for the owner), and nothing lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from outbox_child import FileLedger

from app.agents.autonomy import AutonomyStore
from app.agents.outbox import Outbox
from app.agents.outbox_states import ActionState
from app.memory.db import Database

CHILD = Path(__file__).with_name("outbox_child.py")
RUNS = 20
# How often each point is reached in one run (at least): n cycles through 1..max.
POINTS = {
    "after_propose": 3, "after_approve": 2, "before_call": 2, "after_call": 2, "after_done": 2,
}  # fmt: skip
DEADLINE_S = 60


@dataclass
class Tally:
    runs: int = 0
    killed: int = 0
    approved: int = 0
    delivered_once: int = 0
    in_doubt: int = 0
    duplicates: int = 0
    unapproved_deliveries: int = 0


def write_plan(path: Path, run: int) -> dict[str, bool]:
    """Three actions for one run; returns key -> approved."""
    plan = [
        {"text": f"run {run} owner", "key": uuid.uuid4().hex, "level": "ASK", "approve": True},
        {"text": f"run {run} auto", "key": uuid.uuid4().hex, "level": "SILENT", "approve": False},
        {"text": f"run {run} wait", "key": uuid.uuid4().hex, "level": "ASK", "approve": False},
    ]
    path.write_text(json.dumps(plan))
    return {str(item["key"]): item["approve"] is True or item["level"] == "SILENT" for item in plan}


def run_child_until(args: list[str], point: str, nth: int) -> bool:
    """Run the child, SIGKILL it at the ``nth`` time it reaches ``point``; True if killed."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    seen = 0
    try:
        for line in child.stdout:
            if line.strip() == f"CHECKPOINT {point}":
                seen += 1
                if seen == nth:
                    os.kill(child.pid, signal.SIGKILL)
                    child.wait(DEADLINE_S)
                    return True
            if line.startswith("CHECKPOINT"):
                child.stdin.write("go\n")
                child.stdin.flush()
        child.wait(DEADLINE_S)
        assert child.returncode == 0, child.stderr.read() if child.stderr else ""
        return False
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(DEADLINE_S)
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def check(db_path: Path, ledger: FileLedger, approved_keys: set[str], tally: Tally) -> None:
    """Restart, recover, execute; then the invariants over every action so far."""
    action = ledger.action()
    with Database.open(db_path) as db:
        outbox = Outbox(db, lambda account, name: action, AutonomyStore(db))
        outbox.recover()
        outbox.execute_approved()
        records = {r.idempotency_key: r for r in outbox.list()}
        pending = {r.id for r in outbox.pending()}
    deliveries = Counter(ledger.deliveries())
    tally.duplicates = sum(1 for n in deliveries.values() if n > 1)
    tally.unapproved_deliveries = sum(1 for key in deliveries if key not in approved_keys)
    tally.approved = tally.delivered_once = tally.in_doubt = 0
    for key, record in records.items():
        allowed = record.approval is not None and record.approval.allows_execution
        assert allowed is (key in approved_keys) or record.state is ActionState.PROPOSED
        if key not in approved_keys:
            assert record.state is ActionState.PROPOSED and deliveries[key] == 0
            continue
        if record.state is ActionState.PROPOSED:  # killed before the owner's approval
            assert deliveries[key] == 0
            continue
        tally.approved += 1
        if record.state is ActionState.IN_DOUBT:
            tally.in_doubt += 1
            assert record.id in pending
        else:
            assert record.state is ActionState.DONE, record
            assert deliveries[key] == 1
            tally.delivered_once += 1
    assert set(deliveries) <= set(records)  # nothing delivered that the outbox lost


@pytest.mark.slow
@pytest.mark.parametrize("point", list(POINTS))
def test_sigkill_at_every_checkpoint(point: str, tmp_path: Path) -> None:
    db_path, ledger = tmp_path / "office.duckdb", FileLedger(tmp_path / "ledger.jsonl")
    Database.open(db_path).close()
    approved_keys: set[str] = set()
    tally = Tally()
    for run in range(RUNS):
        plan = tmp_path / "plan.json"
        keys = write_plan(plan, run)
        approved_keys |= {key for key, ok in keys.items() if ok}
        nth = run % POINTS[point] + 1
        tally.killed += run_child_until([str(db_path), str(ledger.path), str(plan)], point, nth)
        tally.runs += 1
        check(db_path, ledger, approved_keys, tally)
    print(f"\n{point}: {tally}")
    assert tally.killed == RUNS
    assert tally.duplicates == 0 and tally.unapproved_deliveries == 0
    assert tally.delivered_once + tally.in_doubt == tally.approved > 0
