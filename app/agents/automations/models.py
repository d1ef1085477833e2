"""What an automation is: a target to run, a schedule, and a policy for missed slots.

The definition is plain data; the ledger (``ledger.py``) is the truth about
what ran. A schedule is either a cron expression read in a time zone or a
fixed interval from an anchor instant. Both are turned into APScheduler 3.x
triggers, used only to enumerate fire times (``slots.py``); APScheduler never
decides what happens to a missed run.

Errors of this package::

    AutomationError                 anything the automations package reports
    ├── ScheduleError               a cron expression, time zone or interval is invalid
    └── AutomationNotFoundError     no automation has that id
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

__all__ = [
    "RUN_EACH_CAP",
    "Automation",
    "AutomationError",
    "AutomationNotFoundError",
    "CronSchedule",
    "IntervalSchedule",
    "MissedSlotPolicy",
    "Schedule",
    "ScheduleError",
]

RUN_EACH_CAP = 100
"""At most this many missed slots are run under ``RUN_EACH``; older ones are skipped."""


class AutomationError(Exception):
    """Base of every error the automations package raises."""


class ScheduleError(AutomationError, ValueError):
    """A schedule cannot be used; ``detail`` says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return f"Invalid schedule: {self.detail}. Nothing was saved; correct it and try again."


class AutomationNotFoundError(AutomationError, LookupError):
    """No automation has the id ``automation_id``."""

    def __init__(self, automation_id: str) -> None:
        super().__init__(automation_id)
        self.automation_id = automation_id

    def __str__(self) -> str:
        return (
            f"No automation has the id {self.automation_id!r}. "
            "Nothing was changed; `soloist automations list` shows them."
        )


class MissedSlotPolicy(StrEnum):
    """What happens to slots missed while Soloist was closed, asleep or paused.

    ``RUN_ONCE`` runs the latest missed slot once and skips the older ones;
    ``RUN_EACH`` runs every missed slot in order, at most ``RUN_EACH_CAP``
    (the most recent ones); ``SKIP`` runs a slot only when it is on time.
    """

    RUN_ONCE = "run_once"
    RUN_EACH = "run_each"
    SKIP = "skip"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {name!r}") from exc


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A five-field crontab expression, read as wall-clock time in ``timezone``."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        self.trigger()  # refuse a bad expression at construction

    def trigger(self) -> BaseTrigger:
        try:
            return CronTrigger.from_crontab(
                crontab_for_apscheduler(self.expression), timezone=_zone(self.timezone)
            )
        except ValueError as exc:
            raise ScheduleError(f"bad cron expression {self.expression!r}") from exc

    def describe(self) -> str:
        return f"cron {self.expression} ({self.timezone})"


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def crontab_for_apscheduler(expression: str) -> str:
    """``expression`` with its day-of-week field in names, as APScheduler 3 reads it.

    Standard cron counts weekdays from Sunday (0 or 7); APScheduler 3's
    ``from_crontab`` passes the field on to ``CronTrigger``, which counts
    from Monday, so ``1-5`` would run Tuesday to Saturday. Names mean the
    same to both, so the field is expanded to a list of names.
    """
    fields = expression.split()
    if len(fields) != 5 or fields[4] in ("*", "?"):
        return expression
    fields[4] = ",".join(_DAY_NAMES[day] for day in sorted(weekdays(fields[4])))
    return " ".join(fields)


def weekdays(field: str) -> set[int]:
    """The days (0 Sunday .. 6 Saturday) a standard cron day-of-week field names."""
    days: set[int] = set()
    for part in field.lower().split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad step in {field!r}")
        first, last = (0, 6) if body == "*" else _day_range(body)
        days.update(day % 7 for day in range(first, last + 1, step))
    return days


def _day_range(body: str) -> tuple[int, int]:
    low, dash, high = body.partition("-")
    first = _day(low)
    last = _day(high) if dash else first
    if last < first:
        raise ValueError(f"day range {body!r} runs backwards")
    return first, last


def _day(text: str) -> int:
    if text in _DAY_NAMES:
        return _DAY_NAMES.index(text)
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)  # 7 is Sunday too
    raise ValueError(f"bad day of week {text!r}")


@dataclass(frozen=True, slots=True)
class IntervalSchedule:
    """Every ``every``, counted from the instant ``anchor`` (timezone-aware)."""

    every: timedelta
    anchor: datetime

    def __post_init__(self) -> None:
        if self.every < timedelta(seconds=1):
            raise ScheduleError("an interval must be at least one second")
        if self.anchor.tzinfo is None:
            raise ScheduleError("the anchor of an interval must be timezone-aware")

    def trigger(self) -> BaseTrigger:
        return IntervalTrigger(
            seconds=int(self.every.total_seconds()), start_date=self.anchor, timezone=UTC
        )

    def describe(self) -> str:
        return f"every {int(self.every.total_seconds())} s"


Schedule = CronSchedule | IntervalSchedule


@dataclass(frozen=True, slots=True)
class Automation:
    """One scheduled automation.

    ``target`` names what runs (``agent:<agent-id>``), opaque to the
    scheduler; ``payload`` is handed to it and never logged or shown by
    ``repr``. Slots are considered only after ``active_since`` (creation,
    re-enabling or a schedule change). ``max_lateness``: a slot later than
    this is never run, whatever the policy (None: no limit, except that
    ``SKIP`` calls a slot on time within ``slots.ON_TIME_GRACE``).
    """

    id: str
    name: str
    target: str
    schedule: Schedule
    active_since: datetime
    payload: Mapping[str, object] = field(default_factory=dict)
    policy: MissedSlotPolicy = MissedSlotPolicy.RUN_ONCE
    enabled: bool = True
    max_lateness: timedelta | None = None

    def payload_json(self) -> str:
        return json.dumps(dict(self.payload), sort_keys=True)

    def __repr__(self) -> str:
        return (
            f"Automation(id={self.id!r}, target={self.target!r}, "
            f"schedule={self.schedule.describe()!r}, policy={self.policy.value}, "
            f"enabled={self.enabled}, payload=<{len(self.payload)} keys>)"
        )
