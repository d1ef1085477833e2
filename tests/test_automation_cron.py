"""Standard cron weekdays (0 is Sunday) reach APScheduler 3 as names: the right day fires."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.agents.automations import AutomationError, CronSchedule
from app.agents.automations.models import crontab_for_apscheduler, weekdays

FRIDAY = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("0", {0}),
        ("7", {0}),
        ("1-5", {1, 2, 3, 4, 5}),
        ("mon-fri", {1, 2, 3, 4, 5}),
        ("1,3,5", {1, 3, 5}),
        ("*/2", {0, 2, 4, 6}),
        ("1-5/2", {1, 3, 5}),
        ("5-7", {5, 6, 0}),
        ("SUN,sat", {0, 6}),
    ],
)
def test_weekdays_of_a_cron_field(field: str, days: set[int]) -> None:
    assert weekdays(field) == days


@pytest.mark.parametrize("field", ["8", "fri-mon", "1/0", "monday", "-1"])
def test_bad_weekday_fields_are_refused(field: str) -> None:
    with pytest.raises(ValueError):
        weekdays(field)


@pytest.mark.parametrize(
    ("expression", "converted"),
    [
        ("0 9 * * 1-5", "0 9 * * mon,tue,wed,thu,fri"),
        ("0 10 * * 1", "0 10 * * mon"),
        ("*/15 * * * *", "*/15 * * * *"),
        ("0 8 1 * ?", "0 8 1 * ?"),
    ],
)
def test_the_day_field_becomes_names(expression: str, converted: str) -> None:
    assert crontab_for_apscheduler(expression) == converted


@pytest.mark.parametrize(
    ("expression", "weekday"),
    [
        ("0 10 * * 1", "Monday"),
        ("0 9 * * 0", "Sunday"),
        ("0 9 * * 7", "Sunday"),
        ("0 9 * * 6", "Saturday"),
    ],
)
def test_a_schedule_fires_on_the_day_cron_means(expression: str, weekday: str) -> None:
    fire = CronSchedule(expression).trigger().get_next_fire_time(None, FRIDAY)
    assert fire is not None and fire.strftime("%A") == weekday


def test_weekdays_skip_the_weekend() -> None:
    trigger = CronSchedule("0 9 * * 1-5").trigger()
    fire = trigger.get_next_fire_time(None, FRIDAY)  # Friday noon: next is Monday 09:00
    assert fire is not None and fire.strftime("%A %H:%M") == "Monday 09:00"


def test_a_bad_weekday_is_refused_at_construction() -> None:
    with pytest.raises(AutomationError):
        CronSchedule("0 9 * * 9")
