"""What the Automations section reads and does, as plain functions of the office (no Qt).

Automations and their ledger are read straight from their tables, so the
list shows even while the agents start. Switching one on or off goes
through the ``AutomationStore`` and then wakes the scheduler: each tick
reads the enabled automations from the store, so the change holds from the
next tick, and waking makes that tick now. Re-enabling moves the
automation's ``active_since`` to now (the store's rule), so slots that
passed while it was off are not treated as missed. "Run now" is the
scheduler's manual run: a ledger row of kind ``manual``, outside the
schedule.

An automation made from an agent definition's schedule line is marked
``managed``: at start the runtime makes those match the definitions again
(``AgentRuntime.sync_schedules``), so switching one off lasts until
Soloist restarts unless the line is removed from the definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.agents.automations import (
    Automation,
    AutomationError,
    AutomationStore,
    Ledger,
    MissedSlotPolicy,
    RunRecord,
    next_run,
)
from app.agents.errors import AgentError
from app.agents.runtime import MANAGED_BY
from app.memory.db import utc_now
from app.office import Office
from app.ui.sections.agents_ops import runtime

__all__ = [
    "HISTORY_ROWS",
    "POLICY_NAMES",
    "AutomationCommandError",
    "AutomationRow",
    "automations",
    "history",
    "run_now",
    "set_enabled",
]

HISTORY_ROWS = 50
POLICY_NAMES = {
    MissedSlotPolicy.RUN_ONCE: "Run the latest missed slot once",
    MissedSlotPolicy.RUN_EACH: "Run every missed slot",
    MissedSlotPolicy.SKIP: "Skip missed slots",
}


class AutomationCommandError(AgentError):
    """An automation could not be changed or run: the automation package's reason."""


@dataclass(frozen=True, slots=True)
class AutomationRow:
    """One automation as the section shows it."""

    id: str
    name: str
    target: str
    schedule: str
    policy: MissedSlotPolicy
    enabled: bool
    managed: bool  # made from an agent definition's schedule line
    next_run: datetime | None  # None: off, or the schedule has ended
    last_run: RunRecord | None  # the latest ledger row that is not a skip


def automations(office: Office, now: datetime | None = None) -> list[AutomationRow]:
    """Every automation, by name, with its next slot and last outcome."""
    now = now or utc_now()
    ledger = Ledger(office.db)
    return [_row(a, ledger, now) for a in AutomationStore(office.db).list()]


def _row(automation: Automation, ledger: Ledger, now: datetime) -> AutomationRow:
    return AutomationRow(
        id=automation.id,
        name=automation.name,
        target=automation.target,
        schedule=automation.schedule.describe(),
        policy=automation.policy,
        enabled=automation.enabled,
        managed=automation.payload.get("managed_by") == MANAGED_BY,
        next_run=next_run(automation, ledger.last_slot(automation.id), now),
        last_run=ledger.last_run(automation.id),
    )


def history(office: Office, automation_id: str, limit: int = HISTORY_ROWS) -> list[RunRecord]:
    """The automation's ledger rows, newest slot first (skips included)."""
    return Ledger(office.db).history(automation_id, limit)


def set_enabled(office: Office, automation_id: str, enabled: bool) -> None:
    """Switch an automation on or off and have the scheduler tick now."""
    scheduler = runtime(office).scheduler
    try:
        scheduler.store.set_enabled(automation_id, enabled)
    except AutomationError as exc:
        raise AutomationCommandError(str(exc)) from exc
    scheduler.wake()


def run_now(office: Office, automation_id: str) -> None:
    """Start a manual run; the ledger records it (the section shows it on its next reload)."""
    try:
        runtime(office).scheduler.run_now(automation_id)
    except AutomationError as exc:
        raise AutomationCommandError(str(exc)) from exc
