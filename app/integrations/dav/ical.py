"""Read and write iCalendar (RFC 5545) events with the ``icalendar`` package.

Calendars in the wild are untidy, so reading is forgiving per event and
strict per file:

- a file that is not iCalendar at all raises :class:`MalformedDataError`;
- an event that cannot be read (no start, a broken date) is skipped and a
  *defect* (one line, no event text) says so;
- time zones: a ``VTIMEZONE`` in the file is used (even a made-up one);
  Windows names ("W. Europe Standard Time") map to IANA zones; a ``TZID``
  that names nothing is read in the fallback zone, with a defect; times
  without a zone are *floating* and read in the fallback zone when a UTC
  instant is needed.

``icalendar`` is imported lazily: it takes a noticeable time to load and the
office starts without calendars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from app.integrations.errors import MalformedDataError

if TYPE_CHECKING:
    import icalendar

MAX_ICS_CHARS = 10 * 2**20
Moment = datetime | date


@dataclass(frozen=True, slots=True)
class CalendarEvent:
    """One VEVENT: a single event, a series master or one changed occurrence."""

    uid: str
    summary: str
    start: Moment
    end: Moment
    all_day: bool
    floating: bool = False
    tzid: str | None = None
    location: str = ""
    description: str = ""
    attendees: tuple[str, ...] = ()
    organizer: str | None = None
    status: str | None = None  # TENTATIVE / CONFIRMED / CANCELLED
    transparency: str = "OPAQUE"
    rrule: str | None = None
    exdates: tuple[Moment, ...] = ()
    recurrence_id: Moment | None = None

    def start_utc(self, fallback: tzinfo = UTC) -> datetime:
        return to_utc(self.start, fallback)

    def end_utc(self, fallback: tzinfo = UTC) -> datetime:
        return to_utc(self.end, fallback)

    def __repr__(self) -> str:  # summaries and attendees stay out of logs
        return f"CalendarEvent(uid={self.uid!r}, start={self.start!r})"


@dataclass(frozen=True, slots=True)
class ParsedCalendar:
    events: tuple[CalendarEvent, ...]
    defects: tuple[str, ...]
    calendar: Any = field(repr=False)  # the icalendar.Calendar, for recurrence expansion


def to_utc(moment: Moment, fallback: tzinfo = UTC) -> datetime:
    """A UTC instant; dates are midnight and naive times are read in ``fallback``."""
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=fallback)
    return moment.astimezone(UTC)


def parse_calendar(text: str, fallback: tzinfo = UTC) -> ParsedCalendar:
    """The events of one iCalendar file; see the module docstring for what is forgiven."""
    if len(text) > MAX_ICS_CHARS:
        raise MalformedDataError("the calendar file is too large to read (over 10 MiB)")
    calendar = _load(text)
    events: list[CalendarEvent] = []
    defects: list[str] = []
    for index, component in enumerate(_vevents(calendar)):
        try:
            events.append(_event(component, fallback, defects))
        except Exception as exc:  # icalendar raises anything on bad input
            defects.append(f"event {index + 1} skipped: {_reason(exc)}")
    return ParsedCalendar(tuple(events), tuple(defects), calendar)


def _load(text: str) -> icalendar.Calendar:
    import icalendar

    try:
        calendar = icalendar.Calendar.from_ical(text)
    except Exception as exc:  # ValueError, KeyError... all mean "bad file"
        raise MalformedDataError(f"not a readable iCalendar file ({_reason(exc)})") from exc
    if not isinstance(calendar, icalendar.Calendar) or calendar.name != "VCALENDAR":
        raise MalformedDataError("not an iCalendar file (no VCALENDAR)")
    return calendar


def _vevents(calendar: icalendar.Calendar) -> list[Any]:
    try:
        return list(calendar.walk("VEVENT"))
    except Exception as exc:
        raise MalformedDataError(
            f"the iCalendar file's structure is broken ({_reason(exc)})"
        ) from exc


def _reason(exc: BaseException) -> str:
    return type(exc).__name__


class _EventError(ValueError):
    pass


def _event(component: Any, fallback: tzinfo, defects: list[str]) -> CalendarEvent:
    uid = _text(component, "UID")
    label = f"event {uid[:60]!r}" if uid else "an event without UID"
    for name, _error in getattr(component, "errors", ()):
        defects.append(f"{label}: unreadable {name}")
    start, start_tzid = _moment(component, "DTSTART", label, fallback, defects)
    if start is None:
        raise _EventError("no readable DTSTART")
    end = _end(component, start, label, fallback, defects)
    all_day = not isinstance(start, datetime)
    floating = isinstance(start, datetime) and start.tzinfo is None
    recurrence_id, _ = _moment(component, "RECURRENCE-ID", label, fallback, defects)
    return CalendarEvent(
        uid=uid,
        summary=_text(component, "SUMMARY"),
        start=start,
        end=end,
        all_day=all_day,
        floating=floating,
        tzid=start_tzid,
        location=_text(component, "LOCATION"),
        description=_text(component, "DESCRIPTION"),
        attendees=tuple(_address(a) for a in _many(component, "ATTENDEE")),
        organizer=_address(component["ORGANIZER"]) if "ORGANIZER" in component else None,
        status=(_text(component, "STATUS") or None) and _text(component, "STATUS").upper(),
        transparency=(_text(component, "TRANSP") or "OPAQUE").upper(),
        rrule=_rrule(component),
        exdates=_exdates(component),
        recurrence_id=recurrence_id,
    )


def _text(component: Any, name: str) -> str:
    value = component.get(name)
    if value is None:
        return ""
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value)


def _many(component: Any, name: str) -> list[Any]:
    value = component.get(name)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _address(value: Any) -> str:
    text = str(value)
    return text[7:] if text.lower().startswith("mailto:") else text


def _moment(
    component: Any, name: str, label: str, fallback: tzinfo, defects: list[str]
) -> tuple[Moment | None, str | None]:
    prop = component.get(name)
    if prop is None:
        return None, None
    value = value_of(prop)
    if not isinstance(value, date):
        if name == "DTSTART":
            return None, None
        defects.append(f"{label}: unreadable {name}")
        return None, None
    params: Mapping[str, str] = getattr(prop, "params", {})
    tzid = params.get("TZID")
    if isinstance(value, datetime) and tzid and value.tzinfo is None:
        defects.append(f"{label}: unknown time zone {tzid[:60]!r}, read as {fallback}")
        value = value.replace(tzinfo=fallback)
    return value, tzid


def value_of(prop: Any) -> object:
    """A property's value, or None when icalendar kept it as unreadable text."""
    try:
        return getattr(prop, "dt", None)
    except Exception:  # vBroken raises its parse error on access
        return None


