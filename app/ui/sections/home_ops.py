"""What the Home section shows, read from the office in one call off the UI thread.

:func:`today` gathers the day at a glance into one :class:`HomeSnapshot`:
pending approvals, agents running and queued, the next automations, the
latest runs and the newest daily briefing. Approvals, automations and runs
are read from their tables, so they show even before the agents have
started; only the agents' live states need the running ``AgentRuntime``.
No Qt here: the widget calls these through ``bridge.call``. The automations'
modules (APScheduler) load inside :func:`upcoming`, on that worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.agents.builtin.daily_briefing import AGENT_ID as BRIEFING_AGENT
from app.agents.builtin.daily_briefing import SCOPE as BRIEFING_SCOPE
from app.agents.errors import AgentError
from app.agents.lifecycle import AgentState
from app.agents.outbox_states import ActionState
from app.agents.outbox_store import OutboxStore
from app.agents.trace import TraceStore
from app.memory.db import utc_now
from app.memory.errors import StoreError
from app.office import Office
from app.ui.sections.automations_ops import agent_names, automation_title

__all__ = [
    "BRIEFING_AGENT",
    "AgentsNotStartedError",
    "Briefing",
    "HomeSnapshot",
    "RecentRun",
    "Upcoming",
    "run_briefing",
    "today",
]

NEXT_AUTOMATIONS = 5
RECENT_RUNS = 5


class AgentsNotStartedError(AgentError):
    """The agents are still starting: nothing was queued."""

    def __str__(self) -> str:
        return "The agents are still starting; nothing was queued. Try again in a moment."


@dataclass(frozen=True, slots=True)
class Upcoming:
    """One automation's next slot."""

    name: str  # in words: "Daily briefing — every day at 08:00"
    when: datetime
    detail: str = ""  # the stored name and schedule, for a tooltip


@dataclass(frozen=True, slots=True)
class RecentRun:
    """One finished (or running) agent run and how it ended, as the trace keeps it."""

    agent_id: str
    started_at: datetime
    state: str  # a ``RunState`` value
    outcome: str | None = None  # the loop's outcome JSON (see ``run_text.outcome_text``)
    error: str | None = None
    steps: int = 0
    duration_s: float | None = None  # None while it runs


@dataclass(frozen=True, slots=True)
class Briefing:
    text: str
    written_at: datetime


@dataclass(frozen=True, slots=True)
class HomeSnapshot:
    """Today at a glance; ``running``/``queued`` are None while the agents start."""

    pending_approvals: int
    running: tuple[str, ...] | None
    queued: tuple[str, ...] | None
    upcoming: tuple[Upcoming, ...]
    recent: tuple[RecentRun, ...]
    briefing: Briefing | None

    @property
    def agents_started(self) -> bool:
        return self.running is not None


def today(office: Office) -> HomeSnapshot:
    """Everything the Home section shows, in one read."""
    running, queued = _agent_states(office)
    return HomeSnapshot(
        pending_approvals=pending_approvals(office),
        running=running,
        queued=queued,
        upcoming=tuple(upcoming(office)),
        recent=tuple(recent_runs(office)),
        briefing=latest_briefing(office),
    )


def pending_approvals(office: Office) -> int:
    """Proposals and in-doubt actions: what waits for the owner."""
    waiting = (int(ActionState.PROPOSED), int(ActionState.IN_DOUBT))
    return len(OutboxStore(office.db).select("a.state IN (?, ?)", waiting))


def _agent_states(office: Office) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    agents = office.agents
    if agents is None:
        return None, None
    states = agents.manager.states()
    running = tuple(sorted(a for a, s in states.items() if s is AgentState.RUNNING))
    queued = tuple(sorted(a for a, s in states.items() if s is AgentState.QUEUED))
    return running, queued


def upcoming(office: Office, limit: int = NEXT_AUTOMATIONS) -> list[Upcoming]:
    """The next ``limit`` automation slots, soonest first."""
    from app.agents.automations import AutomationStore, Ledger, next_run

    ledger = Ledger(office.db)
    now = utc_now()
    names = agent_names(office)
    found = []
    for automation in AutomationStore(office.db).list(enabled_only=True):
        when = next_run(automation, ledger.last_slot(automation.id), now)
        if when is not None:
            detail = f"{automation.name} ({automation.schedule.describe()})"
            found.append(Upcoming(automation_title(automation, names), when, detail))
    return sorted(found, key=lambda u: u.when)[:limit]


def recent_runs(office: Office, limit: int = RECENT_RUNS) -> list[RecentRun]:
    """The newest agent runs with their outcome."""
    return [
        RecentRun(
            run.agent_id,
            run.started_at,
            run.state.value,
            run.outcome,
            run.error,
            run.steps,
            run.duration_s,
        )
        for run in TraceStore(office.db).runs(limit=limit)
    ]


def latest_briefing(office: Office) -> Briefing | None:
    """The daily briefing agent's newest note; None when it has written none (or memory is off)."""
    try:
        found = office.memory.store.current(BRIEFING_SCOPE, kinds=("note",), limit=1)
    except StoreError:
        return None
    if not found:
        return None
    return Briefing(found[0].text, found[0].created_at)


def run_briefing(office: Office) -> str:
    """Queue a manual run of the daily briefing; returns the agent's id."""
    agents = office.agents
    if agents is None:
        raise AgentsNotStartedError()
    agents.run_now(BRIEFING_AGENT, "the owner asked for a briefing now")
    return BRIEFING_AGENT
