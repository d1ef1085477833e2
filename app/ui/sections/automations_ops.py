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
Soloist restarts unless the line is removed from the definition. Such an
automation is stored as "<agent id>: <line>"; the section names it after
the agent and its schedule in words ("Daily briefing — every day at 08:00").

The automations package loads APScheduler, so it is imported inside the
functions that use it (on the bridge's worker thread), not with the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.agents.errors import AgentError
from app.memory.db import utc_now
from app.office import Office
from app.ui.sections.agents_ops import runtime
from app.ui.sections.run_text import agent_title, interval_words, schedule_words

if TYPE_CHECKING:  # the automations package loads APScheduler: imported where it is used
    from app.agents.automations import Automation, Ledger, MissedSlotPolicy, RunRecord, Schedule

__all__ = [
    "HISTORY_ROWS",
    "POLICY_NAMES",
    "AutomationCommandError",
    "AutomationRow",
    "agent_names",
    "automation_title",
    "automations",
    "history",
    "run_now",
    "schedule_text",
    "set_enabled",
]

HISTORY_ROWS = 50
HALF_YEAR = timedelta(days=182)  # a zone that agrees with the local one now and then agrees
MANAGED_BY = "agent-definition"  # ``app.agents.runtime.MANAGED_BY``, without loading the runtime
POLICY_NAMES: Mapping[str, str] = {  # by ``MissedSlotPolicy`` value (a StrEnum: either works)
    "run_once": "Run the latest missed slot once",
    "run_each": "Run every missed slot",
    "skip": "Skip missed slots",
}


class AutomationCommandError(AgentError):
    """An automation could not be changed or run: the automation package's reason."""


@dataclass(frozen=True, slots=True)
class AutomationRow:
    """One automation as the section shows it."""

    id: str
    name: str  # in words: "Daily briefing — every day at 08:00" for an agent's schedule line
    stored_name: str  # as stored: "daily-briefing: 0 8 * * *"
    target: str
    schedule: str  # in words, with its zone: "every day at 08:00 (UTC)"
    cron: str  # as the store describes it: "cron 0 8 * * * (UTC)"
    policy: MissedSlotPolicy
    enabled: bool
    managed: bool  # made from an agent definition's schedule line
    next_run: datetime | None  # None: off, or the schedule has ended
    last_run: RunRecord | None  # the latest ledger row that is not a skip


def agent_names(office: Office) -> dict[str, str]:
    """Agent id -> the name its definition gives (empty while the agents start)."""
    agents = office.agents
    if agents is None:
        return {}
    return {definition.id: definition.name for definition in agents.definitions}


def is_local_zone(name: str, now: datetime) -> bool:
    """True when ``name`` keeps this machine's clock, summer and winter (a guess by offsets)."""
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return all(
        moment.astimezone(zone).utcoffset() == moment.astimezone().utcoffset()
        for moment in (now, now + HALF_YEAR)
    )


def schedule_text(schedule: Schedule, *, zone: bool = True, now: datetime | None = None) -> str:
    """A cron or interval schedule in words (the cron text when it is not a common form).

    ``zone``: name the cron's time zone, unless it keeps the machine's own clock.
    """
    from app.agents.automations import CronSchedule

    if isinstance(schedule, CronSchedule):
        named = zone and not is_local_zone(schedule.timezone, now or utc_now())
        return schedule_words(schedule.expression, schedule.timezone if named else None)
    return interval_words(schedule.every.total_seconds())


def automation_title(automation: Automation, names: Mapping[str, str]) -> str:
    """The owner's name for an automation; an agent's schedule line as "<agent> — <when>"."""
    if automation.payload.get("managed_by") != MANAGED_BY:
        return automation.name
    agent_id = automation.target.removeprefix("agent:")
    agent = names.get(agent_id) or agent_title(agent_id)
    return f"{agent} — {schedule_text(automation.schedule, zone=False)}"


def automations(office: Office, now: datetime | None = None) -> list[AutomationRow]:
    """Every automation, by name, with its next slot and last outcome."""
    from app.agents.automations import AutomationStore, Ledger

    now = now or utc_now()
    ledger = Ledger(office.db)
    names = agent_names(office)
    return [_row(a, ledger, now, names) for a in AutomationStore(office.db).list()]


def _row(
    automation: Automation, ledger: Ledger, now: datetime, names: Mapping[str, str]
) -> AutomationRow:
    from app.agents.automations import next_run

    return AutomationRow(
        id=automation.id,
        name=automation_title(automation, names),
        stored_name=automation.name,
        target=automation.target,
        schedule=schedule_text(automation.schedule, now=now),
        cron=automation.schedule.describe(),
        policy=automation.policy,
        enabled=automation.enabled,
        managed=automation.payload.get("managed_by") == MANAGED_BY,
        next_run=next_run(automation, ledger.last_slot(automation.id), now),
        last_run=ledger.last_run(automation.id),
    )


def history(office: Office, automation_id: str, limit: int = HISTORY_ROWS) -> list[RunRecord]:
    """The automation's ledger rows, newest slot first (skips included)."""
    from app.agents.automations import Ledger

    return Ledger(office.db).history(automation_id, limit)


def set_enabled(office: Office, automation_id: str, enabled: bool) -> None:
    """Switch an automation on or off and have the scheduler tick now."""
    from app.agents.automations import AutomationError

    scheduler = runtime(office).scheduler
    try:
        scheduler.store.set_enabled(automation_id, enabled)
    except AutomationError as exc:
        raise AutomationCommandError(str(exc)) from exc
    scheduler.wake()


def run_now(office: Office, automation_id: str) -> None:
    """Start a manual run; the ledger records it (the section shows it on its next reload)."""
    from app.agents.automations import AutomationError

    try:
        runtime(office).scheduler.run_now(automation_id)
    except AutomationError as exc:
        raise AutomationCommandError(str(exc)) from exc