def _end(component: Any, start: Moment, label: str, fallback: tzinfo, defects: list[str]) -> Moment:
    end, _ = _moment(component, "DTEND", label, fallback, defects)
    if end is None and "DURATION" in component:
        duration = value_of(component["DURATION"])
        if isinstance(duration, timedelta):
            end = start + duration
    if end is None:
        return start + timedelta(days=1) if not isinstance(start, datetime) else start
    if type(end) is not type(start) or _sort_key(end, fallback) < _sort_key(start, fallback):
        defects.append(f"{label}: DTEND does not fit DTSTART; the end was set to the start")
        return start + timedelta(days=1) if not isinstance(start, datetime) else start
    return end


def _sort_key(moment: Moment, fallback: tzinfo) -> datetime:
    return to_utc(moment, fallback)


def _rrule(component: Any) -> str | None:
    value = component.get("RRULE")
    if value is None:
        return None
    if isinstance(value, list):
        value = value[0]
    return str(value.to_ical().decode("utf-8"))


def _exdates(component: Any) -> tuple[Moment, ...]:
    found: list[Moment] = []
    for prop in _many(component, "EXDATE"):
        for item in getattr(prop, "dts", ()):
            value = value_of(item)
            if isinstance(value, date):
                found.append(value)
    return tuple(found)


# -- writing -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventFields:
    """What an agent sets on an event; times are aware datetimes (or dates for all day)."""

    summary: str
    start: Moment
    end: Moment
    location: str = ""
    description: str = ""
    attendees: Sequence[str] = ()


def build_event(uid: str, fields: EventFields, now: datetime | None = None) -> str:
    """A complete VCALENDAR with one VEVENT (and the VTIMEZONE its times need)."""
    import icalendar

    calendar = icalendar.Calendar()
    calendar.add("PRODID", "-//Soloist//Soloist office//EN")
    calendar.add("VERSION", "2.0")
    event = icalendar.Event()
    event.add("UID", uid)
    event.add("DTSTAMP", (now or datetime.now(UTC)).astimezone(UTC))
    event.add("SEQUENCE", 0)
    _apply_fields(event, fields)
    calendar.add_component(event)
    calendar.add_missing_timezones()
    return str(calendar.to_ical().decode("utf-8"))


def update_event_text(text: str, uid: str, fields: EventFields, now: datetime | None = None) -> str:
    """``text`` with the series master (or single event) ``uid`` given new fields.

    Everything else in the file (changed occurrences, alarms, other
    properties) is kept; SEQUENCE goes up by one.
    """
    import icalendar

    calendar = _load(text)
    master = next(
        (
            c
            for c in _vevents(calendar)
            if str(c.get("UID", "")) == uid and "RECURRENCE-ID" not in c
        ),
        None,
    )
    if master is None:
        raise MalformedDataError("the event is not in the calendar object any more; refresh")
    for name in ("SUMMARY", "DTSTART", "DTEND", "DURATION", "LOCATION", "DESCRIPTION", "DTSTAMP"):
        master.pop(name, None)
    master.pop("ATTENDEE", None)
    sequence = int(master.pop("SEQUENCE", 0) or 0)
    master.add("SEQUENCE", sequence + 1)
    master.add("DTSTAMP", (now or datetime.now(UTC)).astimezone(UTC))
    _apply_fields(master, fields)
    calendar.add_missing_timezones()
    assert isinstance(calendar, icalendar.Calendar)
    return str(calendar.to_ical().decode("utf-8"))


def _apply_fields(event: Any, fields: EventFields) -> None:
    import icalendar

    event.add("SUMMARY", fields.summary)
    event.add("DTSTART", fields.start)
    event.add("DTEND", fields.end)
    if fields.location:
        event.add("LOCATION", fields.location)
    if fields.description:
        event.add("DESCRIPTION", fields.description)
    for address in fields.attendees:
        attendee = icalendar.vCalAddress(f"mailto:{address}")
        attendee.params["PARTSTAT"] = "NEEDS-ACTION"
        attendee.params["ROLE"] = "REQ-PARTICIPANT"
        event.add("ATTENDEE", attendee, encode=False)
