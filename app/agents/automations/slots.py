"""Which scheduled slots are due: pure functions of (schedule, last slot, now, policy).

A slot is an absolute UTC instant at which a schedule fires. The candidates
are the slots strictly after the last slot the ledger holds and at or before
now. Because the lower bound is the ledger's last slot and not the previous
wake-up time, a clock that jumps back re-runs nothing (there is no candidate
until now passes the last slot again), and a clock that jumps forward looks
exactly like downtime, which the policy handles:

============  =====================================================
policy        candidates (after dropping those later than max lateness)
============  =====================================================
RUN_ONCE      the latest runs; the older ones are skipped
RUN_EACH      all run in order, at most ``RUN_EACH_CAP`` (the latest)
SKIP          the latest runs if within ``ON_TIME_GRACE`` (or max lateness)
============  =====================================================

Daylight saving time: cron expressions are wall-clock times in their zone.
A wall time that does not exist (spring forward) fires at the same offset
after the gap, as APScheduler computes it; a wall time that occurs twice (fall
back) fires once, at its first occurrence, unless the hour field is ``*``,
in which case the repeated hour is a real hour and fires again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from app.agents.automations.models import RUN_EACH_CAP, MissedSlotPolicy, Schedule

__all__ = [
    "ON_TIME_GRACE",
    "SCAN_LIMIT",
    "SkipReason",
    "SlotPlan",
    "due_slots",
    "next_slot",
    "plan_slots",
]

ON_TIME_GRACE = timedelta(minutes=1)
"""Under ``SKIP`` (and no max lateness), a slot at most this late still counts as on time."""

SCAN_LIMIT = 100_000
"""Candidates looked at in one plan (~40 µs each); a longer backlog is skipped in chunks."""

_TICK = timedelta(microseconds=1)
_RETRY_STEPS = (timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1))


class SkipReason(StrEnum):
    """Why slots were skipped (recorded in the ledger with the skipped slots)."""

    COALESCED = "coalesced"  # RUN_ONCE: an older slot, covered by the latest one's run
    OVER_CAP = "over_cap"  # RUN_EACH: older than the RUN_EACH_CAP latest slots
    MISSED = "missed"  # SKIP: not on time
    TOO_LATE = "too_late"  # later than the automation's max lateness
    BACKLOG = "backlog"  # more than SCAN_LIMIT slots behind: skipped unrun


@dataclass(frozen=True, slots=True)
class SlotPlan:
    """What to do now: the slots to run, oldest first, and the ones to skip."""

    run: tuple[datetime, ...] = ()
    skipped: int = 0
    first_skipped: datetime | None = None
    last_skipped: datetime | None = None
    reason: SkipReason | None = None
    capped: bool = False  # RUN_EACH had more than RUN_EACH_CAP slots to run


def due_slots(
    schedule: Schedule,
    last_slot: datetime,
    now: datetime,
    policy: MissedSlotPolicy,
    max_lateness: timedelta | None = None,
) -> list[datetime]:
    """The slots to run now, oldest first (UTC); see ``plan_slots``."""
    return list(plan_slots(schedule, last_slot, now, policy, max_lateness).run)


def plan_slots(
    schedule: Schedule,
    last_slot: datetime,
    now: datetime,
    policy: MissedSlotPolicy,
    max_lateness: timedelta | None = None,
    *,
    scan_limit: int = SCAN_LIMIT,
) -> SlotPlan:
    """The slots in ``(last_slot, now]`` split into those to run and those to skip."""
    keep = RUN_EACH_CAP if policy is MissedSlotPolicy.RUN_EACH else 1
    scan = _scan(schedule.trigger(), last_slot, now, keep, scan_limit)
    if scan.truncated:
        return _skip_all(scan, SkipReason.BACKLOG)
    limit = max_lateness
    if policy is MissedSlotPolicy.SKIP and limit is None:
        limit = ON_TIME_GRACE
    window = scan.latest[-keep:]
    timely = [s for s in window if limit is None or now - s <= limit]
    if not timely:
        reason = SkipReason.MISSED if max_lateness is None else SkipReason.TOO_LATE
        return _skip_all(scan, reason)
    run = tuple(timely) if policy is MissedSlotPolicy.RUN_EACH else (timely[-1],)
    plan = _with_skipped(scan, run, _reason(policy, window, run, max_lateness))
    capped = policy is MissedSlotPolicy.RUN_EACH and scan.count > keep
    return replace(plan, capped=capped) if capped else plan


def next_slot(schedule: Schedule, after: datetime) -> datetime | None:
    """The first slot strictly after ``after`` (UTC), or None when the schedule has ended."""
    return _next_after(schedule.trigger(), after)


# -- mechanism ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Scan:
    count: int
    first: datetime | None
    latest: tuple[datetime, ...]  # the last `keep` + 1 candidates, oldest first
    last_seen: datetime | None
    truncated: bool


def _scan(trigger: BaseTrigger, after: datetime, until: datetime, keep: int, limit: int) -> _Scan:
    latest: deque[datetime] = deque(maxlen=keep + 1)  # + 1: the slot before the kept ones
    count, first, slot = 0, None, _next_after(trigger, after)
    while slot is not None and slot <= until:
        if count == limit:
            return _Scan(count, first, tuple(latest), latest[-1], truncated=True)
        first = first or slot
        latest.append(slot)
        count += 1
        slot = _next_after(trigger, slot)
    return _Scan(count, first, tuple(latest), latest[-1] if latest else None, truncated=False)


def _next_after(trigger: BaseTrigger, after: datetime) -> datetime | None:
    """The trigger's first fire time strictly after ``after``, as a UTC instant.

    APScheduler 3.x can answer a time at or before ``after`` around a fall-back
    transition (it works in wall time); the query point is then moved on.
    """
    after = after.astimezone(UTC)
    for step in (_TICK, *_RETRY_STEPS):
        fire: datetime | None = trigger.get_next_fire_time(None, after + step)
        if fire is None:
            return None
        if _repeated_wall_time(trigger, fire):
            after = fire.astimezone(UTC)
            continue
        if fire.astimezone(UTC) > after:
            return fire.astimezone(UTC)
    raise RuntimeError("the trigger did not advance")  # a bug in the trigger, not user error


def _repeated_wall_time(trigger: BaseTrigger, fire: datetime) -> bool:
    """True for the second occurrence of a wall time a fall-back repeats (fixed hours only)."""
    if not isinstance(trigger, CronTrigger) or not fire.fold:
        return False
    hour = next(f for f in trigger.fields if f.name == "hour")
    return str(hour) != "*" and fire.replace(fold=0).utcoffset() != fire.utcoffset()


def _reason(
    policy: MissedSlotPolicy,
    window: tuple[datetime, ...],
    run: tuple[datetime, ...],
    max_lateness: timedelta | None,
) -> SkipReason:
    if policy is MissedSlotPolicy.RUN_EACH and len(run) < len(window) and max_lateness:
        return SkipReason.TOO_LATE
    if policy is MissedSlotPolicy.RUN_EACH:
        return SkipReason.OVER_CAP
    return SkipReason.COALESCED if policy is MissedSlotPolicy.RUN_ONCE else SkipReason.MISSED


def _skip_all(scan: _Scan, reason: SkipReason) -> SlotPlan:
    if not scan.count:
        return SlotPlan()
    return SlotPlan((), scan.count, scan.first, scan.last_seen, reason)


def _with_skipped(scan: _Scan, run: tuple[datetime, ...], reason: SkipReason) -> SlotPlan:
    skipped = scan.count - len(run)
    if not skipped:
        return SlotPlan(run)
    before_run = [s for s in scan.latest if s < run[0]]
    last = before_run[-1] if before_run else None
    return SlotPlan(run, skipped, scan.first, last, reason)
