"""What the Agents section reads and does, as plain functions of the office (no Qt).

:func:`overview` gathers every agent in one call off the UI thread: its
definition (priority, triggers, schedules, budgets, granted tools), its live
state from the manager, the next scheduled run, the autonomy per tool (the
definition's default and the owner's choice), metrics from
:func:`app.agents.metrics.query_metrics` and runs per day for a chart, plus
the definition files' errors. The commands (pause, resume, run now, set an
autonomy level) act for the owner with ``Owner.at_ui()``: only the UI and the
CLI may make one.

The agents' runtime starts with the office (the bridge asks for it on
open); a call that needs it before then waits for ``start_agents``, which
runs once and is safe from any thread. Nothing here loads the runtime or
APScheduler at import: the window imports this module at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from app.agents.autonomy import Autonomy, Owner
from app.agents.definitions import AgentDefinition, Budgets, DefinitionError
from app.agents.errors import AgentError
from app.agents.lifecycle import AgentState
from app.agents.metrics import AgentMetrics, query_metrics
from app.agents.runtime_errors import UnknownAgentError
from app.agents.trace import RunRecord, StepRecord, TraceStore
from app.engine.types import Priority
from app.memory.db import Database, from_db_time, to_db_time, utc_now
from app.office import Office

if TYPE_CHECKING:  # the runtime (numpy, APScheduler) comes with the office, off the UI thread
    from app.agents.runtime import AgentRuntime

__all__ = [
    "AgentRow",
    "AgentsOverview",
    "ToolAutonomy",
    "ToolNotGrantedError",
    "overview",
    "pause",
    "resume",
    "run_now",
    "run_steps",
    "runs_of",
    "set_autonomy",
]

CHART_DAYS = 14
RUNS_SHOWN = 50
DAY_S = 86_400.0


class ToolNotGrantedError(AgentError):
    """The owner set autonomy for a tool the agent's definition does not grant."""

    def __init__(self, agent_id: str, tool: str) -> None:
        super().__init__(
            f"Agent {agent_id} may not call {tool}, so its autonomy was not changed; "
            "grant the tool in the agent's definition first."
        )


@dataclass(frozen=True, slots=True)
class ToolAutonomy:
    """One granted tool: the definition's default level and the one in effect."""

    tool: str
    default: Autonomy
    level: Autonomy
    owner_set: bool  # the owner chose ``level`` (it may equal the default)


@dataclass(frozen=True, slots=True)
class AgentRow:
    """Everything the section shows of one agent."""

    id: str
    name: str
    state: AgentState
    priority: Priority
    model_class: str
    triggers: tuple[str, ...]
    schedules: tuple[str, ...]
    next_run: datetime | None
    budgets: Budgets
    source: str  # "built-in" or the file it came from
    tools: tuple[ToolAutonomy, ...]
    metrics: AgentMetrics | None
    runs_per_day: tuple[tuple[float, float], ...]  # (days before today, runs), oldest first


@dataclass(frozen=True, slots=True)
class AgentsOverview:
    agents: tuple[AgentRow, ...]
    errors: tuple[DefinitionError, ...]


def runtime(office: Office) -> AgentRuntime:
    """The office's agents, started if the bridge has not started them yet."""
    return office.agents or office.start_agents()


# -- reads -------------------------------------------------------------------------------
def overview(office: Office, now: datetime | None = None) -> AgentsOverview:
    """Every agent, by name, with the definition files' errors."""
    agents = runtime(office)
    now = now or utc_now()
    states = agents.manager.states()
    ids = agents.definitions.ids
    metrics = {m.agent_id: m for m in query_metrics(office.db, agent_ids=ids)}
    per_day = runs_per_day(office.db, now)
    rows = [
        AgentRow(
            id=d.id,
            name=d.name,
            state=states.get(d.id, AgentState.IDLE),
            priority=d.priority,
            model_class=d.model_class,
            triggers=d.triggers,
            schedules=d.schedules,
            next_run=next_agent_run(agents, d.id, now),
            budgets=d.budgets,
            source="built-in" if d.source is None else d.source.name,
            tools=tool_levels(agents, d),
            metrics=metrics.get(d.id),
            runs_per_day=day_series(per_day.get(d.id, {}), now),
        )
        for d in agents.definitions
    ]
    rows.sort(key=lambda row: (row.name.lower(), row.id))
    return AgentsOverview(tuple(rows), agents.definitions.errors)


