"""External systems for the outbox tests, and the child process the fault tests kill.

- :class:`RecordingSystem`: an in-memory external system (a dict of applied
  idempotency keys). ``execute`` applies once per key; ``reconcile`` looks
  in the dict. Failures are injected per call.
- :class:`FileLedger`: the same, persisted in a file with ``fsync`` after
  every append: an effect outside the database that survives SIGKILL.

Run as a script (``python tests/outbox_child.py DB LEDGER PLAN``), it opens
the office database, proposes and approves the actions of the plan (a JSON
file) against a :class:`FileLedger`, executes them, and announces every
checkpoint on stdout (``CHECKPOINT <point>``) then waits for a line on
stdin before going on: the parent SIGKILLs it at the checkpoint it chose.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from app.integrations.base import (  # noqa: E402
    Action,
    ActionOutcome,
    JsonObject,
    PreparedAction,
    Risk,
)


def prepare_note(name: str, risk: Risk) -> Callable[[JsonObject], PreparedAction]:
    """A ``prepare`` that fixes the idempotency key (``key``) in the payload."""

    def prepare(args: JsonObject) -> PreparedAction:
        if not isinstance(args.get("text"), str):
            from app.integrations.errors import ActionError

            raise ActionError("text is required")
        payload = dict(args)
        payload.setdefault("key", uuid.uuid4().hex)
        key = str(payload["key"])
        return PreparedAction(name, "acct", payload, f"note: {args['text']}", risk, key)

    return prepare


@dataclass
class RecordingSystem:
    """An external system in memory: applied keys and their payloads."""

    applied: dict[str, JsonObject] = field(default_factory=dict)
    calls: int = 0
    fail_before: list[Exception] = field(default_factory=list)  # raised before applying
    fail_after: list[Exception] = field(default_factory=list)  # applied, then raised
    reconcile_errors: list[Exception] = field(default_factory=list)
    deliveries: dict[str, int] = field(default_factory=dict)

    def action(self, name: str = "crm.add_note", risk: Risk = Risk.LOW) -> Action:
        return Action(
            name, "add a note", {"type": "object"}, risk,
            prepare_note(name, risk), self.execute, self.reconcile,
        )  # fmt: skip

    def execute(self, prepared: PreparedAction) -> ActionOutcome:
        self.calls += 1
        if self.fail_before:
            raise self.fail_before.pop(0)
        key = prepared.idempotency_key
        if key not in self.applied:
            self.applied[key] = prepared.payload
            self.deliveries[key] = self.deliveries.get(key, 0) + 1
        if self.fail_after:
            raise self.fail_after.pop(0)
        return ActionOutcome(True, "note added", external_id=f"note-{key}")

    def reconcile(self, prepared: PreparedAction) -> ActionOutcome | None:
        if self.reconcile_errors:
            raise self.reconcile_errors.pop(0)
        key = prepared.idempotency_key
        if key in self.applied:
            return ActionOutcome(True, "note is there", external_id=f"note-{key}")
        return None


class FileLedger:
    """An external system in a file: one line per delivery, fsynced.

    ``execute`` does NOT deduplicate (like SMTP): a second call with the same
    key is a second delivery, so the fault tests see any duplicate.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def action(self, name: str = "ledger.send", risk: Risk = Risk.MEDIUM) -> Action:
        return Action(
            name, "deliver a line", {"type": "object"}, risk,
            prepare_note(name, risk), self.execute, self.reconcile,
        )  # fmt: skip

    def execute(self, prepared: PreparedAction) -> ActionOutcome:
        line = json.dumps({"key": prepared.idempotency_key}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return ActionOutcome(True, "delivered", external_id=prepared.idempotency_key)

    def reconcile(self, prepared: PreparedAction) -> ActionOutcome | None:
        if prepared.idempotency_key in self.deliveries():
            return ActionOutcome(True, "in the ledger", external_id=prepared.idempotency_key)
        return None

    def deliveries(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        if not self.path.exists():
            return counts
        for line in self.path.read_text().splitlines():
            if line.strip():
                key = json.loads(line)["key"]
                counts[key] = counts.get(key, 0) + 1
        return counts


def announce(point: str) -> None:
    """Tell the parent where we are and wait for its go (it may SIGKILL us instead)."""
    print(f"CHECKPOINT {point}", flush=True)
    if not sys.stdin.readline():
        sys.exit(3)  # the parent went away


def run_child(db_path: Path, ledger_path: Path, plan_path: Path) -> None:
    """Start like the office: recover, then propose, approve and execute the plan."""
    from app.agents.autonomy import Autonomy, AutonomyStore, Owner
    from app.agents.outbox import Outbox
    from app.memory.db import Database

    plan = json.loads(plan_path.read_text())
    ledger = FileLedger(ledger_path)
    action = ledger.action()
    with Database.open(db_path) as db:
        outbox = Outbox(db, lambda account, name: action, AutonomyStore(db), checkpoint=announce)
        outbox.recover()
        ids = []
        for item in plan:
            prepared = action.prepare({"text": item["text"], "key": item["key"]})
            level = Autonomy[item["level"]]
            ids.append(outbox.propose("agent-f", "run-f", prepared, (), (), level).id)
        for item, action_id in zip(plan, ids, strict=True):
            if item["approve"]:
                outbox.approve(action_id, Owner.at_cli("fault-test"))
        outbox.execute_approved()
    print("FINISHED", flush=True)


if __name__ == "__main__":
    run_child(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
