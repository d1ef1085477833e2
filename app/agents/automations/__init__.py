"""Scheduled automations: definitions, due slots, the run ledger and the scheduler.

APScheduler only wakes Soloist up; the run ledger in DuckDB, keyed by
(automation, scheduled time), is the truth, so a slot runs once, and what
happens to slots missed while the laptop slept is an explicit policy per
automation (``MissedSlotPolicy``). See DESIGN.md, "Agents".
"""

from app.agents.automations.ledger import (
    Claim,
    Ledger,
    RunKind,
    RunRecord,
    RunState,
    TransitionError,
)
from app.agents.automations.models import (
    RUN_EACH_CAP,
    Automation,
    AutomationError,
    AutomationNotFoundError,
    CronSchedule,
    IntervalSchedule,
    MissedSlotPolicy,
    Schedule,
    ScheduleError,
)
from app.agents.automations.scheduler import (
    AutomationScheduler,
    RunFn,
    SchedulerState,
    next_run,
    register_target,
    run_slot,
    runner_for,
)
from app.agents.automations.slots import SkipReason, SlotPlan, due_slots, next_slot, plan_slots
from app.agents.automations.store import AutomationStore

__all__ = [
    "RUN_EACH_CAP",
    "Automation",
    "AutomationError",
    "AutomationNotFoundError",
    "AutomationScheduler",
    "AutomationStore",
    "Claim",
    "CronSchedule",
    "IntervalSchedule",
    "Ledger",
    "MissedSlotPolicy",
    "RunFn",
    "RunKind",
    "RunRecord",
    "RunState",
    "Schedule",
    "ScheduleError",
    "SchedulerState",
    "SkipReason",
    "SlotPlan",
    "TransitionError",
    "due_slots",
    "next_run",
    "next_slot",
    "plan_slots",
    "register_target",
    "run_slot",
    "runner_for",
]