def tool_levels(agents: AgentRuntime, definition: AgentDefinition) -> tuple[ToolAutonomy, ...]:
    owner_set = {
        (c.agent_id, c.tool) for c in agents.autonomy.changes(definition.id)
    }  # a stored level always has at least one audited change
    return tuple(
        ToolAutonomy(
            grant.tool,
            grant.autonomy,
            agents.autonomy.level(definition.id, grant.tool, grant.autonomy),
            (definition.id, grant.tool) in owner_set,
        )
        for grant in definition.tools
    )


def next_agent_run(agents: AgentRuntime, agent_id: str, now: datetime) -> datetime | None:
    """The soonest next slot of the enabled automations that run this agent."""
    from app.agents.automations import next_run

    scheduler = agents.scheduler
    upcoming = [
        next_run(a, scheduler.ledger.last_slot(a.id), now)
        for a in scheduler.store.list(enabled_only=True)
        if a.target == f"agent:{agent_id}"
    ]
    return min((when for when in upcoming if when is not None), default=None)


def runs_per_day(db: Database, now: datetime) -> dict[str, dict[int, int]]:
    """Runs started per agent per day over the last ``CHART_DAYS`` (0 = today, UTC)."""
    since = now - timedelta(days=CHART_DAYS - 1)
    start = since.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = db.fetchall(
        "SELECT agent_id, date_trunc('day', started_at) AS day, count(*) "
        "FROM agent_trace_runs WHERE started_at >= ? GROUP BY agent_id, day",
        [to_db_time(start)],
    )
    today = now.date()
    found: dict[str, dict[int, int]] = {}
    for agent_id, day, count in rows:
        ago = (today - from_db_time(day).date()).days
        found.setdefault(str(agent_id), {})[ago] = int(count)
    return found


def day_series(counts: dict[int, int], now: datetime) -> tuple[tuple[float, float], ...]:
    """``CHART_DAYS`` points, oldest first; x is the day's start in epoch seconds."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return tuple(
        ((today - timedelta(days=ago)).timestamp(), float(counts.get(ago, 0)))
        for ago in range(CHART_DAYS - 1, -1, -1)
    )


def runs_of(office: Office, agent_id: str, limit: int = RUNS_SHOWN) -> list[RunRecord]:
    """The agent's newest runs first (read from the trace; the agents need not run)."""
    return TraceStore(office.db).runs(agent_id, limit)


def run_steps(office: Office, run_id: str) -> list[StepRecord]:
    """One run's steps in order (read from the trace)."""
    return TraceStore(office.db).steps(run_id)


# -- the owner's commands ----------------------------------------------------------------
def pause(office: Office, agent_id: str) -> None:
    runtime(office).manager.pause(agent_id)


def resume(office: Office, agent_id: str) -> None:
    runtime(office).manager.resume(agent_id)


def run_now(office: Office, agent_id: str) -> None:
    """Queue a manual run (it goes ahead of background ones); ``AgentBusyError`` if paused."""
    runtime(office).run_now(agent_id)


def set_autonomy(office: Office, agent_id: str, tool: str, level: Autonomy) -> None:
    """The owner's choice for one granted tool, audited as ``owner:ui``."""
    agents = runtime(office)
    definition = agents.definitions.get(agent_id)
    if definition is None:
        raise UnknownAgentError(agent_id)
    if definition.grant(tool) is None:
        raise ToolNotGrantedError(agent_id, tool)
    agents.autonomy.set_level(agent_id, tool, level, Owner.at_ui())
