"""``slots.plan_slots``: downtime, DST and clock jumps, table-driven, no clock, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.agents.automations.models import (
    RUN_EACH_CAP,
    CronSchedule,
    IntervalSchedule,
    MissedSlotPolicy,
    Schedule,
)
from app.agents.automations.slots import SkipReason, due_slots, next_slot, plan_slots

ONCE, EACH, SKIP = MissedSlotPolicy.RUN_ONCE, MissedSlotPolicy.RUN_EACH, MissedSlotPolicy.SKIP
LAST = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)  # the last slot that ran (a slot of every schedule)
DOWN = LAST + timedelta(minutes=4, seconds=30)  # the app stopped 30 s before 12:05
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)

SCHEDULES: dict[str, Schedule] = {
    "every-5-min": CronSchedule("*/5 * * * *"),
    "every-5-min-interval": IntervalSchedule(timedelta(minutes=5), LAST - DAY),
    "hourly": CronSchedule("0 * * * *"),
    "daily": CronSchedule("0 12 * * *"),
}

# (schedule, downtime) -> runs under (RUN_ONCE, RUN_EACH, SKIP), and all candidates.
# Back at DOWN + downtime: 1 min -> 12:05:30, 1 h -> 13:04:30, 48 h -> 12:04:30 two days on.
DOWNTIME = [
    ("every-5-min", MINUTE, (1, 1, 1), 1),  # 12:05 is 30 s late: on time
    ("every-5-min", HOUR, (1, 12, 0), 12),  # 12:05 .. 13:00, the latest 4.5 min late
    ("every-5-min", 48 * HOUR, (1, RUN_EACH_CAP, 0), 576),
    ("every-5-min-interval", MINUTE, (1, 1, 1), 1),
    ("every-5-min-interval", HOUR, (1, 12, 0), 12),
    ("every-5-min-interval", 48 * HOUR, (1, RUN_EACH_CAP, 0), 576),
    ("hourly", MINUTE, (0, 0, 0), 0),
    ("hourly", HOUR, (1, 1, 0), 1),
    ("hourly", 48 * HOUR, (1, 48, 0), 48),
    ("daily", MINUTE, (0, 0, 0), 0),
    ("daily", HOUR, (0, 0, 0), 0),
    ("daily", 48 * HOUR, (1, 2, 0), 2),
]


@pytest.mark.parametrize(("name", "downtime", "runs", "candidates"), DOWNTIME)
def test_downtime_runs_exactly_what_the_policy_says(
    name: str, downtime: timedelta, runs: tuple[int, int, int], candidates: int
) -> None:
    now = DOWN + downtime
    for policy, expected in zip((ONCE, EACH, SKIP), runs, strict=True):
        plan = plan_slots(SCHEDULES[name], LAST, now, policy)
        assert len(plan.run) == expected, policy
        assert len(plan.run) + plan.skipped == candidates, policy
        assert all(LAST < slot <= now for slot in plan.run)
        assert list(plan.run) == sorted(plan.run)
        assert plan.capped == (policy is EACH and candidates > RUN_EACH_CAP)
        if plan.run and policy is not EACH:
            assert plan.run[-1] == due_slots(SCHEDULES[name], LAST, now, EACH)[-1]  # the latest


def test_run_each_keeps_the_latest_slots_and_reports_the_cap() -> None:
    now = DOWN + 48 * HOUR
    plan = plan_slots(SCHEDULES["every-5-min"], LAST, now, EACH)
    assert plan.capped and plan.reason is SkipReason.OVER_CAP
    assert plan.skipped == 576 - RUN_EACH_CAP
    assert plan.first_skipped == LAST + 5 * MINUTE
    assert plan.last_skipped == plan.run[0] - 5 * MINUTE
    assert plan.run[-1] == LAST + 48 * HOUR


@pytest.mark.parametrize(
    ("policy", "max_lateness", "now", "runs", "reason"),
    [
        (ONCE, 10 * MINUTE, DOWN + HOUR, 1, SkipReason.COALESCED),  # 13:00 is 4.5 min late
        (ONCE, 2 * MINUTE, DOWN + HOUR, 0, SkipReason.TOO_LATE),
        (EACH, 20 * MINUTE, DOWN + HOUR, 4, SkipReason.TOO_LATE),  # 12:45 .. 13:00
        (SKIP, 10 * MINUTE, DOWN + HOUR, 1, SkipReason.MISSED),
        (SKIP, None, DOWN + HOUR, 0, SkipReason.MISSED),
    ],
)
def test_max_lateness_bounds_every_policy(
    policy: MissedSlotPolicy,
    max_lateness: timedelta | None,
    now: datetime,
    runs: int,
    reason: SkipReason,
) -> None:
    plan = plan_slots(SCHEDULES["every-5-min"], LAST, now, policy, max_lateness)
    assert len(plan.run) == runs
    assert plan.skipped == 12 - runs and plan.reason is reason


# A daily 02:30 job across DST changes: (zone, first UTC day, the UTC instants it runs at).
LISBON, NEW_YORK = "Europe/Lisbon", "America/New_York"
DST = [
    # Lisbon springs forward 01:00 -> 02:00 on 31 March: 02:30 exists, one hour earlier in UTC.
    (LISBON, datetime(2024, 3, 30, tzinfo=UTC), "03-30 02:30, 03-31 01:30, 04-01 01:30"),
    # Lisbon falls back 02:00 -> 01:00 on 27 October: 02:30 happens once.
    (LISBON, datetime(2024, 10, 26, tzinfo=UTC), "10-26 01:30, 10-27 02:30, 10-28 02:30"),
    # New York springs forward 02:00 -> 03:00 on 10 March: 02:30 does not exist, runs at 03:30.
    (NEW_YORK, datetime(2024, 3, 9, 12, tzinfo=UTC), "03-10 07:30, 03-11 06:30, 03-12 06:30"),
    # New York falls back 02:00 -> 01:00 on 3 November: 02:30 happens once.
    (NEW_YORK, datetime(2024, 11, 2, 12, tzinfo=UTC), "11-03 07:30, 11-04 07:30, 11-05 07:30"),
]


@pytest.mark.parametrize(("zone", "start", "expected"), DST)
def test_daily_0230_runs_once_a_day_across_dst(zone: str, start: datetime, expected: str) -> None:
    slots = due_slots(CronSchedule("30 2 * * *", zone), start, start + 3 * DAY - MINUTE, EACH)
    assert ", ".join(s.strftime("%m-%d %H:%M") for s in slots) == expected
    assert all(s.tzinfo is UTC for s in slots)


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        (LISBON, datetime(2024, 10, 26, 12, tzinfo=UTC), ["10-27 00:30", "10-28 01:30"]),
        (NEW_YORK, datetime(2024, 11, 2, 12, tzinfo=UTC), ["11-03 05:30", "11-04 06:30"]),
    ],
)
def test_a_wall_time_repeated_by_fall_back_runs_once(
    zone: str, start: datetime, expected: list[str]
) -> None:
    slots = due_slots(CronSchedule("30 1 * * *", zone), start, start + 2 * DAY, EACH)
    assert [s.strftime("%m-%d %H:%M") for s in slots] == expected


@pytest.mark.parametrize("zone", ["Europe/Lisbon", "America/New_York"])
def test_an_hourly_job_runs_every_real_hour_of_a_fall_back_day(zone: str) -> None:
    start = (
        datetime(2024, 10, 26, tzinfo=UTC)
        if "Lisbon" in zone
        else datetime(2024, 11, 2, tzinfo=UTC)
    )
    slots = due_slots(CronSchedule("0 * * * *", zone), start, start + 3 * DAY, EACH)
    assert len(slots) == 72 and len(set(slots)) == 72


# Clock jumps: the last slot ran at LAST; the wall clock then reads `now`.
JUMPS = [
    (LAST + 30 * MINUTE - HOUR, []),  # jumped back 1 h: nothing re-runs
    (LAST - 5 * MINUTE, []),  # jumped back before the claimed slot itself
    (LAST + 30 * MINUTE + HOUR, [LAST + HOUR]),  # jumped forward 1 h: like an hour of downtime
]


@pytest.mark.parametrize(("now", "expected"), JUMPS)
def test_clock_jumps(now: datetime, expected: list[datetime]) -> None:
    for policy in (ONCE, EACH):
        assert due_slots(SCHEDULES["hourly"], LAST, now, policy) == expected


def test_a_forward_jump_is_downtime_for_the_policy() -> None:
    now = LAST + 30 * MINUTE + HOUR
    assert len(due_slots(SCHEDULES["every-5-min"], LAST, now, EACH)) == 18
    assert due_slots(SCHEDULES["every-5-min"], LAST, now, ONCE) == [LAST + 90 * MINUTE]
    assert due_slots(SCHEDULES["every-5-min"], LAST, now, SKIP) == [now]  # on time, the rest not
    assert plan_slots(SCHEDULES["every-5-min"], LAST, now, SKIP).skipped == 17


def test_a_backlog_longer_than_the_scan_limit_is_skipped_in_chunks() -> None:
    plan = plan_slots(SCHEDULES["every-5-min"], LAST, DOWN + HOUR, ONCE, scan_limit=5)
    assert plan.run == () and plan.skipped == 5 and plan.reason is SkipReason.BACKLOG
    assert plan.last_skipped == LAST + 25 * MINUTE
    rest = plan_slots(SCHEDULES["every-5-min"], plan.last_skipped, DOWN + HOUR, ONCE, scan_limit=50)
    assert rest.run == (LAST + HOUR,) and rest.skipped == 6


def test_next_slot_is_strictly_after() -> None:
    assert next_slot(SCHEDULES["hourly"], LAST) == LAST + HOUR
    assert next_slot(SCHEDULES["hourly"], LAST - timedelta(microseconds=1)) == LAST
