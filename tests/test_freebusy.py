"""Free/busy: pure functions, table-driven, with recurring events expanded."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from app.integrations.dav.freebusy import (
    Interval,
    WorkingHours,
    busy_intervals,
    free_slots,
    merge,
    occurrences,
)
from app.integrations.dav.ical import parse_calendar

LISBON = ZoneInfo("Europe/Lisbon")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def iv(day: int, h1: int, h2: int, m1: int = 0, m2: int = 0) -> Interval:
    return Interval(at(day, h1, m1), at(day, h2, m2))


MERGE_CASES = [
    ("empty", [], []),
    ("disjoint", [iv(1, 9, 10), iv(1, 11, 12)], [iv(1, 9, 10), iv(1, 11, 12)]),
    ("overlap", [iv(1, 9, 11), iv(1, 10, 12)], [iv(1, 9, 12)]),
    ("touching", [iv(1, 9, 10), iv(1, 10, 11)], [iv(1, 9, 11)]),
    ("contained, unsorted", [iv(1, 10, 11), iv(1, 9, 12)], [iv(1, 9, 12)]),
]


@pytest.mark.parametrize(("given", "expected"), [c[1:] for c in MERGE_CASES],
                         ids=[c[0] for c in MERGE_CASES])  # fmt: skip
def test_merge(given: list[Interval], expected: list[Interval]) -> None:
    assert merge(given) == expected


# Tue 1 Dec 2026 .. Thu 3 Dec 2026; working hours 9-17 UTC.
FREE_CASES = [
    ("no busy, one day", iv(1, 0, 23, 0, 59), [], 30, [iv(1, 9, 17)]),
    ("busy splits the day", iv(1, 0, 23), [iv(1, 10, 11)], 30, [iv(1, 9, 10), iv(1, 11, 17)]),
    ("short gaps dropped", iv(1, 0, 23), [iv(1, 9, 10, 20, 20), iv(1, 10, 17, 40)], 30, []),
    ("window cuts the day", iv(1, 15, 23), [], 30, [iv(1, 15, 17)]),
    ("busy across days", Interval(at(1, 0), at(3, 0)), [Interval(at(1, 16), at(2, 10))], 30,
     [iv(1, 9, 16), iv(2, 10, 17)]),
    ("weekend skipped", Interval(at(5, 0), at(7, 23)), [], 30, [iv(7, 9, 17)]),
]  # fmt: skip


@pytest.mark.parametrize(("window", "busy", "minutes", "expected"), [c[1:] for c in FREE_CASES],
                         ids=[c[0] for c in FREE_CASES])  # fmt: skip
def test_free_slots(
    window: Interval, busy: list[Interval], minutes: int, expected: list[Interval]
) -> None:
    assert free_slots(window, busy, minutes, WorkingHours()) == expected


def test_free_slots_without_working_hours_is_the_complement() -> None:
    assert free_slots(iv(1, 8, 12), [iv(1, 9, 10)], 15) == [iv(1, 8, 9), iv(1, 10, 12)]


def test_working_hours_are_in_the_owners_zone() -> None:
    hours = WorkingHours(time(9), time(17), tz=ZoneInfo("America/New_York"))
    assert free_slots(iv(1, 0, 23, 0, 59), [], 30, hours) == [iv(1, 14, 22)]


WEEKLY = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:test
BEGIN:VEVENT
UID:weekly
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Lisbon:20261201T100000
DTEND;TZID=Europe/Lisbon:20261201T110000
RRULE:FREQ=WEEKLY;COUNT=5
EXDATE;TZID=Europe/Lisbon:20261215T100000
SUMMARY:Weekly review
END:VEVENT
BEGIN:VEVENT
UID:weekly
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/Lisbon:20261208T100000
DTSTART;TZID=Europe/Lisbon:20261208T150000
DTEND;TZID=Europe/Lisbon:20261208T153000
SUMMARY:Weekly review (moved)
END:VEVENT
BEGIN:VEVENT
UID:weekly
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/Lisbon:20261222T100000
DTSTART;TZID=Europe/Lisbon:20261222T100000
DTEND;TZID=Europe/Lisbon:20261222T110000
STATUS:CANCELLED
END:VEVENT
END:VCALENDAR
"""

OTHERS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:test
BEGIN:VEVENT
UID:free-time
DTSTAMP:20260101T000000Z
DTSTART:20261201T100000Z
DTEND:20261201T120000Z
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:overlap
DTSTAMP:20260101T000000Z
DTSTART:20261201T103000Z
DTEND:20261201T113000Z
END:VEVENT
BEGIN:VEVENT
UID:holiday
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:20261225
DTEND;VALUE=DATE:20261226
END:VEVENT
END:VCALENDAR
"""


def test_busy_over_a_weekly_series_with_exceptions() -> None:
    calendars = [parse_calendar(WEEKLY).calendar, parse_calendar(OTHERS).calendar]
    window = Interval(at(1, 0), datetime(2027, 1, 1, tzinfo=UTC))
    busy = busy_intervals(calendars, window, LISBON)
    assert busy == [
        iv(1, 10, 11, 0, 30),  # 10:00 Lisbon (= UTC in winter) merged with the 10:30 meeting
        iv(8, 15, 15, 0, 30),  # the moved occurrence, not 10:00
        # 15 Dec is an EXDATE, 22 Dec is cancelled
        Interval(at(25, 0), at(26, 0)),  # all day, in the owner's zone (UTC+0 in winter)
        iv(29, 10, 11),
    ]


def test_occurrences_keep_non_blocking_ones_flagged() -> None:
    window = Interval(at(1, 0), at(2, 0))
    found = occurrences([parse_calendar(OTHERS).calendar], window)
    assert [(o.uid, o.blocks_time) for o in found] == [("free-time", False), ("overlap", True)]


def test_busy_is_clipped_to_the_window() -> None:
    busy = busy_intervals([parse_calendar(OTHERS).calendar], iv(1, 11, 18))
    assert busy == [iv(1, 11, 11, 0, 30)]
