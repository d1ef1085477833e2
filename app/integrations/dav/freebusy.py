"""When the owner is busy and when they are free: pure functions over parsed calendars.

``busy_intervals`` expands recurring series (RRULE, RDATE, EXDATE and
changed occurrences, through ``recurring_ical_events``) inside a window,
drops what does not block time (TRANSP:TRANSPARENT, STATUS:CANCELLED),
clips to the window and merges overlaps. ``free_slots`` is the complement
inside working hours, keeping only gaps of at least ``min_minutes``.

All intervals are aware UTC datetimes. Floating times and all-day dates are
read in the owner's zone (``WorkingHours.tz``), which is what a person means
by "all day Tuesday".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from app.integrations.dav.ical import to_utc, value_of
from app.integrations.errors import MalformedDataError


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("intervals need aware datetimes")

    @property
    def minutes(self) -> float:
        return (self.end - self.start).total_seconds() / 60


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """The hours a slot may be offered in, in the owner's zone; weekdays 0 = Monday."""

    start: time = time(9)
    end: time = time(17)
    weekdays: frozenset[int] = field(default_factory=lambda: frozenset(range(5)))
    tz: tzinfo = UTC


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One occurrence of an event inside a window (a series expanded)."""

    uid: str
    summary: str
    interval: Interval
    all_day: bool
    location: str
    blocks_time: bool  # False for TRANSP:TRANSPARENT or STATUS:CANCELLED

    def __repr__(self) -> str:
        return f"Occurrence(uid={self.uid!r}, interval={self.interval!r})"


def occurrences(
    calendars: Iterable[Any], window: Interval, fallback: tzinfo = UTC
) -> list[Occurrence]:
    """Every occurrence in ``window`` of the events in ``calendars`` (icalendar.Calendar)."""
    import recurring_ical_events

    found: list[Occurrence] = []
    for calendar in calendars:
        try:
            components = list(
                recurring_ical_events.of(calendar, skip_bad_series=True).between(
                    window.start, window.end
                )
            )
        except Exception as exc:  # the library raises many kinds on bad rules
            raise MalformedDataError(
                f"a recurring event cannot be expanded ({type(exc).__name__})"
            ) from exc
        for component in components:
            occurrence = _occurrence(component, fallback)
            if occurrence is not None and occurrence.interval.start < window.end:
                found.append(occurrence)
    return sorted(found, key=lambda o: (o.interval, o.uid))


def busy_intervals(
    calendars: Iterable[Any], window: Interval, fallback: tzinfo = UTC
) -> list[Interval]:
    """Merged busy time of ``calendars`` (icalendar.Calendar objects) inside ``window``."""
    busy = (
        _clip(o.interval, window) for o in occurrences(calendars, window, fallback) if o.blocks_time
    )
    return merge(i for i in busy if i is not None)


def _occurrence(component: Any, fallback: tzinfo) -> Occurrence | None:
    cancelled = str(component.get("STATUS", "")).upper() == "CANCELLED"
    transparent = str(component.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT"
    start_prop = component.get("DTSTART")
    start = value_of(start_prop)
    if not isinstance(start, date):
        return None
    end = value_of(component.get("DTEND"))
    if not isinstance(end, date):
        end = start if isinstance(start, datetime) else start + timedelta(days=1)
    start_utc, end_utc = to_utc(start, fallback), to_utc(end, fallback)
    if end_utc < start_utc:
        return None
    return Occurrence(
        uid=str(component.get("UID", "")),
        summary=str(component.get("SUMMARY", "")),
        interval=Interval(start_utc, end_utc),
        all_day=not isinstance(start, datetime),
        location=str(component.get("LOCATION", "")),
        blocks_time=not (cancelled or transparent) and end_utc > start_utc,
    )


def _clip(interval: Interval, window: Interval) -> Interval | None:
    start, end = max(interval.start, window.start), min(interval.end, window.end)
    return Interval(start, end) if start < end else None


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted intervals with overlapping and touching ones joined."""
    merged: list[Interval] = []
    for interval in sorted(intervals):
        if merged and interval.start <= merged[-1].end:
            if interval.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, interval.end)
        else:
            merged.append(interval)
    return merged


def free_slots(
    window: Interval,
    busy: Iterable[Interval],
    min_minutes: float = 30,
    working_hours: WorkingHours | None = None,
) -> list[Interval]:
    """Gaps of at least ``min_minutes`` in ``window`` not covered by ``busy``."""
    open_time = _working_intervals(window, working_hours) if working_hours else [window]
    blocked = merge(busy)
    free: list[Interval] = []
    for span in open_time:
        free.extend(_subtract(span, blocked))
    return [slot for slot in free if slot.minutes >= min_minutes]


def _subtract(span: Interval, blocked: list[Interval]) -> list[Interval]:
    gaps: list[Interval] = []
    cursor = span.start
    for interval in blocked:
        if interval.end <= cursor or interval.start >= span.end:
            continue
        if interval.start > cursor:
            gaps.append(Interval(cursor, interval.start))
        cursor = max(cursor, interval.end)
    if cursor < span.end:
        gaps.append(Interval(cursor, span.end))
    return gaps


def _working_intervals(window: Interval, hours: WorkingHours) -> list[Interval]:
    """The working-hour spans of each day that overlaps the window, clipped to it."""
    spans: list[Interval] = []
    day = window.start.astimezone(hours.tz).date() - timedelta(days=1)
    last = window.end.astimezone(hours.tz).date()
    while day <= last:
        if day.weekday() in hours.weekdays:
            start = datetime.combine(day, hours.start, hours.tz).astimezone(UTC)
            end = datetime.combine(day, hours.end, hours.tz).astimezone(UTC)
            clipped = _clip(Interval(start, end), window) if start < end else None
            if clipped is not None:
                spans.append(clipped)
        day += timedelta(days=1)
    return spans
